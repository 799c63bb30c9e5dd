// Command e2e is the end-to-end throughput benchmark behind `make bench`:
// it runs "flowaudit run" (embedded broker, collector, sink) against a
// local ClickHouse, drives it with simulated exporters at a fixed rate for
// a fixed time, waits until every flow is in ClickHouse, and reports
// flows/s sustained, losses and how long the pipeline took to catch up.
// With -archive the pipeline also writes the Parquet archive (archive.dir),
// whose rows are counted after the stop: run it with and without to see
// what the archive costs the end-to-end rate.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/flowaudit/flowaudit/internal/simulate"
)

func main() {
	rate := flag.Int("rate", 300_000, "total flows per second to send")
	duration := flag.Duration("duration", 60*time.Second, "how long to send (DESIGN.md: 300k flows/s sustained for 60 s)")
	senders := flag.Int("senders", 2, "simulated exporters sending in parallel")
	protocol := flag.String("protocol", "ipfix", "export protocol: ipfix, v9, v5, sflow")
	chAddr := flag.String("clickhouse", "127.0.0.1:9000", "ClickHouse native address (started by deploy/clickhouse-local.sh when absent)")
	keep := flag.Bool("keep", false, "keep the bench database and data directory")
	withArchive := flag.Bool("archive", false, "also write the Parquet archive (archive.dir in the data directory), to compare the rate with and without it")
	flag.Parse()
	if err := run(*rate, *duration, *senders, *protocol, *chAddr, *keep, *withArchive); err != nil {
		fmt.Fprintln(os.Stderr, "bench/e2e:", err)
		os.Exit(1)
	}
}

func freePort(network string) int {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func run(rate int, duration time.Duration, senders int, protoName, chAddr string, keep, withArchive bool) error {
	proto, err := simulate.ParseProtocol(protoName)
	if err != nil {
		return err
	}
	if chAddr == "127.0.0.1:9000" {
		cmd := exec.Command("bash", "deploy/clickhouse-local.sh")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("starting local ClickHouse: %w", err)
		}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := context.Background()
	// A database of its own: two runs at once (the machine is shared)
	// must not count each other's rows.
	db := fmt.Sprintf("flowaudit_bench_%d", os.Getpid())
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		return fmt.Errorf("ClickHouse at %s: %w", chAddr, err)
	}

	dir, err := os.MkdirTemp("", "flowaudit-bench")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	bin := filepath.Join(dir, "flowaudit")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/flowaudit").CombinedOutput(); err != nil {
		return fmt.Errorf("building flowaudit: %v\n%s", err, out)
	}
	target := fmt.Sprintf("127.0.0.1:%d", freePort("udp"))
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort("tcp"))
	listen := "netflow://" + target
	if proto == simulate.ProtocolSFlow {
		listen = "sflow://" + target
	}
	cfg := fmt.Sprintf(`data_dir: %s/var
kafka:
  embedded_listen: 127.0.0.1:%d
  partitions: 4
clickhouse:
  addr: %s
  database: %s
ingest:
  flows:
    listen: [%q]
  access:
    syslog_listen: []
    http_listen: ""
metrics:
  listen: %s
console:
  listen: ""
log:
  level: warn
`, dir, freePort("tcp"), chAddr, db, listen, metrics)
	archiveDir := filepath.Join(dir, "archive")
	if withArchive {
		cfg += "archive:\n  dir: " + archiveDir + "\n"
	}
	cfgPath := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	logf, _ := os.Create(filepath.Join(dir, "flowaudit.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := waitReady(metrics, 90*time.Second); err != nil {
		return err
	}

	fmt.Printf("sending %s at %d flows/s for %s from %d exporters...\n", proto, rate, duration, senders)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent simulate.Totals
	start := time.Now()
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tot, err := simulate.Run(ctx, simulate.Config{Target: target, Protocol: proto, Rate: rate / senders,
				Duration: duration, Seed: int64(i + 1), ObservationID: uint32(i + 1)})
			if err != nil {
				fmt.Fprintln(os.Stderr, "sender:", err)
			}
			mu.Lock()
			sent.Flows += tot.Flows
			sent.Datagrams += tot.Datagrams
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	sendTime := time.Since(start)

	// Wait until ClickHouse has every flow, or nothing moves for 30 s.
	var rows, last uint64
	lastChange := time.Now()
	for time.Since(lastChange) < 30*time.Second {
		_ = conn.QueryRow(ctx, "SELECT toUInt64(count()) FROM "+db+".flows").Scan(&rows)
		if rows >= sent.Flows {
			break
		}
		if rows != last {
			last, lastChange = rows, time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	total := time.Since(start)
	peak := peakRSS(cmd.Process.Pid)
	m := scrape(metrics)
	received := m["flowaudit_ingest_flows_total"]
	fmt.Printf("sent:      %d flows in %d datagrams over %.1fs = %.0f flows/s\n", sent.Flows, sent.Datagrams, sendTime.Seconds(), float64(sent.Flows)/sendTime.Seconds())
	fmt.Printf("received:  %.0f flows by the collector (kernel socket drops: %.0f, decode errors: %.0f)\n", received, m["flowaudit_ingest_socket_drops"], m["flowaudit_ingest_decode_errors_total"])
	fmt.Printf("accepted:  %.0f flows by the broker\n", m["flowaudit_ingest_produced_flows_total"])
	fmt.Printf("inserted:  %d rows in ClickHouse, %.1fs after the first flow was sent (%.1fs after the last)\n", rows, total.Seconds(), (total - sendTime).Seconds())
	fmt.Printf("end to end: %.0f flows/s sustained, %d flows lost (%.4f%%)\n",
		float64(rows)/total.Seconds(), int64(sent.Flows)-int64(rows), 100*float64(int64(sent.Flows)-int64(rows))/float64(max(sent.Flows, 1)))
	fmt.Printf("memory:    flowaudit peak RSS %s\n", peak)
	if withArchive {
		// The archive writes its open files (one per partition and hour)
		// at the stop: stop the pipeline as an operator would, then count
		// the rows of the Parquet files.
		stopStart := time.Now()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		files, arows, size, err := archiveRows(filepath.Join(archiveDir, "table=flows"))
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		fmt.Printf("archive:   %d rows in %d Parquet files (%.1f MiB, %.1f bytes/row), stop took %.1fs\n",
			arows, files, float64(size)/(1<<20), float64(size)/float64(max(arows, 1)), time.Since(stopStart).Seconds())
	}
	if !keep {
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
	}
	return nil
}

// peakRSS is the process's peak resident set (VmHWM), as /proc prints it.
func peakRSS(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// archiveRows counts the files, rows (from the Parquet footers) and bytes
// under dir.
func archiveRows(dir string) (files int, rows int64, size int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return err
		}
		r, err := file.OpenParquetFile(path, false)
		if err != nil {
			return err
		}
		defer r.Close()
		info, err := d.Info()
		if err != nil {
			return err
		}
		files++
		rows += r.NumRows()
		size += info.Size()
		return nil
	})
	return files, rows, size, err
}

func waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("flowaudit not ready after %s", timeout)
}

// scrape sums each metric family on /metrics over its label sets.
func scrape(addr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			out[name] += v
		}
	}
	return out
}
