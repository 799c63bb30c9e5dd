package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClientOptionsLinger: every client built from ClientOptions (every
// stage's producer) lingers kafka.produce_linger; a stage option after
// them (the collector's flush_interval) still overrides it.
func TestClientOptionsLinger(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.Brokers = []string{"127.0.0.1:1"} // never dialled
	cfg.ProduceLinger = 37 * time.Millisecond
	for _, tc := range []struct {
		name  string
		extra []kgo.Opt
		want  time.Duration
	}{
		{"stage", nil, 37 * time.Millisecond},
		{"override", []kgo.Opt{kgo.ProducerLinger(20 * time.Millisecond)}, 20 * time.Millisecond},
	} {
		cl, err := kgo.NewClient(append(ClientOptions(cfg, tc.name), tc.extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		got := cl.OptValue(kgo.ProducerLinger).(time.Duration)
		cl.Close()
		if got != tc.want {
			t.Errorf("%s: linger %s, want %s", tc.name, got, tc.want)
		}
	}
}
