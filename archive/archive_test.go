package archive

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

var base = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

const flowsPerRecord = 3

// produce writes records [from, to) of the test stream: record i is a
// batch of 3 flows received at base + i*40s (90 records an hour) whose
// bytes are 10i, 10i+1, 10i+2, and an access event every other record.
func produce(t *testing.T, cl *kgo.Client, kcfg kafka.Configuration, from, to int) {
	t.Helper()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		at := uint64(base.Add(time.Duration(i) * 40 * time.Second).UnixNano())
		b := schemas.FlowBatch{TimeReceived: at, Type: schemas.FlowTypeIPFIX, Exporter: schemas.AddrFrom4([4]byte{192, 0, 2, 1})}
		for j := 0; j < flowsPerRecord; j++ {
			b.Flows = append(b.Flows, schemas.Flow{SrcAddr: schemas.AddrFrom4([4]byte{10, 1, 0, byte(i)}), DstPort: 443, Proto: 6,
				Bytes: uint64(10*i + j), Packets: 1, SrcSegment: "web", Verdict: schemas.VerdictAllowed})
		}
		key := []byte(fmt.Sprint(i % 5))
		recs = append(recs, &kgo.Record{Topic: kcfg.Topic(kafka.TopicEnriched), Key: key, Value: schemas.AppendFlowBatch(nil, &b)})
		if i%2 == 0 {
			ev := schemas.AccessEvent{Time: at, Received: at, Source: "sshd", User: fmt.Sprint("u", i), SrcAddr: schemas.AddrFrom4([4]byte{10, 1, 0, byte(i)}),
				Action: "login", Outcome: schemas.OutcomeSuccess}
			recs = append(recs, &kgo.Record{Topic: kcfg.Topic(kafka.TopicAccess), Key: key, Value: schemas.AppendAccessEvent(nil, &ev)})
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readTable reads every Parquet file of table with arrow-go and returns
// the values of column (an integer column) and the files.
func readTable(t *testing.T, dir, table, column string) ([]int64, []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "table="+table, "date=*", "hour=*", "*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	var values []int64
	for _, path := range files {
		tbl := readFile(t, path)
		idx := tbl.Schema().FieldIndices(column)
		if len(idx) != 1 {
			t.Fatalf("%s has no column %s", path, column)
		}
		for _, chunk := range tbl.Column(idx[0]).Data().Chunks() {
			switch a := chunk.(type) {
			case *array.Uint64:
				for i := 0; i < a.Len(); i++ {
					values = append(values, int64(a.Value(i)))
				}
			case *array.Int64:
				for i := 0; i < a.Len(); i++ {
					values = append(values, a.Value(i))
				}
			default:
				t.Fatalf("column %s is %T", column, chunk)
			}
		}
	}
	return values, files
}

// readFile reads the Parquet file at path with arrow-go; the table is
// released when the test ends.
func readFile(t *testing.T, path string) arrow.Table {
	t.Helper()
	rdr, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Cleanup(func() { rdr.Close() })
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tbl.Release)
	return tbl
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestArchiveRestartNoGapsNoDuplicates runs the archive on the kfake
// broker, kills it (no final write, no commit) while an hour is open,
// starts it again and stops it cleanly: the Parquet files hold every
// produced row exactly once, one file per partition and hour, and the
// modern engine's file() reads the same counts.
func TestArchiveRestartNoGapsNoDuplicates(t *testing.T) {
	kcfg := kafka.DefaultConfiguration()
	_, addr := testutil.StartBroker(t, 2, kcfg.Topic(kafka.TopicEnriched), kcfg.Topic(kafka.TopicAccess))
	kcfg.Brokers = []string{addr}
	producer, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	dir := t.TempDir()
	cfg := DefaultConfiguration()
	cfg.Dir, cfg.Retention = dir, 0

	// Hours 0, 1 and part of 2.
	produce(t, producer, kcfg, 0, 200)
	a, err := New(nil, cfg, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	// Hours 0 and 1 of both topics' partitions are written once hour 2
	// arrives on them.
	waitFor(t, "hours 0 and 1 written", func() bool {
		v, _ := readTable(t, dir, TableFlows, "bytes")
		return len(v) >= 180*flowsPerRecord && a.Files() >= 4
	})
	// Killed: the open hour-2 files are neither written nor committed.
	a.crash.Store(true)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}

	produce(t, producer, kcfg, 200, 400) // the rest of hour 2, hours 3 and 4
	b, err := New(nil, cfg, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hour 3 written", func() bool {
		v, _ := readTable(t, dir, TableFlows, "bytes")
		return len(v) >= 360*flowsPerRecord
	})
	// Stop only once b has read everything: records it has not read at
	// stop stay uncommitted for the next start.
	waitFor(t, "every record read", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		var flows, access int64
		for key, st := range b.parts {
			if key.topic == b.flowsTopic {
				flows += st.next
			} else {
				access += st.next
			}
		}
		return flows == 400 && access == 200
	})
	if err := b.Stop(); err != nil { // writes hour 4's open files
		t.Fatal(err)
	}

	bytes, files := readTable(t, dir, TableFlows, "bytes")
	if len(bytes) != 400*flowsPerRecord {
		t.Errorf("flows rows in the archive = %d, want %d produced", len(bytes), 400*flowsPerRecord)
	}
	sort.Slice(bytes, func(i, j int) bool { return bytes[i] < bytes[j] })
	for i := 0; i < 400; i++ {
		for j := 0; j < flowsPerRecord; j++ {
			k := i*flowsPerRecord + j
			if k >= len(bytes) || bytes[k] != int64(10*i+j) {
				t.Fatalf("flow %d of record %d missing or duplicated (sorted bytes[%d] = %v)", j, i, k, bytes[min(k, len(bytes)-1)])
			}
		}
	}
	// One file per partition and hour: the killed run's hour-2 rows were
	// written again under the same names.
	seen := map[string]bool{}
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		parts := strings.Split(rel, string(filepath.Separator))
		key := parts[2] + " " + strings.SplitN(parts[3], "-", 3)[1]
		if seen[key] {
			t.Errorf("two files for one partition and hour: %s", rel)
		}
		seen[key] = true
	}
	if len(files) != 5*2 {
		t.Errorf("%d flows files, want 10 (5 hours x 2 partitions): %v", len(files), files)
	}
	offsets, _ := readTable(t, dir, TableAccess, "kafka_offset")
	if len(offsets) != 200 {
		t.Errorf("access rows in the archive = %d, want 200 produced", len(offsets))
	}

	t.Run("modern engine reads the files", func(t *testing.T) {
		e := modernch.Open(t)
		out, err := e.Query("SELECT count(), sum(bytes), uniqExact(bytes), uniqExact(IPv6NumToString(src_addr)) FROM file('"+dir+"/table=flows/*/*/*.parquet', Parquet)", "TSV")
		if err != nil {
			t.Fatal(err)
		}
		sum := 0
		for i := 0; i < 400; i++ {
			sum += 30*i + 3
		}
		if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("%d\t%d\t%d\t256", 1200, sum, 1200); got != want {
			t.Errorf("file() over flows = %q, want %q", got, want)
		}
		out, err = e.Query("SELECT count(), uniqExact(user) FROM file('"+dir+"/table=access_events/*/*/*.parquet', Parquet)", "TSV")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != "200\t200" {
			t.Errorf("file() over access_events = %q, want 200 rows of 200 users", got)
		}
	})

	t.Run("retention", func(t *testing.T) {
		// Hours 0-4 of base: a cutoff at base+2h deletes hours 0 and 1.
		n, err := Prune(dir, base.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if n != 4 { // 2 hours x 2 tables
			t.Errorf("pruned %d hour partitions, want 4", n)
		}
		v, _ := readTable(t, dir, TableFlows, "bytes")
		if len(v) != 220*flowsPerRecord {
			t.Errorf("%d flows left, want %d (hours 2-4)", len(v), 220*flowsPerRecord)
		}
		if _, err := os.Stat(filepath.Join(dir, "table=flows", "date=2026-11-30", "hour=01")); !os.IsNotExist(err) {
			t.Errorf("hour 01 still there: %v", err)
		}
	})
}

