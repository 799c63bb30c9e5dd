package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// TestSeparateStages runs the pipeline as an operator with a cluster
// would: a broker process, a collector, an enricher, and two sink
// processes sharing one consumer group. Every flow lands exactly once.
func TestSeparateStages(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	dir := t.TempDir()
	kafkaAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	netflow := fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))
	write := func(name, metrics string) string {
		path := filepath.Join(dir, name+".yaml")
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
    syslog_listen: []
    http_listen: ""
sink:
  batch_interval: 200ms
metrics:
  listen: %s
`, filepath.Join(dir, "var-"+name), kafkaAddr, ch.Addr, netflow, metrics)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	metrics := map[string]string{}
	for _, n := range []string{"broker", "collect", "enrich", "sink1", "sink2"} {
		metrics[n] = fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	}
	startProc(t, dir, "broker", "broker", "--config", write("broker", metrics["broker"]))
	waitReady(t, metrics["broker"])
	startProc(t, dir, "collect", "collect", "--config", write("collect", metrics["collect"]))
	startProc(t, dir, "enrich", "enrich", "--config", write("enrich", metrics["enrich"]))
	sink1 := startProc(t, dir, "sink1", "sink", "--config", write("sink1", metrics["sink1"]))
	startProc(t, dir, "sink2", "sink", "--config", write("sink2", metrics["sink2"]))
	for _, n := range []string{"collect", "enrich", "sink1", "sink2"} {
		waitReady(t, metrics[n])
	}
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
	if got := waitCount(t, ch, countFlows, want.Flows, 60*time.Second); got != want.Flows {
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
	if got := waitCount(t, ch, countFlows, want.Flows, 60*time.Second); got != want.Flows {
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
