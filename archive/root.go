package archive

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/schema"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flowaudit/flowaudit/internal/backoff"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/schemas"
)

// Table directory names (the Hive partition key table=).
const (
	TableFlows  = "flows"
	TableAccess = "access_events"
)

// Component consumes the enriched flows and access topics in
// archive.consumer_group and writes them under archive.dir.
type Component struct {
	cfg                     Configuration
	kcfg                    kafka.Configuration
	log                     *slog.Logger
	flowsTopic, accessTopic string

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	fatal  chan error
	crash  atomic.Bool // tests: stop like a killed process

	mu        sync.Mutex
	free      map[*schema.Schema][][]colBuf // the column buffers of closed files, for the next
	client    *kgo.Client
	parts     map[topicPartition]*partState
	committed map[topicPartition]int64
	scratch   schemas.FlowBatch
	dec       schemas.FlowDecoder
	views     views
	files     atomic.Int64
	bad       atomic.Int64
	dups      atomic.Int64
}

type topicPartition struct {
	topic string
	part  int32
}

type partState struct {
	open *openFile
	next int64 // offset after the last record read
	// sources is, per source partition, the last flows-topic record this
	// partition's rows were taken from (flows only).
	sources map[uint16]sourceMark
	// rewound, after a failed file, skips records until expect (the
	// file's first offset) is fetched again; attempts counts the failures
	// in a row, for the backoff.
	rewound  bool
	expect   int64
	attempts int
}

// sourceMark is the last source record taken from one source partition
// and the next chunk of it expected. As in the ClickHouse sink, the
// sources of one input partition and source partition arrive in offset
// order, so a record of an older source, or of a chunk already taken, is
// one the enrich stage produced again (it died before committing its
// input): skipped, so the archive holds every flow once, as ClickHouse
// does.
type sourceMark struct {
	Partition uint16 `json:"p"`
	Offset    int64  `json:"o"`
	Next      uint16 `json:"n"`
}

// sourcesKey is the Parquet key-value metadata of a flows file holding,
// as JSON, its partition's sourceMarks after its last record: a
// restarted archive resumes them from its last committed file.
const sourcesKey = "flowaudit.sources"

// rowGroupRows is the rows held in Arrow builders before they are
// written to the open file as one Parquet row group: what bounds the
// archive's memory per partition, whatever archive.max_rows is.
const rowGroupRows = 64 << 10

// openFile is one partition's current file: written row group by row
// group into a hidden temporary file, renamed into place when closed.
type openFile struct {
	table string
	hour  int64 // Unix hours, UTC
	first int64 // offset of its first record: the file's name
	rows  int
	// sources is the JSON of the partition's sourceMarks once the file
	// is closed to new rows (flows only); startSources are the marks
	// before its first record, restored when it is read again.
	sources      string
	startSources map[uint16]sourceMark
	schema       *schema.Schema
	cols         []colBuf // the row group being filled
	pending      int      // rows in cols

	path, tmp string
	out       *os.File
	buf       *bufio.Writer // over out: a write call per fileBuffer bytes, not per page
	fw        *file.Writer
	err       error // a failed write: the file is dropped and read again from Kafka
}

func (f *openFile) release() {
	f.cols = nil
	if f.out != nil {
		f.out.Close()
		os.Remove(f.tmp)
		f.out = nil
	}
}

