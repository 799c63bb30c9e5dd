package main

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/archive"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

// distinctFlows counts the distinct flows of a flows table (ClickHouse's
// or the archive's file()): one source record's rows, whichever input
// record carried them, count once.
const distinctFlows = `SELECT toUInt64(count()), toUInt64(sum(bytes)) FROM
(SELECT DISTINCT source_partition, source_offset, src_addr, dst_addr, src_port, dst_port, proto, bytes FROM %s)`

// archiveFigures is what the archive test compares: rows, the sums of
// bytes and packets, and the rows of a sample of sources rendered in full
// (every column flows and the archive share), sorted.
type archiveFigures struct {
	Rows, Bytes, Packets uint64
	Sample               []string
}

// archiveSampled selects the sample: the rows of one source record in
// 101.
func archiveSampled(sourceOffset int64) bool { return sourceOffset%101 == 7 }

// sharedFlowColumns are the columns of flows the archive also has.
func sharedFlowColumns() []schemas.Column {
	var out []schemas.Column
	for _, c := range schemas.FlowsTable.Columns {
		if _, ok := archive.Archived[archive.TableFlows].FieldsByName(c.Name); ok && c.Alias == "" {
			out = append(out, c)
		}
	}
	return out
}

// sqlFigures reads the figures from a flows table over conn: ClickHouse's
// flows, or the archive through the modern engine's file(). Times are
// rendered as Unix seconds (the old generation's precision), addresses
// by IPv6NumToString.
func sqlFigures(t *testing.T, conn driver.Conn, from string) archiveFigures {
	t.Helper()
	var f archiveFigures
	if err := conn.QueryRow(t.Context(), "SELECT toUInt64(count()), toUInt64(sum(bytes)), toUInt64(sum(packets)) FROM "+from).Scan(&f.Rows, &f.Bytes, &f.Packets); err != nil {
		t.Fatalf("%s: %v", from, err)
	}
	var exprs []string
	for _, c := range sharedFlowColumns() {
		switch c.Type {
		case schemas.TypeAddr:
			exprs = append(exprs, "IPv6NumToString("+c.Name+")")
		case schemas.TypeDateTime, schemas.TypeDateTime64ms:
			exprs = append(exprs, "toString(toUnixTimestamp("+c.Name+"))")
		default:
			exprs = append(exprs, "toString("+c.Name+")")
		}
	}
	rows, err := conn.Query(t.Context(), "SELECT "+strings.Join(exprs, ", ")+" FROM "+from+" WHERE source_offset % 101 = 7")
	if err != nil {
		t.Fatalf("%s: %v", from, err)
	}
	defer rows.Close()
	vals := make([]string, len(exprs))
	dest := make([]any, len(exprs))
	for i := range vals {
		dest[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		f.Sample = append(f.Sample, strings.Join(vals, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(f.Sample)
	return f
}

// arrowFigures reads the figures from every flows file of the archive
// with arrow-go, rendering values as sqlFigures does.
func arrowFigures(t *testing.T, dir string) archiveFigures {
	t.Helper()
	files, err := filepath.Glob(archive.Glob(dir, archive.TableFlows))
	if err != nil {
		t.Fatal(err)
	}
	cols := sharedFlowColumns()
	var f archiveFigures
	for _, path := range files {
		rdr, err := file.OpenParquetFile(path, false)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		rr, err := fr.GetRecordReader(t.Context(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for rr.Next() {
			rec := rr.RecordBatch()
			col := func(name string) arrow.Array {
				idx := rec.Schema().FieldIndices(name)
				if len(idx) != 1 {
					t.Fatalf("%s has no column %s", path, name)
				}
				return rec.Column(idx[0])
			}
			bytesCol, packetsCol := col("bytes").(*array.Uint64), col("packets").(*array.Uint64)
			srcOff := col("source_offset").(*array.Int64)
			arrs := make([]arrow.Array, len(cols))
			for i, c := range cols {
				arrs[i] = col(c.Name)
			}
			vals := make([]string, len(cols))
			for r := 0; r < int(rec.NumRows()); r++ {
				f.Rows++
				f.Bytes += bytesCol.Value(r)
				f.Packets += packetsCol.Value(r)
				if !archiveSampled(srcOff.Value(r)) {
					continue
				}
				for i, a := range arrs {
					vals[i] = arrowValue(t, a, r)
				}
				f.Sample = append(f.Sample, strings.Join(vals, "|"))
			}
		}
		if err := rr.Err(); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		rr.Release()
		rdr.Close()
	}
	sort.Strings(f.Sample)
	return f
}

func arrowValue(t *testing.T, a arrow.Array, i int) string {
	switch a := a.(type) {
	case *array.FixedSizeBinary:
		return netip.AddrFrom16([16]byte(a.Value(i))).String()
	case *array.Timestamp:
		return strconv.FormatInt(int64(a.Value(i))/1000, 10)
	case *array.String:
		return a.Value(i)
	case *array.Uint8:
		return strconv.FormatUint(uint64(a.Value(i)), 10)
	case *array.Uint16:
		return strconv.FormatUint(uint64(a.Value(i)), 10)
	case *array.Uint32:
		return strconv.FormatUint(uint64(a.Value(i)), 10)
	case *array.Uint64:
		return strconv.FormatUint(a.Value(i), 10)
	case *array.Int32:
		return strconv.FormatInt(int64(a.Value(i)), 10)
	case *array.Int64:
		return strconv.FormatInt(a.Value(i), 10)
	}
	t.Fatalf("no rendering for %T", a)
	return ""
}

// TestArchiveRun is the archive's acceptance test: `flowaudit run` with
// archive.dir under NetFlow load, killed with SIGKILL mid-hour and
// started again, then stopped. The Parquet files, read with arrow-go and
// with the modern engine's file(), hold exactly the rows ClickHouse holds:
// the same count, sums of bytes and packets, and every column of a sample
// of rows (one source record in 101) — no duplicate, though the enrich
// stage may produce sources again after the kill. At least 40,000 flows
// accepted; 1,000,000 with FLOWAUDIT_LONG=1.
func TestArchiveRun(t *testing.T) {
	e := modernch.Open(t)
	total, rate := uint64(40_000), 8_000
	if os.Getenv("FLOWAUDIT_LONG") == "1" {
		total, rate = 1_000_000, 40_000
	}
	ch := testutil.StartClickHouse(t)
	dir := filepath.Join(t.TempDir(), "archive")
	p := newPipeline(t, ch, pipelineOptions{extraYAML: "archive:\n  dir: " + dir + "\n"})
	p.Start()

	stop := make(chan struct{})
	var sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); loadSender(t, p.NetFlowAddr, rate, stop, &sent) }()
	for deadline := time.Now().Add(10 * time.Minute); sent.Load() < total/2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sent %d of %d flows in 10 minutes", sent.Load(), total/2)
		}
	}
	// A few more flows are accepted between this scrape and the kill.
	before := uint64(p.Metric("flowaudit_ingest_produced_flows_total"))
	p.Kill() // mid-hour: the archive's open files are lost, their offsets uncommitted
	p.Start()
	// Flows sent while no collector listened are not accepted: send until
	// the broker has accepted total.
	for deadline := time.Now().Add(10 * time.Minute); before+uint64(p.Metric("flowaudit_ingest_produced_flows_total")) < total; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d flows accepted in 10 minutes", before+uint64(p.Metric("flowaudit_ingest_produced_flows_total")), total)
		}
	}
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
	var accepted uint64
	for _, n := range acceptedFlows(t, p.KafkaAddr, "flowaudit.flows.v1") {
		accepted += n
	}
	waitFlows(t, ch, accepted, 10*time.Minute)
	p.waitSinkDrained(5 * time.Minute)
	// What the enrich stage does when it dies between producing and
	// committing: the last records of every enriched partition are
	// produced again. ClickHouse's sink skips them; so must the archive.
	const archiveSkipped = "skipped enriched records whose source is archived already"
	skippedBefore, dupsBefore := strings.Count(p.Logs(), archiveSkipped), p.Metric("flowaudit_sink_duplicate_records_total")
	if skippedBefore > 0 || dupsBefore > 0 {
		t.Logf("after the kill the enrich stage produced records again: the sink skipped %v, the archive logged %d skips", dupsBefore, skippedBefore)
	}
	copies := reproduceLast(t, p.KafkaAddr, "flowaudit.enriched.v1", 20)
	p.WaitMetric("flowaudit_sink_duplicate_records_total", dupsBefore+float64(copies), 60*time.Second)
	for deadline := time.Now().Add(60 * time.Second); strings.Count(p.Logs(), archiveSkipped) == skippedBefore; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the archive did not skip the %d records produced again", copies)
		}
	}
	p.waitSinkDrained(time.Minute)
	p.Stop() // the archive writes its open files

	fromCH := sqlFigures(t, ch.Conn(t), "flowaudit.flows")
	if fromCH.Rows != accepted || accepted < total || len(fromCH.Sample) == 0 {
		t.Fatalf("ClickHouse has %d rows (sample %d) of %d accepted flows", fromCH.Rows, len(fromCH.Sample), accepted)
	}
	fromArrow := arrowFigures(t, dir)
	fromFile := sqlFigures(t, modernch.Conn(e), "file('"+archive.Glob(dir, archive.TableFlows)+"', Parquet)")
	if d := cmp.Diff(fromArrow, fromCH); d != "" {
		t.Errorf("the archive read with arrow-go differs from ClickHouse (-arrow +clickhouse):\n%s", d)
	}
	if d := cmp.Diff(fromFile, fromCH); d != "" {
		t.Errorf("the archive read with file() differs from ClickHouse (-file +clickhouse):\n%s", d)
	}
	t.Logf("%d flows sent, %d accepted, %d enriched records produced again; ClickHouse, arrow-go and file(): %d rows, %d bytes, %d packets, %d sampled rows identical",
		sent.Load(), accepted, copies, fromCH.Rows, fromCH.Bytes, fromCH.Packets, len(fromCH.Sample))
}

// reproduceLast produces the last n records of every partition of topic
// again, to the same partition with the same key, value and headers (the
// source header among them), and returns how many.
func reproduceLast(t *testing.T, broker, topic string, n int64) int {
	t.Helper()
	ends := topicEnds(t, broker, topic)
	offsets := map[string]map[int32]kgo.Offset{topic: {}}
	want := 0
	for p, end := range ends {
		from := max(end-n, 0)
		offsets[topic][p] = kgo.NewOffset().At(from)
		want += int(end - from)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumePartitions(offsets), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < want {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers})
			}
		})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return len(recs)
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
	if got := waitFlows(t, ch, total, 120*time.Second); got != total || total == 0 {
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
