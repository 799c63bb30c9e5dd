package sink

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/schemas"
)

// Exactly once into flows, on every ClickHouse generation.
//
// Every row carries its source: the flows-topic record it was made from
// (source_partition, source_offset; enrich names it in the
// kafka.SourceHeader of what it produces, and a record read without that
// header is its own source, source_partition 65535), and the input
// partition it was read from (kafka_partition). The materialized view
// into sink_progress keeps the highest source offset per (kafka_partition,
// source_partition) within the very INSERT of the rows, so ClickHouse
// itself says what it has: an INSERT the sink sent before dying either
// finished (and sink_progress says so) or did not (and it does not).
// There is no second INSERT that a crash could lose.
//
// A sink that starts, or gets a partition, reads sink_progress and skips
// every record whose source offset is at or below it: records read again
// because the Kafka commit did not happen, and records enrich produced
// again because it died before committing its own input. Sources of one
// input partition and source partition arrive in offset order, which is
// what makes "at or below" exact.
//
// One source record may be split into several chunks for one input
// partition (kafka.Source.Chunk of Chunks); an INSERT only takes whole
// sources, so a source is never half in ClickHouse. Rows of a source whose
// chunks are not all there yet are held back, and the committed offset
// stops before its first chunk.

// noSource is source_partition of a row whose input record is its own
// source.
const noSource = 0xFFFF

// flowWriter writes the flows (or enriched) topic into the flows table.
type flowWriter struct {
	name    string
	scratch schemas.FlowBatch
	dec     schemas.FlowDecoder
	parts   map[int32]*flowPartition
	// spare are the columns of partitions forgotten, for reuse: a
	// steady flow fills the same buffers flush after flush.
	spare  []columns
	n      int
	modern bool

	// inserted is, per input partition and source partition, the highest
	// source offset ClickHouse has; accepted also counts buffered rows.
	inserted, accepted map[int32]map[uint16]int64
	// attempted is set once the ready rows were sent: before sending
	// them again, sink_progress tells whether the earlier attempt landed.
	attempted bool
	// onSkip counts records skipped as already inserted; skipped counts
	// them since the last flush, for the log.
	onSkip  func()
	skipped int
}

// flowPartition is what one input partition has buffered: its rows
// decoded straight into insert columns.
type flowPartition struct {
	cols columns
	next int64                 // offset after the last record read
	open map[uint16]*openGroup // by source partition: sources with chunks still to come
}

// openGroup is a source whose chunks have not all arrived.
type openGroup struct {
	offset    int64  // source offset
	recOffset int64  // input offset of its first chunk: where to resume
	start     int    // index of its first row in cols
	next      uint16 // next chunk expected
	chunks    uint16
}

func newFlowWriter(name string, modern bool, onSkip func()) *flowWriter {
	return &flowWriter{name: name, modern: modern, onSkip: onSkip}
}

func (w *flowWriter) topic() string { return w.name }
func (w *flowWriter) table() string { return "flows" }
func (w *flowWriter) rows() int     { return w.n }

func (w *flowWriter) partition(p int32, offset int64) *flowPartition {
	if w.parts == nil {
		w.parts = map[int32]*flowPartition{}
	}
	pr := w.parts[p]
	if pr == nil {
		pr = &flowPartition{}
		if n := len(w.spare); n > 0 {
			pr.cols, w.spare = w.spare[n-1], w.spare[:n-1]
		}
		pr.cols.modern = w.modern
		w.parts[p] = pr
	}
	pr.next = offset + 1
	return pr
}

func mark(m *map[int32]map[uint16]int64, p int32) map[uint16]int64 {
	if *m == nil {
		*m = map[int32]map[uint16]int64{}
	}
	if (*m)[p] == nil {
		(*m)[p] = map[uint16]int64{}
	}
	return (*m)[p]
}

