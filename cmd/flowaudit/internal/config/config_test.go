package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"
)

func TestDefaultConfiguration(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if got, want := cfg.Kafka.EmbeddedListen, "127.0.0.1:9092"; got != want {
		t.Errorf("kafka.embedded_listen = %q, want %q", got, want)
	}
	if diff := cmp.Diff(cfg.Ingest.Flows.Listen, []string{"netflow://0.0.0.0:2055", "sflow://0.0.0.0:6343"}); diff != "" {
		t.Errorf("ingest.flows.listen (-got +want):\n%s", diff)
	}
	if got, want := cfg.Sink.BatchRows, 100_000; got != want {
		t.Errorf("sink.batch_rows = %d, want %d", got, want)
	}
	if got, want := cfg.Sink.BatchInterval, time.Second; got != want {
		t.Errorf("sink.batch_interval = %v, want %v", got, want)
	}
}

func TestParse(t *testing.T) {
	var cfg = Default()
	err := Parse([]byte(`
data_dir: /tmp/fa
kafka:
  brokers: ["k1:9092", "k2:9092"]
  partitions: 12
clickhouse:
  addr: ch:9000
  password: secret
ingest:
  flows:
    listen: ["netflow://127.0.0.1:2056"]
    flush_interval: 50ms
enrich:
  identity_ttl: 2h
alerts:
  webhooks:
    - url: https://hooks.example/x
      format: slack
      min_severity: high
`), &cfg)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if diff := cmp.Diff(cfg.Kafka.Brokers, []string{"k1:9092", "k2:9092"}); diff != "" {
		t.Errorf("kafka.brokers (-got +want):\n%s", diff)
	}
	if cfg.Kafka.Partitions != 12 || cfg.ClickHouse.Addr != "ch:9000" || cfg.ClickHouse.Password != "secret" {
		t.Errorf("got partitions=%d addr=%q password=%q", cfg.Kafka.Partitions, cfg.ClickHouse.Addr, cfg.ClickHouse.Password)
	}
	if cfg.Ingest.Flows.FlushInterval != 50*time.Millisecond || cfg.Enrich.IdentityTTL != 2*time.Hour {
		t.Errorf("durations: flush_interval=%v identity_ttl=%v", cfg.Ingest.Flows.FlushInterval, cfg.Enrich.IdentityTTL)
	}
	if cfg.ClickHouse.Database != "flowaudit" {
		t.Errorf("unset key lost its default: clickhouse.database = %q", cfg.ClickHouse.Database)
	}
	if len(cfg.Alerts.Webhooks) != 1 || cfg.Alerts.Webhooks[0].Format != "slack" {
		t.Errorf("alerts.webhooks = %+v", cfg.Alerts.Webhooks)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level key", "kafak:\n  brokers: []\n", []string{"kafak (line 1): unknown key", "kafka"}},
		{"unknown nested key", "kafka:\n  bokers: [x]\n", []string{"kafka.bokers (line 2): unknown key", "brokers"}},
		{"wrong type", "kafka:\n  partitions: many\n", []string{"kafka.partitions (line 2)", "an integer"}},
		{"bad duration", "sink:\n  batch_interval: soon\n", []string{"sink.batch_interval (line 2)", "duration"}},
		{"bad listener", "ingest:\n  flows:\n    listen: [\"ftp://1.2.3.4:21\"]\n", []string{"ingest.flows.listen[0]", "netflow://"}},
		{"out of range", "kafka:\n  partitions: 0\n", []string{"kafka.partitions: must be between 1"}},
		{"flush too slow", "ingest:\n  flows:\n    flush_interval: 2s\n", []string{"ingest.flows.flush_interval"}},
		{"webhook field", "alerts:\n  webhooks:\n    - url: x\n      colour: red\n", []string{"alerts.webhooks[0].colour (line 4): unknown key"}},
		{"mapping expected", "kafka: 3\n", []string{"kafka (line 1): expected a mapping"}},
		{"bad clickhouse addr", "clickhouse:\n  addr: localhost\n", []string{"clickhouse.addr"}},
		{"bad policy_drift severity", "detect:\n  policy_drift:\n    enabled: true\n    severity: urgent\n", []string{"detect.policy_drift.severity: \"urgent\""}},
		{"bad digest schedule", "audit:\n  digest_schedule: \"every minute\"\n", []string{"audit.digest_schedule: \"every minute\"", "5-field cron"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			err := Parse([]byte(tc.yaml), &cfg)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	cfg := Default()
	if err := Parse([]byte("# nothing\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cfg, Default()); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

func TestInlineKeys(t *testing.T) {
	type Inner struct {
		A int `yaml:"a"`
	}
	type outer struct {
		Inner `yaml:",inline"`
		B     string `yaml:"b"`
	}
	var o outer
	var node yaml.Node
	if err := yaml.Unmarshal([]byte("a: 3\nb: x\n"), &node); err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(&node, &o); err != nil {
		t.Fatal(err)
	}
	if o.A != 3 || o.B != "x" {
		t.Errorf("decoded %+v", o)
	}
	if err := yaml.Unmarshal([]byte("c: 1\n"), &node); err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(&node, &o); err == nil || !strings.Contains(err.Error(), "valid keys at the top level are: a, b") {
		t.Errorf("unknown key error = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("kafka:\n  brokers: [a:1]\n"))
	f.Add([]byte("ingest:\n  flows:\n    listen: [\"netflow://0.0.0.0:2055\"]\ndetect:\n  address_scan: {threshold: 5}\n"))
	f.Add([]byte("alerts:\n  webhooks:\n    - url: http://x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Default()
		if err := Parse(data, &cfg); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a configuration Validate rejects: %v", err)
		}
	})
}

// TestReadmeDefaults keeps the README's configuration block true: it must
// parse, and every value it shows must be the default.
func TestReadmeDefaults(t *testing.T) {
	readme, err := os.ReadFile("../../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	i := strings.Index(text, "## Configuration")
	if i < 0 {
		t.Fatal("README.md has no Configuration section")
	}
	start := strings.Index(text[i:], "```yaml\n")
	if start < 0 {
		t.Fatal("no yaml block in README's Configuration section")
	}
	block := text[i+start+len("```yaml\n"):]
	block = block[:strings.Index(block, "```")]
	cfg := Default()
	if err := Parse([]byte(block), &cfg); err != nil {
		t.Fatalf("README's configuration block does not parse: %v", err)
	}
	if diff := cmp.Diff(cfg, Default(), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("README shows values that are not the defaults (-README +Default()):\n%s", diff)
	}
}

func TestArchiveKeys(t *testing.T) {
	cfg := Default()
	if cfg.Archive.Dir != "" || cfg.Archive.Retention != 9504*time.Hour {
		t.Errorf("archive defaults = %+v, want disabled with 9504h retention", cfg.Archive)
	}
	if err := Parse([]byte("archive:\n  dir: /srv/archive\n  retention: 2160h\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Archive.Dir != "/srv/archive" || cfg.Archive.Retention != 2160*time.Hour {
		t.Errorf("archive = %+v", cfg.Archive)
	}
	cfg = Default()
	if err := Parse([]byte("archive:\n  retention: 5m\n"), &cfg); err == nil || !strings.Contains(err.Error(), "archive.retention") {
		t.Errorf("a 5m retention: %v, want an error naming archive.retention", err)
	}
}
