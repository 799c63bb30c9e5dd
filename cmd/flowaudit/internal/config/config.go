// Package config loads flowaudit's one YAML configuration file. Every key
// is optional; defaults work on one machine. Unknown keys and invalid
// values are errors that name the key (and the line).
//
// It lives under cmd/flowaudit because it is part of the composition:
// the file has a section per component, so this package imports every
// stage's Configuration; nothing below cmd/flowaudit may (internal/ and
// the stages never import each other upwards).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flowaudit/flowaudit/archive"
	"github.com/flowaudit/flowaudit/console"
	"github.com/flowaudit/flowaudit/detect"
	"github.com/flowaudit/flowaudit/detect/webhook"
	"github.com/flowaudit/flowaudit/enrich"
	"github.com/flowaudit/flowaudit/ingest/access"
	"github.com/flowaudit/flowaudit/ingest/flow"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/probe"
	"github.com/flowaudit/flowaudit/report"
	"github.com/flowaudit/flowaudit/sink"
)

// Configuration is the whole configuration file. The key names are a
// public contract (DESIGN.md); renaming one needs a migration note.
type Configuration struct {
	// DataDir holds the embedded broker's log, NetFlow templates and other
	// state that must survive a restart.
	DataDir string `yaml:"data_dir"`
	// ShutdownTimeout is the one deadline of a stop (SIGINT, SIGTERM or
	// a component failing): past it the process exits with status 1,
	// having flushed what it could. Components stop in reverse start
	// order within it; the sink's final flush (sink.shutdown_timeout)
	// must fit inside.
	ShutdownTimeout time.Duration              `yaml:"shutdown_timeout"`
	Kafka           kafka.Configuration        `yaml:"kafka"`
	ClickHouse      clickhousedb.Configuration `yaml:"clickhouse"`
	Ingest          IngestConfiguration        `yaml:"ingest"`
	Sink            sink.Configuration         `yaml:"sink"`
	Policy          PolicyConfiguration        `yaml:"policy"`
	Enrich          enrich.Configuration       `yaml:"enrich"`
	Detect          detect.Configuration       `yaml:"detect"`
	Alerts          webhook.Configuration      `yaml:"alerts"`
	Probe           probe.Configuration        `yaml:"probe"`
	Console         console.Configuration      `yaml:"console"`
	Report          report.Configuration       `yaml:"report"`
	Audit           AuditConfiguration         `yaml:"audit"`
	Metrics         reporter.Configuration     `yaml:"metrics"`
	Log             LogConfiguration           `yaml:"log"`
	Archive         archive.Configuration      `yaml:"archive"`
}

// IngestConfiguration is the ingest section.
type IngestConfiguration struct {
	Flows  flow.Configuration   `yaml:"flows"`
	Access access.Configuration `yaml:"access"`
}

// PolicyConfiguration is the policy section.
type PolicyConfiguration struct {
	// File declares segments, inventory and allow rules.
	File string `yaml:"file"`
}

// LogConfiguration is the log section.
type LogConfiguration struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Default returns the configuration used when a key is absent.
func Default() Configuration {
	return Configuration{
		DataDir:         "./var",
		ShutdownTimeout: 60 * time.Second,
		Kafka:           kafka.DefaultConfiguration(),
		ClickHouse:      clickhousedb.DefaultConfiguration(),
		Ingest: IngestConfiguration{
			Flows:  flow.DefaultConfiguration(),
			Access: access.DefaultConfiguration(),
		},
		Sink:    sink.DefaultConfiguration(),
		Enrich:  enrich.DefaultConfiguration(),
		Detect:  detect.DefaultConfiguration(),
		Alerts:  webhook.DefaultConfiguration(),
		Probe:   probe.DefaultConfiguration(),
		Console: console.DefaultConfiguration(),
		Report:  report.DefaultConfiguration(),
		Metrics: reporter.DefaultConfiguration(),
		Log:     LogConfiguration{Level: "info", Format: "text"},
		Archive: archive.DefaultConfiguration(),
	}
}

// Load reads path (empty: defaults only) and validates the result.
func Load(path string) (Configuration, error) {
	cfg := Default()
	if path == "" {
		return cfg, cfg.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("reading configuration: %w", err)
	}
	if err := Parse(data, &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML over cfg (which holds the defaults) and validates.
func Parse(data []byte, cfg *Configuration) error {
	if len(bytes.TrimSpace(data)) > 0 {
		var node yaml.Node
		if err := yaml.Unmarshal(data, &node); err != nil {
			return fmt.Errorf("not valid YAML: %w", err)
		}
		if err := decodeStrict(&node, cfg); err != nil {
			return err
		}
	}
	return cfg.Validate()
}

// Validate checks every section; each error names its key.
func (c Configuration) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty (state such as templates and the embedded broker's log lives there)"))
	}
	if c.ShutdownTimeout < time.Second {
		errs = append(errs, fmt.Errorf("shutdown_timeout: must be at least 1s, got %s", c.ShutdownTimeout))
	} else if c.Sink.ShutdownTimeout >= c.ShutdownTimeout {
		errs = append(errs, fmt.Errorf("sink.shutdown_timeout: %s must be below shutdown_timeout (%s), the deadline of the whole stop; lower it or raise shutdown_timeout",
			c.Sink.ShutdownTimeout, c.ShutdownTimeout))
	}
	for _, err := range []error{
		c.Kafka.Validate(), c.ClickHouse.Validate(), c.Ingest.Flows.Validate(), c.Ingest.Access.Validate(),
		c.Sink.Validate(), c.Metrics.Validate(),
	} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Enrich.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Policy.File != "" {
		if _, err := os.Stat(c.Policy.File); err != nil {
			errs = append(errs, fmt.Errorf("policy.file: %v (check the path; run \"flowaudit policy validate FILE\")", err))
		}
	}
	for _, err := range []error{c.Detect.Validate(), c.Alerts.Validate(), c.Probe.Validate(), c.Console.Validate(), c.Report.Validate(), c.Audit.Validate(), c.Archive.Validate()} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}
