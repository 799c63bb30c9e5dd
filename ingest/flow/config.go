package flow

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Configuration is the ingest.flows section of the configuration file.
type Configuration struct {
	// Listen lists UDP listeners as scheme://host:port. netflow:// takes
	// NetFlow v5, v9 and IPFIX on one port (told apart by the version
	// field); sflow:// takes sFlow v5.
	Listen []string `yaml:"listen"`
	// Readers is the number of sockets (SO_REUSEPORT) and goroutines per
	// listener; 0 means one per CPU.
	Readers int `yaml:"readers"`
	// ReceiveBuffer is the requested kernel receive buffer per socket in
	// bytes. SO_RCVBUFFORCE is tried first (root or CAP_NET_ADMIN), then
	// SO_RCVBUF (capped by net.core.rmem_max); the effective size is
	// logged and exported as flowaudit_ingest_receive_buffer_bytes.
	ReceiveBuffer int `yaml:"receive_buffer"`
	// FlushInterval bounds how long a decoded flow waits before it is
	// sent to the broker. Kept small: anything unflushed is lost if the
	// collector is killed.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// DeadLetterMaxBytes bounds the raw payload copied into a dead-letter
	// record.
	DeadLetterMaxBytes int `yaml:"dead_letter_max_bytes"`
	// DeadLetterRate bounds the undecodable datagrams copied to the
	// dead-letter topic, per second (bursts of as many); past it they are
	// still counted per reason (flowaudit_ingest_decode_errors_total) and
	// in flowaudit_ingest_dead_letters_dropped_total{reason}, but not
	// copied, so a flood of junk cannot fill the broker. 0: no bound.
	DeadLetterRate int `yaml:"dead_letter_rate"`
	// MaxTimeSkew bounds how far a flow's start or end may lie from its
	// datagram's export time (NetFlow v5/v9, IPFIX). A time further off is
	// clamped to the bound and counted in
	// flowaudit_ingest_flow_times_clamped_total{exporter,reason}; 0 never
	// clamps.
	MaxTimeSkew time.Duration `yaml:"max_time_skew"`
	// MaxExporterSeries bounds the exporters with metric series of their
	// own (exporter="ADDR"); only exporters that sent valid data get
	// one, the others are counted as exporter="other". Anyone can send a
	// datagram from any address: without the bound each would add series.
	MaxExporterSeries int `yaml:"max_exporter_series"`
	// MaxTemplatesPerExporter bounds the NetFlow v9/IPFIX templates kept
	// for one exporter address (all its ports and domains); a new one
	// beyond it is refused and counted as reason template_limit.
	MaxTemplatesPerExporter int `yaml:"max_templates_per_exporter"`
	// MaxTemplates bounds the templates kept in all.
	MaxTemplates int `yaml:"max_templates"`
	// ExporterSeriesTTL is how long an exporter may stay silent before
	// its series are deleted and its slot freed; 0 keeps them forever.
	ExporterSeriesTTL time.Duration `yaml:"exporter_series_ttl"`
}

// DefaultConfiguration returns the defaults of DESIGN.md.
func DefaultConfiguration() Configuration {
	return Configuration{
		Listen:                  []string{"netflow://0.0.0.0:2055", "sflow://0.0.0.0:6343"},
		ReceiveBuffer:           32 << 20,
		FlushInterval:           20 * time.Millisecond,
		DeadLetterMaxBytes:      65535,
		DeadLetterRate:          1000,
		MaxTimeSkew:             24 * time.Hour,
		MaxExporterSeries:       1000,
		ExporterSeriesTTL:       time.Hour,
		MaxTemplatesPerExporter: 4096,
		MaxTemplates:            100000,
	}
}

// Protocol is what a listener accepts.
type Protocol string

// Listener protocols (URL schemes of ingest.flows.listen).
const (
	ProtocolNetFlow Protocol = "netflow"
	ProtocolSFlow   Protocol = "sflow"
)

// ListenerSpec is one parsed entry of ingest.flows.listen.
type ListenerSpec struct {
	Protocol Protocol
	Addr     string // host:port
}

// ParseListen parses one ingest.flows.listen entry.
func ParseListen(s string) (ListenerSpec, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return ListenerSpec{}, fmt.Errorf("%q is not scheme://host:port (for example netflow://0.0.0.0:2055)", s)
	}
	p := Protocol(strings.ToLower(u.Scheme))
	if p != ProtocolNetFlow && p != ProtocolSFlow {
		return ListenerSpec{}, fmt.Errorf("%q: unknown scheme %q; use netflow:// (v5, v9, IPFIX) or sflow://", s, u.Scheme)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return ListenerSpec{}, fmt.Errorf("%q: %v", s, err)
	}
	return ListenerSpec{Protocol: p, Addr: u.Host}, nil
}

// Validate checks the configuration; errors name the key.
func (c Configuration) Validate() error {
	var errs []error
	for i, l := range c.Listen {
		if _, err := ParseListen(l); err != nil {
			errs = append(errs, fmt.Errorf("ingest.flows.listen[%d]: %w", i, err))
		}
	}
	if c.Readers < 0 || c.Readers > 256 {
		errs = append(errs, fmt.Errorf("ingest.flows.readers: must be between 0 (one per CPU) and 256, got %d", c.Readers))
	}
	if c.ReceiveBuffer < 0 {
		errs = append(errs, fmt.Errorf("ingest.flows.receive_buffer: must be a size in bytes, got %d", c.ReceiveBuffer))
	}
	if c.FlushInterval <= 0 || c.FlushInterval > 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("ingest.flows.flush_interval: must be between 1ms and 100ms (unflushed flows are lost on a crash), got %s", c.FlushInterval))
	}
	if c.DeadLetterMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("ingest.flows.dead_letter_max_bytes: must not be negative, got %d", c.DeadLetterMaxBytes))
	}
	if c.DeadLetterRate < 0 {
		errs = append(errs, fmt.Errorf("ingest.flows.dead_letter_rate: must be 0 (no bound) or a number of records per second, got %d", c.DeadLetterRate))
	}
	if c.MaxExporterSeries < 0 || c.MaxExporterSeries > 100000 {
		errs = append(errs, fmt.Errorf("ingest.flows.max_exporter_series: must be between 0 (every exporter counted as \"other\") and 100000, got %d", c.MaxExporterSeries))
	}
	if c.MaxTemplatesPerExporter < 1 || c.MaxTemplatesPerExporter > 65536 {
		errs = append(errs, fmt.Errorf("ingest.flows.max_templates_per_exporter: must be between 1 and 65536, got %d", c.MaxTemplatesPerExporter))
	}
	if c.MaxTemplates < 1 || c.MaxTemplates > 10000000 {
		errs = append(errs, fmt.Errorf("ingest.flows.max_templates: must be between 1 and 10000000, got %d", c.MaxTemplates))
	}
	if c.ExporterSeriesTTL < 0 || (c.ExporterSeriesTTL > 0 && c.ExporterSeriesTTL < time.Minute) {
		errs = append(errs, fmt.Errorf("ingest.flows.exporter_series_ttl: must be 0 (series never expire) or at least 1m, got %s", c.ExporterSeriesTTL))
	}
	if c.MaxTimeSkew < 0 || (c.MaxTimeSkew > 0 && c.MaxTimeSkew < time.Second) {
		errs = append(errs, fmt.Errorf("ingest.flows.max_time_skew: must be 0 (never clamp flow times) or at least 1s, got %s", c.MaxTimeSkew))
	}
	return errors.Join(errs...)
}
