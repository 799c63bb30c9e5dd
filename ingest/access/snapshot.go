package access

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/flowaudit/flowaudit/ingest/access/parser"
	"github.com/flowaudit/flowaudit/internal/atomicfile"
	"github.com/flowaudit/flowaudit/schemas"
)

// snapshotRefresh is how often an unchanged binding of a snapshot file is
// produced again (as a Binding update), so that a session longer than
// enrich.identity_ttl stays bound while its file still lists it.
const snapshotRefresh = time.Hour

// snapshotter follows a file its daemon rewrites as a whole (the OpenVPN
// status file, DHCP lease databases, `kubectl get pods -A -o json`
// output). It polls the file's identity, size and modification time; on a
// change it parses the whole file (parser.ParseSnapshot) and produces the
// difference with the version before: a start for each new binding, an
// update for a changed one (new expiry, labels, host name), a stop at the
// file's modification time for each binding it no longer lists. A file
// that fails to parse (being written, or malformed) changes nothing: it
// is dead-lettered once per version and retried on the next change. The
// bindings of the last version produced are saved under
// data_dir/access-snapshot once the broker has them, so that after a
// restart the file is compared with them: what it still lists is not
// produced again, what it lost while flowaudit was down is stopped.
// Without data_dir the first version after a restart is produced again as
// starts (with their own start times, so attribution does not change).
type snapshotter struct {
	c         *Component
	cfg       FileConfiguration
	format    parser.Format
	host      string
	o         origin
	statePath string // empty: no data_dir, nothing saved

	stamp   fileStamp
	current map[snapshotKey]snapshotEntry
}

type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    int64 // Unix ns
}

// snapshotKey identifies a binding of a snapshot.
type snapshotKey struct {
	addr    schemas.Addr
	user    string
	device  string
	session string
}

type snapshotEntry struct {
	ev       schemas.AccessEvent
	produced time.Time
}

func (c *Component) newSnapshotter(fc FileConfiguration, f parser.Format) (*snapshotter, error) {
	if fc.Path == StdinPath {
		s := &snapshotter{c: c, cfg: fc, format: f, host: fc.Host, o: origin{listener: "stdin"}}
		if s.host == "" {
			s.host = c.hostname
		}
		return s, nil
	}
	abs, err := filepath.Abs(fc.Path)
	if err != nil {
		return nil, fmt.Errorf("ingest.access.files: %s: %w", fc.Path, err)
	}
	fc.Path = abs
	s := &snapshotter{c: c, cfg: fc, format: f, host: fc.Host, o: origin{listener: "file://" + abs}}
	if s.host == "" {
		s.host = c.hostname
	}
	if c.deps.DataDir != "" {
		dir := filepath.Join(c.deps.DataDir, "access-snapshot")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("data_dir: cannot create %s for snapshot bindings: %w", dir, err)
		}
		sum := sha256.Sum256([]byte(abs + "\x00" + string(f)))
		s.statePath = filepath.Join(dir, hex.EncodeToString(sum[:8])+".json")
	}
	return s, nil
}

// snapshotState is what a snapshotter saves: the file version it last
// produced and that version's bindings (protobuf AccessEvents).
type snapshotState struct {
	Path     string          `json:"path"`
	Format   string          `json:"format"`
	Dev      uint64          `json:"dev"`
	Inode    uint64          `json:"inode"`
	Size     int64           `json:"size"`
	MTime    int64           `json:"mtime_ns"`
	Bindings []snapshotSaved `json:"bindings"`
}

type snapshotSaved struct {
	Event    []byte `json:"event"`
	Produced int64  `json:"produced_ns"`
}