func (w *flowWriter) add(rec *kgo.Record) (int, error) {
	pr := w.partition(rec.Partition, rec.Offset)
	src, ok, err := kafka.RecordSource(rec)
	if err != nil {
		return 0, err
	}
	if ok && src.Partition >= noSource {
		return 0, fmt.Errorf("%w: source partition %d out of range", schemas.ErrMalformed, src.Partition)
	}
	if !ok {
		src = kafka.Source{Partition: noSource, Offset: rec.Offset, Chunks: 1}
	}
	sp := uint16(src.Partition)
	accepted := mark(&w.accepted, rec.Partition)
	g := pr.open[sp]
	switch {
	case g != nil && g.offset == src.Offset && src.Chunk == 0:
		// The source is being produced again from its first chunk:
		// what came of it before is dropped and replaced.
		w.removeGroup(pr, sp, g)
		g = nil
	case g != nil && g.offset == src.Offset && src.Chunk < g.next:
		w.skip()
		return 0, nil
	case g != nil && g.offset == src.Offset:
		// The next chunk (or a later one, if one went missing).
	default:
		if cur, seen := accepted[sp]; seen && src.Offset <= cur {
			w.skip()
			return 0, nil
		}
		// A new source. An unfinished one before it will not get its
		// other chunks any more: what came of it is kept.
		if g != nil {
			delete(pr.open, sp)
		}
		g = nil
	}
	if err := w.dec.Unmarshal(rec.Value, &w.scratch); err != nil {
		return 0, err
	}
	switch {
	case g == nil && src.Chunk+1 < src.Chunks:
		if pr.open == nil {
			pr.open = map[uint16]*openGroup{}
		}
		pr.open[sp] = &openGroup{offset: src.Offset, recOffset: rec.Offset, start: pr.cols.len(), next: src.Chunk + 1, chunks: src.Chunks}
	case g != nil:
		g.next = src.Chunk + 1
		if g.next >= g.chunks {
			delete(pr.open, sp)
		}
	}
	if cur, seen := accepted[sp]; !seen || src.Offset > cur {
		accepted[sp] = src.Offset
	}
	b := &w.scratch
	for i := range b.Flows {
		pr.cols.add(b, &b.Flows[i], uint16(rec.Partition), sp, src.Offset)
	}
	w.n += len(b.Flows)
	return len(b.Flows), nil
}

func (w *flowWriter) skip() {
	w.skipped++
	w.onSkip()
}

// removeGroup drops the rows of an unfinished source.
func (w *flowWriter) removeGroup(pr *flowPartition, sp uint16, g *openGroup) {
	c := &pr.cols
	before := c.len()
	c.filter(g.start, func(i int) bool { return c.srcPart[i] != sp || c.srcOff[i] != g.offset })
	w.n -= before - c.len()
	delete(pr.open, sp)
	for osp, og := range pr.open {
		og.start = c.len()
		for i := range c.srcPart {
			if c.srcPart[i] == osp && c.srcOff[i] == og.offset {
				og.start = i
				break
			}
		}
	}
}

// hold returns the index of the first row held back (len(rows) when
// none is) and the offset to resume from after the rows before it.
func (pr *flowPartition) hold() (int, int64) {
	h, off := pr.cols.len(), pr.next
	for _, g := range pr.open {
		if g.start < h || (g.start == h && g.recOffset < off) {
			h, off = g.start, g.recOffset
		}
	}
	return h, off
}

func (w *flowWriter) ready() int {
	n := 0
	for _, pr := range w.parts {
		h, _ := pr.hold()
		n += h
	}
	return n
}

func (w *flowWriter) offsets() map[int32]int64 {
	out := make(map[int32]int64, len(w.parts))
	for p, pr := range w.parts {
		_, off := pr.hold()
		out[p] = off
	}
	return out
}

// clear forgets the ready rows, which are in ClickHouse now.
func (w *flowWriter) clear() {
	w.attempted = false
	for p, pr := range w.parts {
		h, _ := pr.hold()
		inserted := mark(&w.inserted, p)
		c := &pr.cols
		for i := range c.srcPart[:h] {
			if cur, seen := inserted[c.srcPart[i]]; !seen || c.srcOff[i] > cur {
				inserted[c.srcPart[i]] = c.srcOff[i]
			}
		}
		if len(pr.open) == 0 {
			w.n -= c.len()
			w.forget(p)
			continue
		}
		w.n -= h
		c.dropFront(h)
		for _, g := range pr.open {
			g.start -= h
		}
	}
}

// forget removes partition p's buffer, keeping its columns for reuse.
func (w *flowWriter) forget(p int32) {
	if pr := w.parts[p]; pr != nil {
		pr.cols.truncate(0)
		w.spare = append(w.spare, pr.cols)
		delete(w.parts, p)
	}
}

// drop forgets partitions taken away: their buffered rows, and what was
// accepted beyond what ClickHouse has.
func (w *flowWriter) drop(partitions []int32) int {
	dropped := 0
	for _, p := range partitions {
		if pr := w.parts[p]; pr != nil {
			dropped += pr.cols.len()
			w.forget(p)
		}
		delete(w.accepted, p)
		delete(w.inserted, p)
	}
	w.n -= dropped
	w.attempted = false
	return dropped
}

// setProgress starts partition p from what ClickHouse has.
func (w *flowWriter) setProgress(p int32, progress map[uint16]int64) {
	delete(w.inserted, p)
	delete(w.accepted, p)
	inserted, accepted := mark(&w.inserted, p), mark(&w.accepted, p)
	for sp, off := range progress {
		inserted[sp], accepted[sp] = off, off
	}
}

