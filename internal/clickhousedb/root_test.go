package clickhousedb

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil"
)

func TestDefaultConfiguration(t *testing.T) {
	cfg := DefaultConfiguration()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.Addr != "127.0.0.1:9000" || cfg.Database != "flowaudit" || cfg.Username != "default" {
		t.Errorf("defaults = %+v; want DESIGN.md's 127.0.0.1:9000, flowaudit, default", cfg)
	}
}

func TestCompression(t *testing.T) {
	for _, tc := range []struct {
		addr, compression string
		want              string // "" for none
	}{
		{"127.0.0.1:9000", "auto", ""},
		{"[::1]:9000", "auto", ""},
		{"localhost:9000", "auto", ""},
		{"10.1.2.3:9000", "auto", "lz4"},
		{"clickhouse:9000", "auto", "lz4"},
		{"127.0.0.1:9000", "lz4", "lz4"},
		{"10.1.2.3:9000", "none", ""},
		{"10.1.2.3:9000", "zstd", "zstd"},
	} {
		cfg := DefaultConfiguration()
		cfg.Addr, cfg.Compression = tc.addr, tc.compression
		got := ""
		if c := cfg.compression(); c != nil {
			got = c.Method.String()
		}
		if got != tc.want {
			t.Errorf("addr %s, compression %s: method %q, want %q", tc.addr, tc.compression, got, tc.want)
		}
	}
}

func TestValidateNamesKeys(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Configuration)
		key    string
	}{
		{func(c *Configuration) { c.Addr = "localhost" }, "clickhouse.addr"},
		{func(c *Configuration) { c.Database = "flow-audit; DROP" }, "clickhouse.database"},
		{func(c *Configuration) { c.Username = "" }, "clickhouse.username"},
		{func(c *Configuration) { c.DialTimeout = 0 }, "clickhouse.dial_timeout"},
		{func(c *Configuration) { c.Retention = -time.Hour }, "clickhouse.retention"},
		{func(c *Configuration) { c.Compression = "brotli" }, "clickhouse.compression"},
	} {
		cfg := DefaultConfiguration()
		tc.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tc.key)
		}
	}
}

// TestWaitReady waits for a real server, and gives up with a clear error
// on an address where none answers.
func TestWaitReady(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	cfg := DefaultConfiguration()
	cfg.Addr = ch.Addr
	conn, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitReady(ctx, conn, nil); err != nil {
		t.Fatalf("WaitReady on a running server: %v", err)
	}

	cfg.Addr = "127.0.0.1:1"
	cfg.DialTimeout = 200 * time.Millisecond
	dead, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	retries := 0
	err = WaitReady(ctx2, dead, func(error) { retries++ })
	if err == nil || !strings.Contains(err.Error(), "ClickHouse not reachable") || retries == 0 {
		t.Errorf("WaitReady on a dead address = %v after %d retries; want a not-reachable error after retries", err, retries)
	}
}