// load restores the bindings saved by the last run, if any.
func (s *snapshotter) load() error {
	if s.statePath == "" {
		return nil
	}
	data, err := os.ReadFile(s.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st snapshotState
	if err := json.Unmarshal(data, &st); err != nil {
		return err
	}
	if st.Path != s.cfg.Path || st.Format != string(s.format) {
		return fmt.Errorf("bindings saved for another file (%s, %s)", st.Path, st.Format)
	}
	current := make(map[snapshotKey]snapshotEntry, len(st.Bindings))
	for _, b := range st.Bindings {
		var ev schemas.AccessEvent
		if err := schemas.UnmarshalAccessEvent(b.Event, &ev); err != nil {
			return err
		}
		current[keyOf(&ev)] = snapshotEntry{ev: ev, produced: time.Unix(0, b.Produced)}
	}
	s.stamp = fileStamp{dev: st.Dev, ino: st.Inode, size: st.Size, mtime: st.MTime}
	s.current = current
	return nil
}

// save writes the bindings of the version produced (atomically).
func (s *snapshotter) save() error {
	if s.statePath == "" {
		return nil
	}
	st := snapshotState{Path: s.cfg.Path, Format: string(s.format), Dev: s.stamp.dev, Inode: s.stamp.ino,
		Size: s.stamp.size, MTime: s.stamp.mtime, Bindings: make([]snapshotSaved, 0, len(s.current))}
	for _, e := range s.current {
		st.Bindings = append(st.Bindings, snapshotSaved{Event: schemas.AppendAccessEvent(nil, &e.ev), Produced: e.produced.UnixNano()})
	}
	data, err := json.Marshal(&st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.statePath, data); err != nil {
		return fmt.Errorf("saving the bindings of %s: %w", s.cfg.Path, err)
	}
	return nil
}

func keyOf(ev *schemas.AccessEvent) snapshotKey {
	return snapshotKey{addr: ev.SrcAddr, user: ev.User, device: ev.Device, session: ev.SessionID}
}

func (s *snapshotter) run() {
	if s.cfg.Path == StdinPath {
		s.runStream()
		return
	}
	defer s.c.wg.Done()
	if err := s.load(); err != nil {
		s.c.r.Logger.Warn("ignoring unreadable saved snapshot bindings: the file's bindings are produced again as starts", "path", s.cfg.Path, "state", s.statePath, "err", err)
		s.stamp, s.current = fileStamp{}, nil
	}
	tick := time.NewTicker(s.c.cfg.TailPollInterval)
	defer tick.Stop()
	for {
		if err := s.poll(time.Now()); err != nil {
			if ok, n := s.c.sampler.Allow("snapshot/" + s.cfg.Path); ok {
				s.c.r.Logger.Warn("reading snapshot file failed; retrying", "path", s.cfg.Path, "format", s.format, "err", err, "suppressed", n)
			}
		}
		select {
		case <-s.c.stopCh:
			return
		case <-tick.C:
		}
	}
}

// poll reads the file when it changed and produces the difference.
func (s *snapshotter) poll(now time.Time) error {
	f, err := os.Open(s.cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // not written yet; a removed file keeps the bindings it listed
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	dev, ino := fileID(fi)
	stamp := fileStamp{dev: dev, ino: ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	refresh := false
	for _, e := range s.current {
		if now.Sub(e.produced) >= snapshotRefresh {
			refresh = true
			break
		}
	}
	if stamp == s.stamp && !refresh {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(f, parser.MaxSnapshotBytes+1))
	if err != nil {
		return err
	}
	meta := parser.Meta{Received: time.Unix(0, stamp.mtime), Host: s.host, Location: s.c.loc}
	evs, err := parser.ParseSnapshot(s.format, data, meta)
	s.c.metrics.lines.WithLabelValues(s.o.listener, string(s.format)).Inc()
	if err != nil {
		if stamp != s.stamp {
			reason := reasonOf(err)
			s.c.metrics.rejected.WithLabelValues(string(s.format), reason).Inc()
			s.c.deadLetter(s.c.stopCtx, s.o, reason, err, data[:min(len(data), 4096)], nil)
			s.stamp = stamp
		}
		return err
	}
	if err := s.apply(evs, nil, uint64(stamp.mtime), now); err != nil {
		return err
	}
	s.stamp = stamp
	return s.save()
}

// apply produces the difference between the bindings evs of a new version
// and the current ones (see snapshotter), and makes evs current. With
// inScope set, evs replace only the current bindings inScope accepts (one
// pod of a watch stream); the others stay. Changes are dated changed
// (Unix ns: the file's modification time, or when a stream said so).
func (s *snapshotter) apply(evs []schemas.AccessEvent, inScope func(*snapshotKey) bool, changed uint64, now time.Time) error {
	next := make(map[snapshotKey]snapshotEntry, len(s.current)+len(evs))
	if inScope != nil {
		for k, e := range s.current {
			if !inScope(&k) {
				next[k] = e
			}
		}
	}
	acks := &ackGroup{}
	recv := uint64(now.UnixNano())
	for i := range evs {
		ev := evs[i]
		k := keyOf(&ev)
		if _, dup := next[k]; dup {
			continue
		}
		prev, had := s.current[k]
		switch {
		case !had:
		case prev.ev.Expires != ev.Expires || prev.ev.Labels != ev.Labels || prev.ev.DeviceName != ev.DeviceName:
			ev.Binding, ev.Time = schemas.BindingUpdate, changed
		case now.Sub(prev.produced) >= snapshotRefresh:
			ev.Binding, ev.Time = schemas.BindingUpdate, uint64(now.UnixNano())
		default:
			next[k] = prev
			continue
		}
		s.produce(&ev, recv, acks)
		next[k] = snapshotEntry{ev: evs[i], produced: now}
	}
	for k, e := range s.current {
		if _, ok := next[k]; ok {
			continue
		}
		ev := e.ev
		ev.Binding, ev.Action, ev.Time, ev.Expires = schemas.BindingStop, schemas.ActionSessionClose, changed, 0
		s.produce(&ev, recv, acks)
	}
	if _, err := acks.wait(); err != nil {
		return fmt.Errorf("the broker did not acknowledge the bindings of %s: %w", s.cfg.Path, err)
	}
	s.current = next
	return nil
}

func (s *snapshotter) produce(ev *schemas.AccessEvent, recv uint64, acks *ackGroup) {
	ev.Received = recv
	if ev.Time == 0 {
		ev.Time = recv
	}
	ev.Listener, ev.PeerAddr, ev.Untrusted = s.o.listener, schemas.Addr{}, false
	s.c.metrics.events.WithLabelValues(string(s.format), ev.Outcome.String()).Inc()
	s.c.produceEvent(s.c.stopCtx, s.c.client, ev, acks)
}

// StdinPath is the ingest.access.files path that reads a k8s_pods stream
// from standard input.
const StdinPath = "-"

// runStream follows a stream of JSON documents on standard input
// (Dependencies.Stdin): `kubectl get pods -A -o json` repeated (each List
// a new version, as a rewritten file), or `kubectl get pods -A -o json
// --watch` (each Pod replacing that pod's bindings) with or without
// --output-watch-events ({"type": "DELETED", "object": …} stops them).
// Changes are dated when they arrive. At the end of the stream the
// bindings stay current (and refreshed) until the process stops; a
// document that does not parse is dead-lettered and skipped, one that is
// not JSON ends the stream.
func (s *snapshotter) runStream() {
	defer s.c.wg.Done()
	in := s.c.deps.Stdin
	if in == nil {
		in = os.Stdin
	}
	docs := make(chan []byte)
	// The reader is left behind at Stop: a read of standard input cannot
	// be interrupted, and it touches nothing but docs.
	go func() {
		defer close(docs)
		dec := json.NewDecoder(in)
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				if !errors.Is(err, io.EOF) {
					s.c.r.Logger.Warn("standard input is not a stream of JSON documents; no more pods are read from it", "format", s.format, "err", err)
				}
				return
			}
			select {
			case docs <- raw:
			case <-s.c.stopCh:
				return
			}
		}
	}()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-s.c.stopCh:
			return
		case raw, ok := <-docs:
			if !ok {
				docs = nil
				continue
			}
			err = s.applyDocument(raw, time.Now())
		case now := <-tick.C:
			cur := make([]schemas.AccessEvent, 0, len(s.current))
			for _, e := range s.current {
				cur = append(cur, e.ev)
			}
			err = s.apply(cur, nil, uint64(now.UnixNano()), now)
		}
		if err != nil {
			if ok, n := s.c.sampler.Allow("snapshot/stdin"); ok {
				s.c.r.Logger.Warn("reading pods from standard input failed", "format", s.format, "err", err, "suppressed", n)
			}
		}
	}
}

