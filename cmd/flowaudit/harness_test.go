package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// binary is the flowaudit binary built once by TestMain; end-to-end tests
// run it as a child process, exactly as a user does.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flowaudit-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "flowaudit")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building flowaudit: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB, network string) int {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

// pipeline is one "flowaudit run" child process with its own ports, data
// directory and a real ClickHouse server.
type pipeline struct {
	t           testing.TB
	ch          *testutil.ClickHouseServer
	dir         string
	config      string
	NetFlowAddr string
	SFlowAddr   string
	MetricsAddr string
	SyslogUDP   string // host:port
	SyslogTCP   string
	HTTPAddr    string
	KafkaAddr   string // the embedded broker

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{}
}

type pipelineOptions struct {
	extraYAML  string // appended to the generated configuration
	accessYAML string // more keys under ingest.access, indented by 4 spaces
	sinkYAML   string // more keys under sink, indented by 2 spaces
	kafkaYAML  string // more keys under kafka, indented by 2 spaces
}

func newPipeline(t testing.TB, ch *testutil.ClickHouseServer, opts pipelineOptions) *pipeline {
	t.Helper()
	p := &pipeline{t: t, ch: ch, dir: t.TempDir()}
	p.NetFlowAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))
	p.SFlowAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))
	p.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	p.SyslogUDP = fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))
	p.SyslogTCP = fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	p.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	p.KafkaAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	cfg := fmt.Sprintf(`data_dir: %s
kafka:
  embedded_listen: %s
  partitions: 2
%s
clickhouse:
  addr: %s
ingest:
  flows:
    listen: ["netflow://%s", "sflow://%s"]
    readers: 2
  access:
    syslog_listen: ["udp://%s", "tcp://%s"]
    http_listen: %s
%s
sink:
  batch_interval: 200ms
  max_retry_backoff: 500ms
%s
metrics:
  listen: %s
%s`, filepath.Join(p.dir, "var"), p.KafkaAddr, opts.kafkaYAML, ch.Addr, p.NetFlowAddr, p.SFlowAddr,
		p.SyslogUDP, p.SyslogTCP, p.HTTPAddr, opts.accessYAML, opts.sinkYAML, p.MetricsAddr, opts.extraYAML)
	if !strings.Contains(opts.extraYAML, "\nconsole:") && !strings.HasPrefix(opts.extraYAML, "console:") {
		// Its own port, not console.listen's default 127.0.0.1:8088,
		// which the console `make demo` leaves running may hold.
		cfg += fmt.Sprintf("console:\n  listen: 127.0.0.1:%d\n", freePort(t, "tcp"))
	}
	p.config = filepath.Join(p.dir, "flowaudit.yaml")
	if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.mu.Lock()
		running := p.cmd != nil
		p.mu.Unlock()
		if running {
			p.Kill()
		}
		if t.Failed() {
			t.Logf("flowaudit logs:\n%s", p.Logs())
		}
	})
	return p
}

// Start starts "flowaudit run" and waits until /readyz says ready.
func (p *pipeline) Start() {
	p.t.Helper()
	p.mu.Lock()
	if p.logs == nil {
		p.logs = &bytes.Buffer{}
	}
	cmd := exec.Command(binary, "run", "--config", p.config)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	logs := p.logs
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		p.t.Fatalf("starting flowaudit: %v", err)
	}
	p.cmd = cmd
	done := make(chan struct{})
	p.done = done
	p.mu.Unlock()
	go func() { _ = cmd.Wait(); pw.Close(); close(done) }()

	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			p.t.Fatalf("flowaudit exited during start:\n%s", p.Logs())
		default:
		}
		resp, err := http.Get("http://" + p.MetricsAddr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			_ = body
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("flowaudit not ready after 90 s:\n%s", p.Logs())
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *pipeline) Stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM, 60*time.Second)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("flowaudit exited with %d after SIGTERM", code)
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
}

// Kill sends SIGKILL: nothing is flushed.
func (p *pipeline) Kill() {
	p.signal(syscall.SIGKILL, 10*time.Second)
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
}

func (p *pipeline) signal(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		p.t.Errorf("flowaudit did not exit within %s of %v", wait, sig)
	}
}

func (p *pipeline) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.logs == nil {
		return ""
	}
	return p.logs.String()
}

// Metric sums every sample of a metric family from /metrics.
func (p *pipeline) Metric(name string) float64 {
	p.t.Helper()
	resp, err := http.Get("http://" + p.MetricsAddr + "/metrics")
	if err != nil {
		p.t.Fatalf("reading metrics: %v", err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

// WaitMetric waits until Metric(name) >= want.
func (p *pipeline) WaitMetric(name string, want float64, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	var got float64
	for time.Now().Before(deadline) {
		if got = p.Metric(name); got >= want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("%s = %v after %s, want >= %v", name, got, timeout, want)
}

// waitCount polls a SELECT returning one UInt64 until it equals want, or
// until it has not changed for quiet (it then returns what it got).
func waitCount(t testing.TB, ch *testutil.ClickHouseServer, query string, want uint64, timeout time.Duration) uint64 {
	t.Helper()
	conn := ch.Conn(t)
	deadline := time.Now().Add(timeout)
	var got uint64
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := conn.QueryRow(ctx, query).Scan(&got)
		cancel()
		if err == nil && got >= want {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
	return got
}

// rollupTotals gives, for every table a materialized view fills from
// flows with a flows count, the query of its total flows.
func rollupTotals() map[string]string {
	totals := map[string]string{}
	for _, table := range schemas.Tables() {
		if !strings.Contains(table.View, "FROM {db}.flows") {
			continue
		}
		for _, c := range table.Columns {
			if c.Name != "flows" {
				continue
			}
			sum := "sum(flows)"
			if c.Type == schemas.TypeAggregate {
				sum = "countMerge(flows)"
			}
			totals[table.Name] = "SELECT toUInt64(" + sum + ") FROM flowaudit." + table.Name
		}
	}
	return totals
}

// waitFlows waits until flowaudit.flows holds want rows (see waitCount)
// and returns the count. When it does, it also waits until every rollup
// holds as many flows: ClickHouse makes an insert's rows visible in flows
// before it pushes them through the materialized views, so a query on a
// rollup right after the count can still miss the newest block.
func waitFlows(t testing.TB, ch *testutil.ClickHouseServer, want uint64, timeout time.Duration) uint64 {
	t.Helper()
	got := waitCount(t, ch, countFlows, want, timeout)
	if got != want {
		return got
	}
	for name, query := range rollupTotals() {
		if n := waitCount(t, ch, query, got, timeout); n != got {
			t.Fatalf("%s holds %d flows, flows holds %d", name, n, got)
		}
	}
	return got
}
