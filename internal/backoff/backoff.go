// Package backoff is flowaudit's one retry delay: exponential from an
// initial wait, doubled per failure, capped, optionally with equal jitter.
// Every stage that retries (ClickHouse inserts and pings, webhook
// deliveries, archive writes, report and digest events) waits by it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay is the wait after the attempt-th failure (1-based): initial
// doubled per earlier failure, capped at max. With jitter it is a
// uniformly random value in [d/2, d] (equal jitter: a known lower bound
// on the total retry span, and retries of many senders spread out).
func Delay(initial, max time.Duration, attempt int, jitter bool) time.Duration {
	d := initial
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if !jitter {
		return d
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(d-half+1)
}

// Backoff counts failures: Next returns the wait after one more.
// Not safe for concurrent use.
type Backoff struct {
	Initial, Max time.Duration
	Jitter       bool
	attempt      int
}

// Next counts a failure and returns the wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	b.attempt++
	return Delay(b.Initial, b.Max, b.attempt, b.Jitter)
}

// Reset forgets the failures (after a success).
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits d, or less when ctx ends first; it reports whether the whole
// wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
