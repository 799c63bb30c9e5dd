package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

// proc is one flowaudit child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
}

func startProc(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s logs:\n%s", name, b)
		}
	})
	return p
}

func waitReady(t *testing.T, metricsAddr string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + metricsAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s not ready after 60 s", metricsAddr)
}

// cluster is flowaudit run as separate processes sharing one broker
// process: what an operator with a Kafka cluster deploys.
type cluster struct {
	t       *testing.T
	dir     string
	ch      *testutil.ClickHouseServer
	kafka   string
	NetFlow string
	Syslog  string
	extra   string // more YAML for every process
	metrics map[string]string
	procs   map[string]*proc
}

func newCluster(t *testing.T, ch *testutil.ClickHouseServer, extraYAML string) *cluster {
	return &cluster{
		t: t, dir: t.TempDir(), ch: ch, extra: extraYAML,
		kafka:   fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp")),
		NetFlow: fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp")),
		Syslog:  fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp")),
		metrics: map[string]string{}, procs: map[string]*proc{},
	}
}

// start runs "flowaudit COMMAND" as the process called name (its own
// data_dir, metrics port and detect.instance_id) and waits until ready.
func (c *cluster) start(name, command string) *proc {
	c.t.Helper()
	c.metrics[name] = fmt.Sprintf("127.0.0.1:%d", freePort(c.t, "tcp"))
	path := filepath.Join(c.dir, name+".yaml")
	cfg := fmt.Sprintf(`data_dir: %s
kafka:
  embedded_listen: %s
  partitions: 4
clickhouse:
  addr: %s
ingest:
  flows:
    listen: ["netflow://%s"]
  access:
    syslog_listen: ["udp://%s"]
    http_listen: ""
sink:
  batch_interval: 200ms
metrics:
  listen: %s
%s`, filepath.Join(c.dir, "var-"+name), c.kafka, c.ch.Addr, c.NetFlow, c.Syslog, c.metrics[name], c.extra)
	if !strings.Contains(c.extra, "detect:") {
		cfg += "detect:\n"
	}
	cfg += "  instance_id: " + name + "\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
	p := startProc(c.t, c.dir, name, command, "--config", path)
	c.procs[name] = p
	waitReady(c.t, c.metrics[name])
	return p
}

// TestSeparateStages runs the pipeline as an operator with a cluster
// would: a broker process, a collector, an enricher, and two sink
// processes sharing one consumer group. Every flow lands exactly once.
func TestSeparateStages(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	c := newCluster(t, ch, "")
	netflow := c.NetFlow
	c.start("broker", "broker")
	c.start("collect", "collect")
	c.start("enrich", "enrich")
	sink1 := c.start("sink1", "sink")
	c.start("sink2", "sink")
	// Give the group time to settle with both members before sending.
	time.Sleep(3 * time.Second)

	var want typeTotals
	for i := 0; i < 4; i++ { // four exporters spread over the partitions
		tot, err := simulate.Run(context.Background(), simulate.Config{Target: netflow, Protocol: simulate.ProtocolIPFIX,
			Rate: 20000, Count: 2500, Seed: int64(i + 1), ObservationID: uint32(i), Source: fmt.Sprintf("127.0.0.%d", i+2)})
		if err != nil {
			t.Fatal(err)
		}
		want.add(tot)
	}
	if got := waitFlows(t, ch, want.Flows, 60*time.Second); got != want.Flows {
		t.Fatalf("rows = %d, want %d", got, want.Flows)
	}
	// Stopping one sink hands its partitions to the other: later flows
	// still land exactly once.
	_ = sink1.cmd.Process.Signal(syscall.SIGTERM)
	_ = sink1.cmd.Wait()
	if code := sink1.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("sink1 exited with %d after SIGTERM", code)
	}
	for i := 0; i < 4; i++ {
		tot, err := simulate.Run(context.Background(), simulate.Config{Target: netflow, Protocol: simulate.ProtocolIPFIX,
			Rate: 20000, Count: 1000, Seed: int64(i + 10), ObservationID: uint32(i), Source: fmt.Sprintf("127.0.0.%d", i+2)})
		if err != nil {
			t.Fatal(err)
		}
		want.add(tot)
	}
	if got := waitFlows(t, ch, want.Flows, 60*time.Second); got != want.Flows {
		t.Fatalf("rows after one sink stopped = %d, want %d", got, want.Flows)
	}
	time.Sleep(time.Second)
	if diff := cmp.Diff(flowTotals(t, ch)["ipfix"], want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	if n := ch.QueryUint64(t, "SELECT toUInt64(uniqExact(exporter)) FROM flowaudit.flows"); n != 4 {
		t.Errorf("exporters = %d, want 4", n)
	}
}
