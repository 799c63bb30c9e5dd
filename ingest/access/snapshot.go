package access

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/flowaudit/flowaudit/ingest/access/parser"
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
// bindings of the last version are kept in memory only: after a restart
// the first version is produced again as starts (with their own start
// times, so attribution does not change).
type snapshotter struct {
	c      *Component
	cfg    FileConfiguration
	format parser.Format
	host   string
	o      origin

	stamp   fileStamp
	current map[snapshotKey]snapshotEntry
}

type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
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
	abs, err := filepath.Abs(fc.Path)
	if err != nil {
		return nil, fmt.Errorf("ingest.access.files: %s: %w", fc.Path, err)
	}
	fc.Path = abs
	s := &snapshotter{c: c, cfg: fc, format: f, host: fc.Host, o: origin{listener: "file://" + abs}}
	if s.host == "" {
		s.host = c.hostname
	}
	return s, nil
}

func (s *snapshotter) run() {
	defer s.c.wg.Done()
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
	stamp := fileStamp{dev: dev, ino: ino, size: fi.Size(), mtime: fi.ModTime()}
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
	meta := parser.Meta{Received: stamp.mtime, Host: s.host, Location: s.c.loc}
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
	next := make(map[snapshotKey]snapshotEntry, len(evs))
	acks := &ackGroup{}
	recv := uint64(now.UnixNano())
	for i := range evs {
		ev := evs[i]
		k := snapshotKey{addr: ev.SrcAddr, user: ev.User, device: ev.Device, session: ev.SessionID}
		if _, dup := next[k]; dup {
			continue
		}
		prev, had := s.current[k]
		switch {
		case !had:
		case prev.ev.Expires != ev.Expires || prev.ev.Labels != ev.Labels || prev.ev.DeviceName != ev.DeviceName:
			ev.Binding, ev.Time = schemas.BindingUpdate, uint64(stamp.mtime.UnixNano())
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
		ev.Binding, ev.Action, ev.Time, ev.Expires = schemas.BindingStop, schemas.ActionSessionClose, uint64(stamp.mtime.UnixNano()), 0
		s.produce(&ev, recv, acks)
	}
	if _, err := acks.wait(); err != nil {
		return fmt.Errorf("the broker did not acknowledge the bindings of %s: %w", s.cfg.Path, err)
	}
	s.stamp, s.current = stamp, next
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
