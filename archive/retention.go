package archive

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

func (c *Component) retentionLoop() {
	if c.cfg.Retention <= 0 {
		return
	}
	for {
		if n, err := Prune(c.cfg.Dir, time.Now().Add(-c.cfg.Retention)); err != nil {
			c.log.Warn("archive retention", "err", err)
		} else if n > 0 {
			c.log.Info("archive retention: deleted old hour partitions", "partitions", n, "retention", c.cfg.Retention)
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(10 * time.Minute):
		}
	}
}

// Prune deletes every hour partition (table=*/date=*/hour=*) that ends at
// or before cutoff, and date folders left empty, and returns how many
// hour partitions it deleted.
func Prune(dir string, cutoff time.Time) (int, error) {
	hours, err := filepath.Glob(filepath.Join(dir, "table=*", "date=*", "hour=*"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range hours {
		date := strings.TrimPrefix(filepath.Base(filepath.Dir(h)), "date=")
		start, err := time.Parse("2006-01-02 15", date+" "+strings.TrimPrefix(filepath.Base(h), "hour="))
		if err != nil {
			continue // not ours
		}
		if !start.Add(time.Hour).After(cutoff) {
			if err := os.RemoveAll(h); err != nil {
				return n, err
			}
			n++
			_ = os.Remove(filepath.Dir(h)) // fails while other hours remain
		}
	}
	return n, nil
}