// produceSources writes enriched records for sources [from, to) of
// flows-topic partition 0, all to one archive input partition (one key),
// as the enrich stage does: source i is 3 flows received at base + i*40s
// whose bytes are 10i..10i+2, every third one split into two chunks.
// Producing a range again is what enrich does after a crash.
func produceSources(t *testing.T, cl *kgo.Client, kcfg kafka.Configuration, from, to int) {
	t.Helper()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		at := uint64(base.Add(time.Duration(i) * 40 * time.Second).UnixNano())
		var flows []schemas.Flow
		for j := 0; j < flowsPerRecord; j++ {
			flows = append(flows, schemas.Flow{SrcAddr: schemas.AddrFrom4([4]byte{10, 1, 0, byte(i)}), DstPort: 443, Proto: 6,
				Bytes: uint64(10*i + j), Packets: 1, SrcSegment: "web", Verdict: schemas.VerdictAllowed})
		}
		chunks := [][]schemas.Flow{flows}
		if i%3 == 0 {
			chunks = [][]schemas.Flow{flows[:2], flows[2:]}
		}
		for c, part := range chunks {
			b := schemas.FlowBatch{TimeReceived: at, Type: schemas.FlowTypeIPFIX, Exporter: schemas.AddrFrom4([4]byte{192, 0, 2, 1}), Flows: part}
			src := kafka.Source{Partition: 0, Offset: int64(i), Chunk: uint16(c), Chunks: uint16(len(chunks))}
			recs = append(recs, &kgo.Record{Topic: kcfg.Topic(kafka.TopicEnriched), Key: []byte("k"), Value: schemas.AppendFlowBatch(nil, &b),
				Headers: []kgo.RecordHeader{src.Header()}})
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestArchiveSkipsReproducedSources: sources the enrich stage produced
// again (after its crash) are archived once, as ClickHouse's sink keeps
// them once: within a run, after a clean restart (the marks come back
// from the last file's metadata, since the duplicates are the first
// records read) and across a kill.
func TestArchiveSkipsReproducedSources(t *testing.T) {
	kcfg := kafka.DefaultConfiguration()
	_, addr := testutil.StartBroker(t, 1, kcfg.Topic(kafka.TopicEnriched), kcfg.Topic(kafka.TopicAccess))
	kcfg.Brokers = []string{addr}
	producer, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	dir := t.TempDir()
	cfg := DefaultConfiguration()
	cfg.Dir, cfg.Retention = dir, 0
	start := func() *Component {
		t.Helper()
		c, err := New(nil, cfg, kcfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	readAll := func(c *Component, records int64) {
		t.Helper()
		waitFor(t, "every record read", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			st := c.parts[topicPartition{c.flowsTopic, 0}]
			return st != nil && st.next == records
		})
	}
	records := func(to int) int64 { return int64(to + (to+2)/3) } // chunked sources are two records

	produceSources(t, producer, kcfg, 0, 100)
	produceSources(t, producer, kcfg, 80, 100) // within the run
	a := start()
	readAll(a, records(100)+records(100)-records(80))
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	n := records(100) + records(100) - records(80)
	produceSources(t, producer, kcfg, 50, 100) // first thing the next run reads
	produceSources(t, producer, kcfg, 100, 200)
	n += records(100) - records(50) + records(200) - records(100)
	b := start()
	readAll(b, n)
	if b.Duplicates() != records(100)-records(50) {
		t.Errorf("the restarted archive skipped %d records, want the %d produced again", b.Duplicates(), records(100)-records(50))
	}
	b.crash.Store(true) // killed with hour 4 open
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	produceSources(t, producer, kcfg, 150, 200)
	n += records(200) - records(150)
	c := start()
	readAll(c, n)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	bytes, _ := readTable(t, dir, TableFlows, "bytes")
	sort.Slice(bytes, func(i, j int) bool { return bytes[i] < bytes[j] })
	var want []int64
	for i := 0; i < 200; i++ {
		for j := 0; j < flowsPerRecord; j++ {
			want = append(want, int64(10*i+j))
		}
	}
	if d := cmp.Diff(bytes, want); d != "" {
		t.Errorf("archived flows: each source once (-got +want):\n%s", d)
	}
}

// TestArchiveHoldsEveryColumn: every stored column of flows and
// access_events is in the archive, so a table gaining a column (a new
// identity field, say) cannot leave the archive, and what --from-archive
// answers, behind ClickHouse.
func TestArchiveHoldsEveryColumn(t *testing.T) {
	for _, table := range []schemas.Table{schemas.FlowsTable, schemas.AccessEventsTable} {
		for _, c := range table.Columns {
			if _, ok := Archived[table.Name].FieldsByName(c.Name); !ok && c.Alias == "" {
				t.Errorf("%s.%s is not in the archive's columns (archive/columns.go)", table.Name, c.Name)
			}
		}
	}
}

// TestArchiveRoundTrip writes flows and an access event at the edges of
// their types (unsigned maxima, IPv6, non-ASCII and empty strings) and
// reads the file back with arrow-go: the schema is the archive's Arrow
// schema and every value is the one written.
func TestArchiveRoundTrip(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.Dir = t.TempDir()
	c, err := New(nil, cfg, kafka.DefaultConfiguration())
	if err != nil {
		t.Fatal(err)
	}
	at := uint64(base.Add(90*time.Minute).UnixNano()) + 123_456_789
	v6 := schemas.AddrFromSlice([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe})
	b := schemas.FlowBatch{TimeReceived: at, Type: schemas.FlowTypeNetFlowV9, Exporter: v6, ObservationID: math.MaxUint32}
	b.Flows = []schemas.Flow{
		{SrcAddr: v6, DstAddr: schemas.AddrFrom4([4]byte{10, 2, 0, 7}), SrcPort: math.MaxUint16, DstPort: 443, Proto: math.MaxUint8,
			Bytes: math.MaxUint64, Packets: 1 << 63, InIf: math.MaxUint32, TimeStart: at - 5_000_000_000, TimeEnd: at - 1_000_000,
			SrcSegment: "σ-web", DstSegment: "", Rule: "web→db", SrcIdentity: strings.Repeat("x", 300), Verdict: schemas.VerdictViolation},
		{SrcAddr: schemas.AddrFrom4([4]byte{10, 1, 0, 1}), DstPort: 22, Proto: 6, Bytes: 0, Packets: 0, DstSegment: "db"},
	}
	c.add(&kgo.Record{Topic: c.flowsTopic, Partition: 1, Offset: 41, Value: schemas.AppendFlowBatch(nil, &b)})
	ev := schemas.AccessEvent{Time: at, Received: at + 1e6, Source: "nginx", User: "ünïcode", SrcAddr: v6, SrcPort: 65535, Status: -1,
		Outcome: schemas.OutcomeFailure, Untrusted: true, UserAgent: ""}
	c.add(&kgo.Record{Topic: c.accessTopic, Partition: 0, Offset: 7, Value: schemas.AppendAccessEvent(nil, &ev)})
	for key, st := range c.parts {
		if !c.finish(c.ctx, key, st, false) {
			t.Fatal("finish failed")
		}
	}

	read := func(table string) arrow.Table {
		files, _ := filepath.Glob(filepath.Join(cfg.Dir, "table="+table, "date=2026-11-30", "hour=01", "*.parquet"))
		if len(files) != 1 {
			t.Fatalf("%s: files %v, want one", table, files)
		}
		return readFile(t, files[0])
	}
	value := func(tbl arrow.Table, col string, row int) string {
		idx := tbl.Schema().FieldIndices(col)
		if len(idx) != 1 {
			t.Fatalf("no column %s", col)
		}
		return tbl.Column(idx[0]).Data().Chunk(0).ValueStr(row)
	}
	for table, want := range Archived {
		tbl := read(table)
		got := tbl.Schema()
		if got.NumFields() != want.NumFields() {
			t.Fatalf("%s: %d columns read, want %d", table, got.NumFields(), want.NumFields())
		}
		for i, f := range want.Fields() {
			if g := got.Field(i); g.Name != f.Name || !arrow.TypeEqual(g.Type, f.Type) {
				t.Errorf("%s column %d read as %s %s, want %s %s", table, i, g.Name, g.Type, f.Name, f.Type)
			}
		}
	}
	flows := read(TableFlows)
	if flows.NumRows() != 2 {
		t.Fatalf("flows rows %d, want 2", flows.NumRows())
	}
	for _, c := range []struct {
		col  string
		row  int
		want string
	}{
		{"time_received", 0, "2026-11-30T01:30:00Z"},
		{"time_start", 0, "2026-11-30T01:29:55.123Z"},
		{"time_end", 0, "2026-11-30T01:30:00.122Z"},
		{"flow_type", 0, "netflow_v9"},
		{"exporter", 0, base64.StdEncoding.EncodeToString(v6[:])},
		{"observation_id", 0, "4294967295"},
		{"src_addr", 0, base64.StdEncoding.EncodeToString(v6[:])},
		{"src_port", 0, "65535"},
		{"proto", 0, "255"},
		{"bytes", 0, "18446744073709551615"},
		{"packets", 0, "9223372036854775808"},
		{"in_if", 0, "4294967295"},
		{"src_segment", 0, "σ-web"},
		{"dst_segment", 0, ""},
		{"rule", 0, "web→db"},
		{"src_identity", 0, strings.Repeat("x", 300)},
		{"verdict", 0, "violation"},
		{"kafka_partition", 0, "1"},
		{"kafka_offset", 1, "41"},
		{"dst_segment", 1, "db"},
		{"bytes", 1, "0"},
		{"dst_port", 1, "22"},
	} {
		if got := value(flows, c.col, c.row); got != c.want {
			t.Errorf("flows.%s row %d = %q, want %q", c.col, c.row, got, c.want)
		}
	}
	access := read(TableAccess)
	for _, c := range []struct{ col, want string }{
		{"user", "ünïcode"}, {"src_port", "65535"}, {"status", "-1"}, {"outcome", "failure"}, {"trusted", "0"},
		{"user_agent", ""}, {"kafka_offset", "7"}, {"received", "2026-11-30T01:30:00.124Z"},
	} {
		if got := value(access, c.col, 0); got != c.want {
			t.Errorf("access_events.%s = %q, want %q", c.col, got, c.want)
		}
	}
}
