package flow

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultConfiguration(t *testing.T) {
	cfg := DefaultConfiguration()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() of the defaults: %v", err)
	}
	if diff := cmp.Diff(cfg.Listen, []string{"netflow://0.0.0.0:2055", "sflow://0.0.0.0:6343"}); diff != "" {
		t.Errorf("Listen (-got +want):\n%s", diff)
	}
	if got, want := cfg.ReceiveBuffer, 32<<20; got != want {
		t.Errorf("ReceiveBuffer = %d, want %d (32 MiB)", got, want)
	}
	if cfg.FlushInterval <= 0 || cfg.FlushInterval > 100*time.Millisecond {
		t.Errorf("FlushInterval = %s, want in (0, 100ms]", cfg.FlushInterval)
	}
	if cfg.Readers != 0 {
		t.Errorf("Readers = %d, want 0 (one per CPU)", cfg.Readers)
	}
	if cfg.DeadLetterMaxBytes < 65507 {
		t.Errorf("DeadLetterMaxBytes = %d, want at least the largest UDP payload (65507)", cfg.DeadLetterMaxBytes)
	}
	if got, want := cfg.MaxTimeSkew, 24*time.Hour; got != want {
		t.Errorf("MaxTimeSkew = %s, want %s", got, want)
	}
	if cfg.MaxTemplatesPerExporter != 4096 || cfg.MaxTemplates != 100000 {
		t.Errorf("MaxTemplatesPerExporter, MaxTemplates = %d, %d; want 4096, 100000", cfg.MaxTemplatesPerExporter, cfg.MaxTemplates)
	}
	if cfg.MaxExporterSeries != 1000 || cfg.ExporterSeriesTTL != time.Hour {
		t.Errorf("MaxExporterSeries, ExporterSeriesTTL = %d, %s; want 1000, 1h", cfg.MaxExporterSeries, cfg.ExporterSeriesTTL)
	}
	var specs []ListenerSpec
	for _, l := range cfg.Listen {
		s, err := ParseListen(l)
		if err != nil {
			t.Fatalf("ParseListen(%q): %v", l, err)
		}
		specs = append(specs, s)
	}
	want := []ListenerSpec{{ProtocolNetFlow, "0.0.0.0:2055"}, {ProtocolSFlow, "0.0.0.0:6343"}}
	if diff := cmp.Diff(specs, want); diff != "" {
		t.Errorf("parsed default listeners (-got +want):\n%s", diff)
	}
}

func TestParseListen(t *testing.T) {
	tests := []struct {
		in      string
		want    ListenerSpec
		wantErr string // substring; empty means success
	}{
		{in: "netflow://0.0.0.0:2055", want: ListenerSpec{ProtocolNetFlow, "0.0.0.0:2055"}},
		{in: "sflow://127.0.0.1:6343", want: ListenerSpec{ProtocolSFlow, "127.0.0.1:6343"}},
		{in: "NetFlow://127.0.0.1:0", want: ListenerSpec{ProtocolNetFlow, "127.0.0.1:0"}},
		{in: "sflow://[::1]:6343", want: ListenerSpec{ProtocolSFlow, "[::1]:6343"}},
		{in: "netflow://:2055", want: ListenerSpec{ProtocolNetFlow, ":2055"}},
		{in: "netflow://0.0.0.0:2055/", want: ListenerSpec{ProtocolNetFlow, "0.0.0.0:2055"}},
		{in: "udp://0.0.0.0:2055", wantErr: `unknown scheme "udp"`},
		{in: "ipfix://0.0.0.0:4739", wantErr: `unknown scheme "ipfix"`},
		{in: "0.0.0.0:2055", wantErr: "is not scheme://host:port"},
		{in: "", wantErr: "is not scheme://host:port"},
		{in: "netflow://0.0.0.0:2055/path", wantErr: "is not scheme://host:port"},
		{in: "netflow://0.0.0.0", wantErr: "missing port"},
		{in: "netflow://", wantErr: "is not scheme://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseListen(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseListen(%q) = %+v, want an error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseListen(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseListen(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("ParseListen(%q) (-got +want):\n%s", tt.in, diff)
			}
		})
	}
}

func TestValidateErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Configuration)
		want   []string // substrings of the error
	}{
		{"bad second listener", func(c *Configuration) { c.Listen = []string{"netflow://0.0.0.0:2055", "udp://0.0.0.0:1"} },
			[]string{"ingest.flows.listen[1]:", `unknown scheme "udp"`}},
		{"listener without port", func(c *Configuration) { c.Listen = []string{"sflow://0.0.0.0"} },
			[]string{"ingest.flows.listen[0]:", "missing port"}},
		{"negative readers", func(c *Configuration) { c.Readers = -1 }, []string{"ingest.flows.readers:", "got -1"}},
		{"too many readers", func(c *Configuration) { c.Readers = 257 }, []string{"ingest.flows.readers:", "got 257"}},
		{"negative receive buffer", func(c *Configuration) { c.ReceiveBuffer = -1 }, []string{"ingest.flows.receive_buffer:", "got -1"}},
		{"zero flush interval", func(c *Configuration) { c.FlushInterval = 0 }, []string{"ingest.flows.flush_interval:", "got 0s"}},
		{"slow flush interval", func(c *Configuration) { c.FlushInterval = 101 * time.Millisecond }, []string{"ingest.flows.flush_interval:", "got 101ms"}},
		{"negative dead letter bound", func(c *Configuration) { c.DeadLetterMaxBytes = -5 }, []string{"ingest.flows.dead_letter_max_bytes:", "got -5"}},
		{"negative series cap", func(c *Configuration) { c.MaxExporterSeries = -1 }, []string{"ingest.flows.max_exporter_series:", "got -1"}},
		{"no templates per exporter", func(c *Configuration) { c.MaxTemplatesPerExporter = 0 }, []string{"ingest.flows.max_templates_per_exporter:", "got 0"}},
		{"no templates", func(c *Configuration) { c.MaxTemplates = 0 }, []string{"ingest.flows.max_templates:", "got 0"}},
		{"short series ttl", func(c *Configuration) { c.ExporterSeriesTTL = time.Second }, []string{"ingest.flows.exporter_series_ttl:", "got 1s"}},
		{"negative time skew", func(c *Configuration) { c.MaxTimeSkew = -time.Second }, []string{"ingest.flows.max_time_skew:", "got -1s"}},
		{"sub-second time skew", func(c *Configuration) { c.MaxTimeSkew = time.Millisecond }, []string{"ingest.flows.max_time_skew:", "got 1ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfiguration()
			tt.modify(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() error %q, want it to contain %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "ingest.flows."); n != 1 {
				t.Errorf("Validate() error %q names %d keys, want 1", err, n)
			}
		})
	}
}

func TestValidateAcceptsBounds(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.Readers = 256
	cfg.ReceiveBuffer = 0
	cfg.FlushInterval = 100 * time.Millisecond
	cfg.DeadLetterMaxBytes = 0
	cfg.Listen = nil
	cfg.MaxTimeSkew = time.Second
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate() at the bounds: %v", err)
	}
	cfg.MaxTimeSkew = 0 // never clamp
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate() with max_time_skew 0: %v", err)
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	cfg := Configuration{
		Listen:        []string{"bogus", "sflow://0.0.0.0:6343", "netflow://x"},
		Readers:       -1,
		FlushInterval: time.Second,
		// Valid, so that only the keys above are reported.
		MaxTemplatesPerExporter: 1,
		MaxTemplates:            1,
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	var keys []string
	for _, line := range strings.Split(err.Error(), "\n") {
		key, _, _ := strings.Cut(line, ":")
		keys = append(keys, key)
	}
	want := []string{"ingest.flows.listen[0]", "ingest.flows.listen[2]", "ingest.flows.readers", "ingest.flows.flush_interval"}
	if diff := cmp.Diff(keys, want); diff != "" {
		t.Errorf("keys named by Validate() (-got +want):\n%s\nerror: %v", diff, err)
	}
}