// New returns the archive over cfg (cfg.Dir must be set), reading the
// enriched flows topic and the access topic of kcfg.
func New(logger *slog.Logger, cfg Configuration, kcfg kafka.Configuration) (*Component, error) {
	if cfg.Dir == "" {
		return nil, errors.New("archive.dir: empty (the archive is disabled)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("archive.dir: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Component{
		cfg: cfg, kcfg: kcfg, log: logger.With("component", "archive"),
		flowsTopic: kcfg.Topic(kafka.TopicEnriched), accessTopic: kcfg.Topic(kafka.TopicAccess),
		ctx: ctx, cancel: cancel, done: make(chan struct{}), fatal: make(chan error, 1),
		parts: map[topicPartition]*partState{}, committed: map[topicPartition]int64{},
		free: map[*schema.Schema][][]colBuf{},
	}, nil
}

// Start joins the consumer group and starts writing.
func (c *Component) Start() error {
	opts := append(kafka.ClientOptions(c.kcfg, "archive"),
		kgo.ConsumeTopics(c.flowsTopic, c.accessTopic),
		kgo.ConsumerGroup(c.cfg.ConsumerGroup),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
	)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("archive: Kafka consumer: %w", err)
	}
	c.client = client
	go c.run()
	go c.retentionLoop()
	c.log.Info("archive writing", "dir", c.cfg.Dir, "group", c.cfg.ConsumerGroup, "retention", c.cfg.Retention)
	return nil
}

// Done reports a fatal error.
func (c *Component) Done() <-chan error { return c.fatal }

// Stop writes the open files, commits their offsets and leaves the group.
func (c *Component) Stop() error {
	c.cancel()
	<-c.done
	return nil
}

// Files is the number of files written since the start.
func (c *Component) Files() int64 { return c.files.Load() }

func (c *Component) run() {
	defer close(c.done)
	for c.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(c.ctx, time.Second)
		fetches := c.client.PollRecords(ctx, 20_000)
		cancel()
		if fetches.IsClientClosed() {
			return
		}
		c.mu.Lock()
		dups := c.dups.Load()
		fetches.EachRecord(c.add)
		if n := c.dups.Load() - dups; n > 0 {
			// Rare (after an enrich crash), so logged each time.
			c.log.Info("skipped enriched records whose source is archived already (the enrich stage produced them again after a crash)",
				"records", n, "since_start", c.dups.Load())
		}
		c.commit(c.ctx)
		c.mu.Unlock()
		c.client.AllowRebalance()
	}
	if c.crash.Load() {
		c.client.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.mu.Lock()
	for key, st := range c.parts {
		c.finish(ctx, key, st, false)
	}
	c.commit(ctx)
	c.mu.Unlock()
	c.client.AllowRebalance()
	c.client.Close()
}

// add puts rec's rows into its partition's open file, first writing that
// file when rec belongs to another hour or the file is full.
func (c *Component) add(rec *kgo.Record) {
	if c.ctx.Err() != nil {
		return // stopping: the rest is read again at the next start
	}
	key := topicPartition{rec.Topic, rec.Partition}
	st := c.parts[key]
	if st == nil {
		st = &partState{next: rec.Offset}
		if rec.Topic == c.flowsTopic {
			st.sources = c.resumeSources(rec.Partition, rec.Offset)
		}
		c.parts[key] = st
	}
	if st.rewound {
		if rec.Offset != st.expect {
			return // fetched before the rewind
		}
		st.rewound = false
	}
	switch rec.Topic {
	case c.flowsTopic:
		src, ok, err := kafka.RecordSource(rec)
		if err != nil || !ok || src.Partition >= 0xFFFF {
			src = kafka.Source{Partition: 0xFFFF, Offset: rec.Offset, Chunks: 1}
		}
		sp := uint16(src.Partition)
		if m, seen := st.sources[sp]; seen && (src.Offset < m.Offset || src.Offset == m.Offset && src.Chunk < m.Next) {
			c.dups.Add(1)
			st.next = rec.Offset + 1
			return
		}
		if err := c.dec.Unmarshal(rec.Value, &c.scratch); err != nil {
			c.skipBad(rec, err)
			st.next = rec.Offset + 1
			return
		}
		if len(c.scratch.Flows) == 0 {
			st.sources[sp] = sourceMark{sp, src.Offset, src.Chunk + 1}
			st.next = rec.Offset + 1
			return
		}
		f := c.open(key, st, TableFlows, int64(c.scratch.TimeReceived/uint64(time.Hour)), rec.Offset, flowParquet)
		if f == nil {
			return
		}
		// After open: the file open wrote (if any) records the marks
		// before this record.
		st.sources[sp] = sourceMark{sp, src.Offset, src.Chunk + 1}
		r := flowRow{b: &c.scratch, part: rec.Partition, offset: rec.Offset, srcPart: uint16(src.Partition), srcOff: src.Offset}
		for i := range c.scratch.Flows {
			r.f = &c.scratch.Flows[i]
			for j, col := range flowColumns {
				col.put(&f.cols[j], &r)
			}
		}
		f.rows += len(c.scratch.Flows)
		f.pending += len(c.scratch.Flows)
		c.flushGroup(key.part, f, false)
	case c.accessTopic:
		var ev schemas.AccessEvent
		if err := schemas.UnmarshalAccessEvent(rec.Value, &ev); err != nil {
			c.skipBad(rec, err)
			st.next = rec.Offset + 1
			return
		}
		if ev.Time == 0 {
			ev.Time = ev.Received
		}
		f := c.open(key, st, TableAccess, int64(ev.Received/uint64(time.Hour)), rec.Offset, accessParquet)
		if f == nil {
			return
		}
		r := accessRow{e: &ev, part: rec.Partition, offset: rec.Offset}
		for j, col := range accessColumns {
			col.put(&f.cols[j], &r)
		}
		f.rows++
		f.pending++
		c.flushGroup(key.part, f, false)
	}
	st.next = rec.Offset + 1
}

func (c *Component) skipBad(rec *kgo.Record, err error) {
	if c.bad.Add(1) <= 10 {
		c.log.Warn("undecodable record skipped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
	}
}

// open returns the partition's open file for hour, writing the current
// one first when it is for another hour or full; nil when that write was
// given up because the archive is stopping.
func (c *Component) open(key topicPartition, st *partState, table string, hour, offset int64, ps *schema.Schema) *openFile {
	if f := st.open; f != nil && (f.hour != hour || f.rows >= c.cfg.MaxRows || f.err != nil) {
		if !c.finish(c.ctx, key, st, true) {
			return nil
		}
	}
	if st.open == nil {
		f := &openFile{table: table, hour: hour, first: offset, schema: ps, cols: c.buffers(ps)}
		if table == TableFlows {
			f.startSources = maps.Clone(st.sources)
		}
		st.open = f
	}
	return st.open
}

// flushGroup writes the rows held in f's builders as one row group once
// there are rowGroupRows of them (any number with all), creating the
// temporary file first. A failure is kept in f.err: the file is then
// written again from Kafka (finish).
func (c *Component) flushGroup(part int32, f *openFile, all bool) {
	if f.pending == 0 || !all && f.pending < rowGroupRows {
		return
	}
	defer func() {
		f.pending = 0
		for i := range f.cols {
			f.cols[i].reset()
		}
	}()
	if f.err != nil {
		return // the file is written again anyway
	}
	if f.fw == nil {
		if f.err = c.create(part, f); f.err != nil {
			return
		}
	}
	f.err = writeGroup(f.fw, f.cols, &c.views)
}

// buffers returns column buffers for a file of schema ps: a closed
// file's, sized by its row groups already, or new ones.
func (c *Component) buffers(ps *schema.Schema) []colBuf {
	if free := c.free[ps]; len(free) > 0 {
		cols := free[len(free)-1]
		c.free[ps] = free[:len(free)-1]
		return cols
	}
	return make([]colBuf, ps.NumColumns())
}

// recycle keeps f's column buffers for the next file of its schema.
func (c *Component) recycle(f *openFile) {
	if f.cols == nil {
		return
	}
	for i := range f.cols {
		f.cols[i].reset()
	}
	c.free[f.schema] = append(c.free[f.schema], f.cols)
	f.cols = nil
}

// create opens f's temporary file (hidden, beside its final name) and
// its Parquet writer.
func (c *Component) create(part int32, f *openFile) error {
	f.path = Path(c.cfg.Dir, f.table, f.hour, part, f.first)
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f.tmp = filepath.Join(dir, "."+filepath.Base(f.path)+".tmp")
	out, err := os.Create(f.tmp)
	if err != nil {
		return err
	}
	f.buf = bufio.NewWriterSize(out, fileBuffer)
	fw, err := newParquetWriter(f.buf, f.schema)
	if err != nil {
		out.Close()
		os.Remove(f.tmp)
		return err
	}
	f.out, f.fw = out, fw
	return nil
}

// finish closes the partition's open file: its last row group, the
// footer, fsync, rename into place, directory fsync. When that (or an
// earlier row group) failed the file is dropped and, with rewind, read
// again from Kafka from its first record after a backoff (the archive's
// input waits in Kafka meanwhile; nothing is committed past the file);
// without rewind (stopping, revoked) its records stay uncommitted, read
// again at the next start or by the next owner. It reports whether the
// file was written.
func (c *Component) finish(ctx context.Context, key topicPartition, st *partState, rewind bool) bool {
	f := st.open
	if f == nil {
		return true
	}
	if f.table == TableFlows && f.sources == "" {
		f.sources = encodeSources(st.sources)
	}
	err := c.close(key.part, f)
	c.recycle(f)
	f.release()
	st.open = nil
	if err == nil {
		c.files.Add(1)
		st.attempts = 0
		return true
	}
	st.attempts++
	c.log.Error("writing archive file failed; retrying (offsets stay uncommitted)", "table", f.table, "partition", key.part,
		"first_offset", f.first, "attempt", st.attempts, "err", err)
	st.next = f.first
	if f.table == TableFlows {
		st.sources = f.startSources
	}
	if !rewind {
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(backoff.Delay(100*time.Millisecond, 5*time.Second, st.attempts, false)):
	}
	// Read the file's records again. Records already fetched past it are
	// skipped until its first one comes back.
	c.client.SetOffsets(map[string]map[int32]kgo.EpochOffset{key.topic: {key.part: {Epoch: -1, Offset: f.first}}})
	st.rewound, st.expect = true, f.first
	return false
}

// Path returns the file of table's rows of hour (Unix hours) starting at
// offset of input partition part.
func Path(dir, table string, hour int64, part int32, offset int64) string {
	t := time.Unix(hour*3600, 0).UTC()
	return filepath.Join(dir, "table="+table, "date="+t.Format("2006-01-02"), "hour="+t.Format("15"),
		fmt.Sprintf("part-p%d-%d.parquet", part, offset))
}

// fileBuffer is the bytes an archive file gathers before writing them.
const fileBuffer = 1 << 20

// close writes f's last rows and footer, fsyncs it, renames it into
// place and fsyncs its directory.
func (c *Component) close(part int32, f *openFile) error {
	c.flushGroup(part, f, true)
	if f.err == nil && f.fw == nil {
		f.err = c.create(part, f)
	}
	if f.err != nil {
		return f.err
	}
	err := error(nil)
	if f.sources != "" {
		err = f.fw.AppendKeyValueMetadata(sourcesKey, f.sources)
	}
	if cerr := f.fw.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.buf.Flush()
	}
	if err == nil {
		err = f.out.Sync()
	}
	if cerr := f.out.Close(); err == nil {
		err = cerr
	}
	f.out = nil
	if err == nil {
		err = os.Rename(f.tmp, f.path)
	}
	if err != nil {
		os.Remove(f.tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(f.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// commit commits, per partition, the offset of the first record not yet
// in a written file.
func (c *Component) commit(ctx context.Context) {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for key, st := range c.parts {
		off := st.next
		if st.open != nil {
			off = st.open.first
		}
		if off <= c.committed[key] {
			continue
		}
		if offsets[key.topic] == nil {
			offsets[key.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[key.topic][key.part] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	if len(offsets) == 0 {
		return
	}
	var commitErr error
	c.client.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		commitErr = err
		if err != nil {
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode == 0 {
					c.committed[topicPartition{t.Topic, p.Partition}] = offsets[t.Topic][p.Partition].Offset
				}
			}
		}
	})
	if commitErr != nil && ctx.Err() == nil {
		c.log.Warn("archive offset commit failed (files are written; retried)", "err", commitErr)
	}
}

func (c *Component) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if c.crash.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, parts := range revoked {
		for _, p := range parts {
			key := topicPartition{topic, p}
			if st := c.parts[key]; st != nil {
				c.finish(ctx, key, st, false)
			}
		}
	}
	c.commit(ctx)
	for topic, parts := range revoked {
		for _, p := range parts {
			delete(c.parts, topicPartition{topic, p})
			delete(c.committed, topicPartition{topic, p})
		}
	}
}

func (c *Component) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, parts := range lost {
		for _, p := range parts {
			key := topicPartition{topic, p}
			if st := c.parts[key]; st != nil && st.open != nil {
				st.open.release()
			}
			delete(c.parts, key)
			delete(c.committed, key)
		}
	}
}

func encodeSources(m map[uint16]sourceMark) string {
	marks := make([]sourceMark, 0, len(m))
	for _, v := range m {
		marks = append(marks, v)
	}
	sort.Slice(marks, func(i, j int) bool { return marks[i].Partition < marks[j].Partition })
	b, _ := json.Marshal(marks) // plain structs: cannot fail
	return string(b)
}

// resumeSources returns the sourceMarks of flows partition part as its
// last file before offset (where reading resumes: every file before it is
// committed) recorded them; none when there is no such file.
func (c *Component) resumeSources(part int32, offset int64) map[uint16]sourceMark {
	out := map[uint16]sourceMark{}
	paths, err := filepath.Glob(filepath.Join(c.cfg.Dir, "table="+TableFlows, "date=*", "hour=*", fmt.Sprintf("part-p%d-*.parquet", part)))
	if err != nil {
		return out
	}
	last, lastOff := "", int64(-1)
	prefix := fmt.Sprintf("part-p%d-", part)
	for _, p := range paths {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), prefix), ".parquet"), 10, 64)
		if err == nil && n < offset && n > lastOff {
			last, lastOff = p, n
		}
	}
	if last == "" {
		return out
	}
	rdr, err := file.OpenParquetFile(last, false)
	if err != nil {
		c.log.Warn("cannot read the last archive file of a partition: sources the enrich stage produced again may be archived twice", "file", last, "err", err)
		return out
	}
	defer rdr.Close()
	v := rdr.MetaData().KeyValueMetadata().FindValue(sourcesKey)
	if v == nil {
		return out // written before the marks were recorded
	}
	var marks []sourceMark
	if err := json.Unmarshal([]byte(*v), &marks); err != nil {
		c.log.Warn("malformed source marks in an archive file", "file", last, "err", err)
		return out
	}
	for _, m := range marks {
		out[m.Partition] = m
	}
	return out
}

// Duplicates is the number of enriched records skipped since the start
// because their source was archived already.
func (c *Component) Duplicates() int64 { return c.dups.Load() }
