package kafka

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/flowaudit/flowaudit/internal/reporter"
)

// diskWatch turns the embedded broker's failed disk writes into a named
// fault: logged once (then sampled), on /readyz, and returned by
// Broker.Fault so that a stage failing on the consequence (the broker
// answers UNKNOWN_SERVER_ERROR) can say why. It clears itself once the
// disk has room again.
type diskWatch struct {
	b     *Broker
	ready *reporter.Readiness // may be nil
	quit  chan struct{}       // closed by Broker.Stop
	once  sync.Once

	mu       sync.Mutex
	fault    error
	last     time.Time // last failed write
	logged   time.Time
	watching bool
}

// diskFreeNeeded is the free space under which a full disk is not
// considered fixed yet.
const diskFreeNeeded = 4 << 20

func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func (d *diskWatch) onError(err error) {
	if !isDiskFull(err) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.last = now
	if d.fault == nil {
		d.fault = fmt.Errorf("disk full under data_dir (%s): the embedded broker cannot store records: %w", d.b.dataDir, err)
		if d.ready != nil {
			d.ready.NotReady(d.fault.Error() + "; free some space or move data_dir to a larger disk")
		}
	}
	if now.Sub(d.logged) >= 10*time.Second {
		d.logged = now
		d.b.logger.Error("disk full: the embedded broker cannot store records; producers get UNKNOWN_SERVER_ERROR until space is freed",
			"data_dir", d.b.dataDir, "free_bytes", freeBytes(d.b.dataDir), "err", err)
	}
	if !d.watching {
		d.watching = true
		go d.watchRecovery()
	}
}

// watchRecovery clears the fault once writes have stopped failing and
// the disk has room.
func (d *diskWatch) watchRecovery() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.quit:
			return
		case <-t.C:
		}
		d.mu.Lock()
		if time.Since(d.last) >= 3*time.Second && freeBytes(d.b.dataDir) >= diskFreeNeeded {
			d.fault, d.watching = nil, false
			if d.ready != nil {
				d.ready.Ready()
			}
			d.mu.Unlock()
			d.b.logger.Info("disk has room again under data_dir; the embedded broker stores records", "data_dir", d.b.dataDir)
			return
		}
		d.mu.Unlock()
	}
}

func (d *diskWatch) current() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fault
}

// freeBytes is the space available to us under dir; -1 if unknown.
func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// checkWritable makes sure the broker can store records under dir before
// it starts, so that a full disk is named at once instead of surfacing
// as UNKNOWN_SERVER_ERROR in the first stage that produces.
func checkWritable(dir string) error {
	probe := filepath.Join(dir, ".write-check")
	f, err := os.OpenFile(probe, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = f.Write(make([]byte, 256<<10))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	_ = os.Remove(probe)
	switch {
	case err == nil:
		return nil
	case isDiskFull(err):
		return fmt.Errorf("data_dir: disk full under %s (%d bytes free): the embedded broker cannot store records; free some space or point data_dir at a larger disk: %w",
			dir, freeBytes(dir), err)
	default:
		return fmt.Errorf("data_dir: cannot write under %s: %w", dir, err)
	}
}
