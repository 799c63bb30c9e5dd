package backoff

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDelay(t *testing.T) {
	var got []time.Duration
	for a := 1; a <= 7; a++ {
		got = append(got, Delay(100*time.Millisecond, time.Second, a, false))
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		time.Second, time.Second, time.Second}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("delays (-got +want):\n%s", diff)
	}
	for a := 1; a <= 7; a++ {
		for range 100 {
			d := Delay(100*time.Millisecond, time.Second, a, true)
			if full := want[a-1]; d < full/2 || d > full {
				t.Fatalf("attempt %d: jittered %s outside [%s, %s]", a, d, full/2, full)
			}
		}
	}
	if d := Delay(time.Hour, time.Second, 1, false); d != time.Second {
		t.Errorf("initial above max: %s, want the max", d)
	}
}

func TestBackoffAndSleep(t *testing.T) {
	b := Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond}
	var got []time.Duration
	for range 4 {
		got = append(got, b.Next())
	}
	b.Reset()
	got = append(got, b.Next())
	ms := time.Millisecond
	if diff := cmp.Diff(got, []time.Duration{ms, 2 * ms, 4 * ms, 4 * ms, ms}); diff != "" {
		t.Errorf("Next (-got +want):\n%s", diff)
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep without cancel returned false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with a cancelled context waited")
	}
}