// readyRange returns, per input and source partition, the lowest and
// highest source offset among the ready rows.
func (w *flowWriter) readyRange() map[[2]uint16][2]int64 {
	out := map[[2]uint16][2]int64{}
	for _, pr := range w.parts {
		h, _ := pr.hold()
		c := &pr.cols
		for i := range c.srcPart[:h] {
			k, off := [2]uint16{c.kafkaPart[i], c.srcPart[i]}, c.srcOff[i]
			cur, ok := out[k]
			if !ok {
				cur = [2]int64{off, off}
			}
			cur[0], cur[1] = min(cur[0], off), max(cur[1], off)
			out[k] = cur
		}
	}
	return out
}

// token names the ready rows' sources: the same sources make the same
// token, so a modern server drops a retried INSERT it already has.
func dedupToken(ranges map[[2]uint16][2]int64) string {
	keys := make([][2]uint16, 0, len(ranges))
	for k := range ranges {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]uint16) int {
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		return int(a[1]) - int(b[1])
	})
	var b strings.Builder
	b.WriteString("flowaudit-sink")
	for _, k := range keys {
		r := ranges[k]
		b.WriteString(" " + strconv.Itoa(int(k[0])) + "/" + strconv.Itoa(int(k[1])) + ":" +
			strconv.FormatInt(r[0], 10) + "-" + strconv.FormatInt(r[1], 10))
	}
	return b.String()
}

func (w *flowWriter) insert(ctx context.Context, conn driver.Conn, database string) error {
	ranges := w.readyRange()
	if w.attempted {
		// The previous attempt failed, perhaps after the server took
		// the rows: ask it before sending them again.
		if err := waitRunningInserts(ctx, conn, database); err != nil {
			return err
		}
		progress, err := readProgress(ctx, conn, database)
		if err != nil {
			return err
		}
		landed := true
		for k, r := range ranges {
			if off, ok := progress[int32(k[0])][k[1]]; !ok || off < r[1] {
				landed = false
				break
			}
		}
		if landed {
			return nil
		}
	}
	if w.modern {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplication_token": dedupToken(ranges)}))
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+schemas.QuoteIdent(database)+".flows ("+strings.Join(flowColumns, ", ")+")")
	if err != nil {
		return fmt.Errorf("prepare insert into flows: %w", err)
	}
	defer batch.Abort()
	// Each partition's ready rows go straight from its columns into the
	// batch's.
	n := 0
	for _, pr := range w.parts {
		if h, _ := pr.hold(); h > 0 {
			if err := pr.cols.appendTo(batch, h); err != nil {
				return err
			}
			n += h
		}
	}
	w.attempted = true
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send %d rows to flows: %w", n, err)
	}
	return nil
}

// waitRunningInserts waits until the INSERTs into flows the server is
// running now have finished. An INSERT whose sender died after sending
// its rows still completes on the server, a moment later: its rows (and
// their sink_progress) must be in before a restarted sink reads what
// ClickHouse has, or the sink would insert them again.
func waitRunningInserts(ctx context.Context, conn driver.Conn, database string) error {
	prefix := "INSERT INTO " + schemas.QuoteIdent(database) + ".flows"
	running := func() (map[string]bool, error) {
		rows, err := conn.Query(ctx, "SELECT query_id FROM system.processes WHERE position(query, ?) = 1", prefix)
		if err != nil {
			return nil, fmt.Errorf("read system.processes: %w", err)
		}
		defer rows.Close()
		ids := map[string]bool{}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return nil, fmt.Errorf("read system.processes: %w", err)
			}
			ids[id] = true
		}
		return ids, rows.Err()
	}
	waitFor, err := running()
	if err != nil {
		return err
	}
	for len(waitFor) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d INSERTs into flows still running: %w", len(waitFor), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		now, err := running()
		if err != nil {
			return err
		}
		for id := range waitFor {
			if !now[id] {
				delete(waitFor, id)
			}
		}
	}
	return nil
}

// readProgress reads sink_progress: per input partition and source
// partition, the highest source offset in flows.
func readProgress(ctx context.Context, conn driver.Conn, database string) (map[int32]map[uint16]int64, error) {
	rows, err := conn.Query(ctx, "SELECT kafka_partition, source_partition, maxMerge(source_offset) FROM "+
		schemas.QualifiedName(database, schemas.SinkProgressTable.Name)+" GROUP BY kafka_partition, source_partition")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", schemas.SinkProgressTable.Name, err)
	}
	defer rows.Close()
	out := map[int32]map[uint16]int64{}
	for rows.Next() {
		var p, sp uint16
		var off int64
		if err := rows.Scan(&p, &sp, &off); err != nil {
			return nil, fmt.Errorf("read %s: %w", schemas.SinkProgressTable.Name, err)
		}
		if out[int32(p)] == nil {
			out[int32(p)] = map[uint16]int64{}
		}
		out[int32(p)][sp] = off
	}
	return out, rows.Err()
}
