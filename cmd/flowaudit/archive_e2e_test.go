package main

import (
	"fmt"
	"maps"
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