// applyDocument applies one document of the stream.
func (s *snapshotter) applyDocument(raw []byte, now time.Time) error {
	s.c.metrics.lines.WithLabelValues(s.o.listener, string(s.format)).Inc()
	evs, pod, err := parseStreamDocument(s.format, raw, parser.Meta{Received: now, Host: s.host, Location: s.c.loc})
	if err != nil {
		reason := reasonOf(err)
		s.c.metrics.rejected.WithLabelValues(string(s.format), reason).Inc()
		s.c.deadLetter(s.c.stopCtx, s.o, reason, err, raw[:min(len(raw), 4096)], nil)
		return err
	}
	if pod == nil {
		return s.apply(evs, nil, uint64(now.UnixNano()), now)
	}
	return s.apply(evs, func(k *snapshotKey) bool {
		if pod.UID != "" {
			return k.session == pod.UID
		}
		return k.device == pod.Namespace+"/"+pod.Name
	}, uint64(now.UnixNano()), now)
}

// parseStreamDocument parses one document of a k8s_pods stream: a whole
// version (List, PodList: pod is nil), or one pod's bindings (a Pod, or a
// watch event {"type", "object"}; none when the type is DELETED) with the
// pod they replace.
func parseStreamDocument(f parser.Format, raw []byte, meta parser.Meta) (evs []schemas.AccessEvent, pod *podMeta, err error) {
	var head struct {
		Kind     string          `json:"kind"`
		Type     string          `json:"type"`
		Object   json.RawMessage `json:"object"`
		Metadata podMeta         `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, nil, &parser.ParseError{Format: f, Reason: parser.ReasonBadJSON, Err: err}
	}
	doc := raw
	if head.Type != "" && len(head.Object) > 0 { // a watch event
		var obj struct {
			Kind     string  `json:"kind"`
			Metadata podMeta `json:"metadata"`
		}
		if err := json.Unmarshal(head.Object, &obj); err != nil {
			return nil, nil, &parser.ParseError{Format: f, Reason: parser.ReasonBadJSON, Err: err}
		}
		if obj.Kind != "Pod" && obj.Kind != "" {
			return nil, nil, &parser.ParseError{Format: f, Reason: parser.ReasonNoMatch, Err: fmt.Errorf("watch event %s of a %q, not a Pod", head.Type, obj.Kind)}
		}
		doc, head.Kind, head.Metadata = head.Object, "Pod", obj.Metadata
	}
	if head.Type != "DELETED" {
		if evs, err = parser.ParseSnapshot(f, doc, meta); err != nil {
			return nil, nil, err
		}
	}
	if head.Kind == "Pod" {
		return evs, &head.Metadata, nil
	}
	return evs, nil, nil
}

type podMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
}
