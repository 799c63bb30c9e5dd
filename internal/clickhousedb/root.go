// Package clickhousedb opens connections to the ClickHouse server analysts
// query, from the clickhouse section of the configuration.
package clickhousedb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/internal/backoff"
)

// Configuration is the clickhouse section of the configuration file.
type Configuration struct {
	// Addr is the native-protocol address (host:port), usually port 9000.
	Addr string `yaml:"addr"`
	// Database holds every flowaudit table; created by migrate.
	Database string `yaml:"database"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Retention is how long flows are kept: a TTL on modern servers,
	// partition drops on old ones. 0 keeps everything.
	Retention time.Duration `yaml:"retention"`
	// Cluster, when set, makes migrate create the tables ON CLUSTER with
	// Replicated engines and Distributed tables in front (see
	// schemas.DDL), and inserts wait for every shard
	// (insert_distributed_sync).
	Cluster string `yaml:"cluster"`
	// Compression of the blocks sent and received: auto (none when addr
	// is a loopback address, where compressing only costs the CPU both
	// ends share; lz4 otherwise), none, lz4 or zstd.
	Compression string `yaml:"compression"`
}

// DefaultConfiguration returns defaults for a local server.
func DefaultConfiguration() Configuration {
	return Configuration{
		Addr:        "127.0.0.1:9000",
		Database:    "flowaudit",
		Username:    "default",
		DialTimeout: 5 * time.Second,
		Retention:   30 * 24 * time.Hour,
		Compression: "auto",
	}
}

var identRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,63}$`)

// Validate checks the configuration; errors name the key.
func (c Configuration) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("clickhouse.addr: %q is not host:port (the native protocol port, usually 9000)", c.Addr))
	}
	if !identRE.MatchString(c.Database) {
		errs = append(errs, fmt.Errorf("clickhouse.database: %q must be a plain identifier (letters, digits, underscore)", c.Database))
	}
	if c.Username == "" {
		errs = append(errs, errors.New("clickhouse.username: must not be empty (ClickHouse's own default user is \"default\")"))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("clickhouse.dial_timeout: must be positive, got %s", c.DialTimeout))
	}
	if c.Cluster != "" && !identRE.MatchString(c.Cluster) {
		errs = append(errs, fmt.Errorf("clickhouse.cluster: %q must be a cluster name of remote_servers (letters, digits, underscore), or empty for a single server", c.Cluster))
	}
	switch c.Compression {
	case "auto", "none", "lz4", "zstd":
	default:
		errs = append(errs, fmt.Errorf("clickhouse.compression: %q is not auto, none, lz4 or zstd", c.Compression))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("clickhouse.retention: must be 0 (keep forever) or positive, got %s", c.Retention))
	}
	return errors.Join(errs...)
}

// compression is clickhouse.compression as the driver takes it (nil:
// none).
func (c Configuration) compression() *clickhouse.Compression {
	switch c.Compression {
	case "none":
		return nil
	case "zstd":
		return &clickhouse.Compression{Method: clickhouse.CompressionZSTD}
	case "lz4":
		return &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err == nil {
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
}

// Open returns a connection pool to the server. It does not dial; use
// Ping to wait for the server.
func Open(c Configuration) (driver.Conn, error) {
	var settings clickhouse.Settings
	if c.Cluster != "" {
		// An INSERT into a Distributed table returns once every shard
		// has its rows (and their sink_progress), not when queued.
		settings = clickhouse.Settings{"insert_distributed_sync": 1}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Settings: settings,
		Addr:     []string{c.Addr},
		Auth: clickhouse.Auth{
			Database: "default", // the flowaudit database may not exist yet
			Username: c.Username,
			Password: c.Password,
		},
		DialTimeout:     c.DialTimeout,
		MaxOpenConns:    8,
		MaxIdleConns:    4,
		ConnMaxLifetime: time.Hour,
		Compression:     c.compression(),
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse.addr %s: %w", c.Addr, err)
	}
	return conn, nil
}

// WaitReady pings until the server answers or ctx ends, logging through
// onRetry (may be nil) between attempts.
func WaitReady(ctx context.Context, conn driver.Conn, onRetry func(error)) error {
	for attempt := 1; ; attempt++ {
		err := conn.Ping(ctx)
		if err == nil {
			return nil
		}
		if onRetry != nil {
			onRetry(err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ClickHouse not reachable: %w", err)
		case <-time.After(backoff.Delay(200*time.Millisecond, 5*time.Second, attempt, false)):
		}
	}
}
