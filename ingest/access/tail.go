package access

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flowaudit/flowaudit/ingest/access/parser"
	"github.com/flowaudit/flowaudit/internal/atomicfile"
)

// headBytes is how much of a file's start identifies it beside its inode,
// so that a new file reusing a deleted file's inode is not mistaken for
// it.
const headBytes = 512

// tailState is a tailer's saved position: the file (device, inode and the
// hash of its first bytes) and the offset up to which every line was
// acknowledged by the broker.
type tailState struct {
	Path       string `json:"path"`
	Dev        uint64 `json:"dev"`
	Inode      uint64 `json:"inode"`
	Offset     int64  `json:"offset"`
	HeadLen    int    `json:"head_len"`
	HeadSHA256 string `json:"head_sha256"`
	// Discarding is set while the rest of a too-long line is skipped.
	Discarding bool `json:"discarding,omitempty"`
}

// tailer follows one file. It polls: each round reads the complete lines
// past the acknowledged offset in batches, produces them, waits for the
// broker and only then saves the new offset. After a rename rotation it
// reads the old file to its end before switching to the new one; after a
// copytruncate (the file shrank) it starts again at 0. It runs in one
// goroutine; nothing else touches its fields.
type tailer struct {
	c         *Component
	cfg       FileConfiguration
	lf        lineFormat
	host      string
	o         origin
	statePath string // empty: positions are not saved (no data_dir)

	file       *os.File
	dev, ino   uint64
	offset     int64
	discarding bool
	head       []byte // the file's first min(offset, headBytes) bytes
	buf        []byte
}

func (c *Component) newTailer(fc FileConfiguration) (*tailer, error) {
	lf, err := c.lineFormatOf(fc.Format)
	if err != nil {
		return nil, fmt.Errorf("ingest.access.files: %s: %w", fc.Path, err)
	}
	abs, err := filepath.Abs(fc.Path)
	if err != nil {
		return nil, fmt.Errorf("ingest.access.files: %s: %w", fc.Path, err)
	}
	fc.Path = abs
	t := &tailer{c: c, cfg: fc, lf: lf, host: fc.Host, o: origin{listener: "file://" + abs}}
	if t.host == "" {
		t.host = c.hostname
	}
	if c.deps.DataDir != "" {
		dir := filepath.Join(c.deps.DataDir, "access-tail")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("data_dir: cannot create %s for tail positions: %w", dir, err)
		}
		sum := sha256.Sum256([]byte(abs))
		t.statePath = filepath.Join(dir, hex.EncodeToString(sum[:8])+".json")
	} else {
		c.r.Logger.Warn("no data_dir: tail positions are not saved, a restart reads files from the start", "path", abs)
	}
	size := max(c.cfg.MaxLineBytes+1, 256<<10)
	t.buf = make([]byte, size)
	return t, nil
}

func (t *tailer) run() {
	defer t.c.wg.Done()
	defer func() {
		if t.file != nil {
			t.file.Close()
		}
	}()
	tick := time.NewTicker(t.c.cfg.TailPollInterval)
	defer tick.Stop()
	for {
		if err := t.poll(); err != nil {
			if ok, n := t.c.sampler.Allow("tail/" + t.cfg.Path); ok {
				t.c.r.Logger.Warn("tailing failed; retrying", "path", t.cfg.Path, "err", err, "suppressed", n)
			}
		}
		select {
		case <-t.c.stopCh:
			return
		case <-tick.C:
		}
	}
}

func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// poll reads what is new, then handles rotation and truncation.
func (t *tailer) poll() error {
	if t.file == nil {
		if err := t.open(); err != nil || t.file == nil {
			return err
		}
	}
	if err := t.drain(false); err != nil {
		return err
	}
	st, err := os.Stat(t.cfg.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // renamed away, the new file is not there yet
		}
		return err
	}
	dev, ino := fileID(st)
	if dev != t.dev || ino != t.ino {
		// Rotated by rename: whatever the writer appended to the old
		// file since the last read comes first, including a last line
		// it never terminated.
		if err := t.drain(true); err != nil {
			return err
		}
		t.c.r.Logger.Info("tailed file rotated: switching to the new file", "path", t.cfg.Path)
		return t.switchTo(nil)
	}
	if st.Size() < t.offset {
		t.c.r.Logger.Info("tailed file truncated: reading it from the start", "path", t.cfg.Path, "size", st.Size(), "offset", t.offset)
		t.offset, t.discarding, t.head = 0, false, nil
		return t.save()
	}
	return nil
}

// open opens the file at start, resuming from the saved position: in the
// same file if it is still at Path, else in the rotated file of the same
// directory that has the saved inode (rotation while we were stopped).
func (t *tailer) open() error {
	state, err := t.load()
	if err != nil {
		t.c.r.Logger.Warn("ignoring unreadable tail position: reading the file from the start", "path", t.cfg.Path, "state", t.statePath, "err", err)
		state = nil
	}
	f, err := os.Open(t.cfg.Path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if state != nil {
		if f != nil && t.matches(f, state) {
			return t.resume(f, state)
		}
		if old := t.findRotated(state); old != nil {
			if f != nil {
				f.Close()
			}
			t.c.r.Logger.Info("resuming in the rotated file", "path", t.cfg.Path, "rotated", old.Name(), "offset", state.Offset)
			return t.resume(old, state)
		}
	}
	if f == nil {
		return nil // not there yet
	}
	return t.switchTo(f)
}

// matches reports whether f is the file of state and still holds at
// least state.Offset bytes.
func (t *tailer) matches(f *os.File, state *tailState) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	dev, ino := fileID(fi)
	if dev != state.Dev || ino != state.Inode || fi.Size() < state.Offset {
		return false
	}
	head := make([]byte, state.HeadLen)
	if _, err := f.ReadAt(head, 0); err != nil {
		return false
	}
	sum := sha256.Sum256(head)
	return hex.EncodeToString(sum[:]) == state.HeadSHA256
}

