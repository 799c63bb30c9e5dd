package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
)

// distinctFlows counts the distinct flows of a flows table (ClickHouse's
// or the archive's file()): one source record's rows, whichever input
// record carried them, count once. A source the enrich stage produced
// again after a kill is in the archive twice (ClickHouse's sink skips it
// by sink_progress).
const distinctFlows = `SELECT toUInt64(count()), toUInt64(sum(bytes)) FROM
(SELECT DISTINCT source_partition, source_offset, src_addr, dst_addr, src_port, dst_port, proto, bytes FROM %s)`

// TestArchiveRun runs `flowaudit run` with archive.dir under load, kills
// it (SIGKILL) mid-hour and starts it again, then stops it: the Parquet
// archive, read by the modern engine's file(), holds exactly the flows
// ClickHouse holds (count and sum of bytes).
func TestArchiveRun(t *testing.T) {
	e := modernch.Open(t)
	ch := testutil.StartClickHouse(t)
	dir := filepath.Join(t.TempDir(), "archive")
	p := newPipeline(t, ch, pipelineOptions{extraYAML: "archive:\n  dir: " + dir + "\n"})
	p.Start()

	stop := make(chan struct{})
	var sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); loadSender(t, p.NetFlowAddr, 5000, stop, &sent) }()
	time.Sleep(3 * time.Second) // load meanwhile
	p.Kill()
	p.Start()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	// The collector may still be flushing: the accepted flows are known
	// once the topic stops growing.
	for last, since := topicEnds(t, p.KafkaAddr, "flowaudit.flows.v1"), time.Now(); time.Since(since) < 2*time.Second; {
		time.Sleep(250 * time.Millisecond)
		if now := topicEnds(t, p.KafkaAddr, "flowaudit.flows.v1"); !maps.Equal(now, last) {
			last, since = now, time.Now()
		}
	}
	accepted := acceptedFlows(t, p.KafkaAddr, "flowaudit.flows.v1")
	var total uint64
	for _, n := range accepted {
		total += n
	}
	waitCount(t, ch, countFlows, total, 120*time.Second)
	p.waitSinkDrained(60 * time.Second)
	p.Stop() // the archive writes its open files

	var chRows, chBytes uint64
	conn := ch.Conn(t)
	if err := conn.QueryRow(t.Context(), fmt.Sprintf(distinctFlows, "flowaudit.flows")).Scan(&chRows, &chBytes); err != nil {
		t.Fatal(err)
	}
	out, err := e.Query(fmt.Sprintf(distinctFlows, "file('"+dir+"/table=flows/*/*/*.parquet', Parquet)"), "TSV")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(out))
	if want := fmt.Sprintf("%d\t%d", chRows, chBytes); got != want || chRows == 0 {
		t.Errorf("archive distinct flows, bytes = %s; ClickHouse has %s (%d accepted by the broker)", got, want, total)
	}
	raw, err := e.Query("SELECT count() FROM file('"+dir+"/table=flows/*/*/*.parquet', Parquet)", "TSV")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d flows accepted, %d in ClickHouse, archive rows %s (distinct %s); %d sent", total, chRows, strings.TrimSpace(string(raw)), got, sent.Load())
}

// TestArchiveOutage: while archive.dir cannot be written (its table
// folder is a regular file), ClickHouse still gets every flow; once the
// folder can be made, the archive catches up with the very same flows.
func TestArchiveOutage(t *testing.T) {
	e := modernch.Open(t)
	ch := testutil.StartClickHouse(t)
	dir := filepath.Join(t.TempDir(), "archive")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "table=flows")
	if err := os.WriteFile(blocker, []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Files of 1,000 rows, so that writes fail while the load runs.
	p := newPipeline(t, ch, pipelineOptions{extraYAML: "archive:\n  dir: " + dir + "\n  max_rows: 1000\n"})
	p.Start()
	stop := make(chan struct{})
	var sent atomic.Uint64
	done := make(chan struct{})
	go func() { defer close(done); loadSender(t, p.NetFlowAddr, 3000, stop, &sent) }()
	time.Sleep(2 * time.Second)
	close(stop)
	<-done
	for last, since := topicEnds(t, p.KafkaAddr, "flowaudit.flows.v1"), time.Now(); time.Since(since) < 2*time.Second; {
		time.Sleep(250 * time.Millisecond)
		if now := topicEnds(t, p.KafkaAddr, "flowaudit.flows.v1"); !maps.Equal(now, last) {
			last, since = now, time.Now()
		}
	}
	var total uint64
	for _, n := range acceptedFlows(t, p.KafkaAddr, "flowaudit.flows.v1") {
		total += n
	}
	if got := waitCount(t, ch, countFlows, total, 120*time.Second); got != total || total == 0 {
		t.Fatalf("ClickHouse has %d of %d accepted flows while the archive is down", got, total)
	}
	if !strings.Contains(p.Logs(), "writing archive file failed") {
		t.Fatalf("the archive did not report its outage:\n%s", p.Logs())
	}
	var chRows, chBytes uint64
	if err := ch.Conn(t).QueryRow(t.Context(), fmt.Sprintf(distinctFlows, "flowaudit.flows")).Scan(&chRows, &chBytes); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	// The archive's retry now succeeds: it catches up but for the open
	// files (at most 1,000 rows per partition), written at stop.
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := e.Query("SELECT count() FROM file('"+dir+"/table=flows/*/*/*.parquet', Parquet)", "TSV")
		var n uint64
		if err == nil {
			fmt.Sscan(strings.TrimSpace(string(out)), &n)
		}
		if n+2*1000 >= chRows {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the archive has %d of %d rows 90 s after the outage ended (%v)", n, chRows, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.Stop()
	out, err := e.Query(fmt.Sprintf(distinctFlows, "file('"+dir+"/table=flows/*/*/*.parquet', Parquet)"), "TSV")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("%d\t%d", chRows, chBytes); got != want {
		t.Errorf("after the outage the archive holds %s, ClickHouse %s", got, want)
	}
}