func (t *tailer) findRotated(state *tailState) *os.File {
	dir := filepath.Dir(t.cfg.Path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if dev, ino := fileID(fi); dev != state.Dev || ino != state.Inode {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil
		}
		if t.matches(f, state) {
			return f
		}
		f.Close()
		return nil
	}
	return nil
}

func (t *tailer) resume(f *os.File, state *tailState) error {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	t.file = f
	t.dev, t.ino = fileID(fi)
	t.offset, t.discarding = state.Offset, state.Discarding
	t.head = nil
	return nil
}

// switchTo starts reading f (nil: open Path) from its beginning and saves
// that position: every line of the previous file is acknowledged by now.
func (t *tailer) switchTo(f *os.File) error {
	if f == nil {
		var err error
		if f, err = os.Open(t.cfg.Path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // poll sees the new file once it exists
			}
			return err
		}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if t.file != nil {
		t.file.Close()
	}
	t.file = f
	t.dev, t.ino = fileID(fi)
	t.offset, t.discarding, t.head = 0, false, nil
	return t.save()
}

// drain reads complete lines in batches until none is left. With final,
// a last unterminated line is taken too (the writer has moved on).
func (t *tailer) drain(final bool) error {
	for {
		select {
		case <-t.c.stopCh:
			return nil
		default:
		}
		n, err := t.readBatch(final)
		if err != nil || n == 0 {
			return err
		}
	}
}

// readBatch handles the lines of one buffer read at the acknowledged
// offset, waits for the broker's acknowledgements and saves the new
// offset. It returns how many bytes it consumed.
func (t *tailer) readBatch(final bool) (int, error) {
	n, err := t.file.ReadAt(t.buf, t.offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	data := t.buf[:n]
	maxLine := t.c.cfg.MaxLineBytes
	acks := &ackGroup{}
	ctx := t.c.stopCtx
	consumed := 0
	discarding := t.discarding
	for consumed < len(data) {
		rest := data[consumed:]
		if discarding {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				consumed = len(data)
				break
			}
			consumed += i + 1
			discarding = false
			continue
		}
		// A record is a line, or a FreeRADIUS detail record up to its
		// blank line (parser.NextRecord).
		rec, adv, ok := parser.NextRecord(t.lf.format, rest, false)
		if !ok {
			switch {
			case len(rest) > maxLine:
				// Too long whether or not it ends later: reject it now
				// and skip to its end.
				meta := parser.Meta{Received: time.Now(), Host: t.host, Location: t.c.loc}
				t.c.handleLine(ctx, t.o, t.lf, rest, meta, acks)
				consumed, discarding = len(data), true
			case final:
				t.handle(rest, acks)
				consumed = len(data)
			}
			break
		}
		consumed += adv
		t.handle(rec, acks)
	}
	if consumed == 0 {
		return 0, nil
	}
	if _, err := acks.wait(); err != nil {
		// Nothing is saved: the batch is read again (at least once).
		return 0, fmt.Errorf("the broker did not acknowledge lines of %s: %w", t.cfg.Path, err)
	}
	t.offset += int64(consumed)
	t.discarding = discarding
	if err := t.save(); err != nil {
		return consumed, err
	}
	return consumed, nil
}

func (t *tailer) handle(line []byte, acks *ackGroup) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	meta := parser.Meta{Received: time.Now(), Host: t.host, Location: t.c.loc}
	t.c.handleLine(t.c.stopCtx, t.o, t.lf, line, meta, acks)
}

func (t *tailer) load() (*tailState, error) {
	if t.statePath == "" {
		return nil, nil
	}
	data, err := os.ReadFile(t.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s tailState
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	if s.Path != t.cfg.Path || s.Offset < 0 || s.HeadLen < 0 || s.HeadLen > headBytes {
		return nil, fmt.Errorf("position saved for another file (%s) or invalid", s.Path)
	}
	return &s, nil
}

// save writes the position atomically (temporary file, fsync, rename).
func (t *tailer) save() error {
	t.c.metrics.tailOffset.WithLabelValues(t.cfg.Path).Set(float64(t.offset))
	if t.statePath == "" {
		return nil
	}
	if want := min(t.offset, headBytes); int64(len(t.head)) < want {
		head := make([]byte, want)
		if _, err := t.file.ReadAt(head, 0); err != nil {
			return fmt.Errorf("reading the start of %s: %w", t.cfg.Path, err)
		}
		t.head = head
	}
	sum := sha256.Sum256(t.head)
	data, err := json.Marshal(tailState{
		Path: t.cfg.Path, Dev: t.dev, Inode: t.ino, Offset: t.offset,
		HeadLen: len(t.head), HeadSHA256: hex.EncodeToString(sum[:]), Discarding: t.discarding,
	})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(t.statePath, data); err != nil {
		return fmt.Errorf("saving the tail position of %s: %w", t.cfg.Path, err)
	}
	return nil
}
