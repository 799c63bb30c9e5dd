// Package flow is the flow collector: UDP listeners for NetFlow v5/v9,
// IPFIX and sFlow that decode each datagram into a schemas.FlowBatch and
// produce it to flowaudit.flows.v1, keyed by exporter address.
//
// Each listener runs several readers, each with its own SO_REUSEPORT
// socket, batch and buffers, so the hot path is synchronous per reader and
// shares nothing but the decoder's template cache. Undecodable datagrams
// are counted per reason, logged through a sampler and dead-lettered.
package flow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/flowaudit/flowaudit/ingest/flow/decoder"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/schemas"
)

// Dependencies are what the collector needs from the rest of the process.
type Dependencies struct {
	Kafka   kafka.Configuration
	DataDir string // templates are persisted under DataDir/templates
}

// Component is the flow collector.
type Component struct {
	r       *reporter.Reporter
	cfg     Configuration
	deps    Dependencies
	specs   []ListenerSpec
	metrics *metrics
	series  *exporterSeries
	ready   *reporter.Readiness
	sampler *reporter.Sampler

	decoder *decoder.Decoder
	save    func() error // c.decoder.SaveTemplates; tests wrap it
	seq     *decoder.SequenceTracker
	client  *kgo.Client

	flowsTopic, deadTopic string

	mu        sync.Mutex
	listeners []*listener
	wg        sync.WaitGroup
	stopping  atomic.Bool
	stopCh    chan struct{}
	fatal     chan error
	deadLimit *rate.Limiter // ingest.flows.dead_letter_rate; nil: no bound
	bufPool   sync.Pool
}

type listener struct {
	spec  ListenerSpec
	conns []*net.UDPConn
	port  int
	name  string
}

// New validates the configuration and prepares the collector; Start opens
// the sockets.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Component, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := newMetrics(r.Registry)
	c := &Component{
		r:          r,
		cfg:        cfg,
		deps:       deps,
		metrics:    m,
		ready:      r.Readiness("ingest.flows"),
		sampler:    reporter.NewSampler(10 * time.Second),
		seq:        decoder.NewSequenceTracker(),
		series:     newExporterSeries(m, cfg.MaxExporterSeries, cfg.ExporterSeriesTTL),
		flowsTopic: deps.Kafka.Topic(kafka.TopicFlows),
		deadTopic:  deps.Kafka.Topic(kafka.TopicDeadLetter),
		stopCh:     make(chan struct{}),
		fatal:      make(chan error, 1),
	}
	if cfg.DeadLetterRate > 0 {
		c.deadLimit = rate.NewLimiter(rate.Limit(cfg.DeadLetterRate), cfg.DeadLetterRate)
	}
	for _, l := range cfg.Listen {
		spec, err := ParseListen(l)
		if err != nil {
			return nil, err
		}
		c.specs = append(c.specs, spec)
	}
	var opts []decoder.Option
	if deps.DataDir != "" {
		opts = append(opts, decoder.WithTemplateFile(filepath.Join(deps.DataDir, "templates", "templates.json")))
	}
	opts = append(opts, decoder.WithLogger(r.Logger.With("component", "ingest.flows")), decoder.WithMaxTimeSkew(cfg.MaxTimeSkew),
		decoder.WithTemplateLimits(cfg.MaxTemplatesPerExporter, cfg.MaxTemplates))
	c.decoder = decoder.New(opts...)
	c.save = c.decoder.SaveTemplates
	c.bufPool.New = func() any { b := make([]byte, 0, 4096); return &b }
	return c, nil
}

// Start connects the producer and opens every listener.
func (c *Component) Start() error {
	if c.deps.DataDir != "" {
		// Created here, not in New, so that --check writes nothing.
		dir := filepath.Join(c.deps.DataDir, "templates")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("data_dir: cannot create %s for NetFlow templates: %w", dir, err)
		}
	}
	opts := append(kafka.ClientOptions(c.deps.Kafka, "collector"),
		kgo.DefaultProduceTopic(c.flowsTopic),
		kgo.ProducerLinger(c.cfg.FlushInterval),
		kgo.MaxBufferedBytes(256<<20),
		// Batches stay within the broker's default message.max.bytes
		// (1 MiB): a larger one is refused for good, not retried.
		kgo.ProducerBatchMaxBytes(kafka.MaxBatchBytes),
	)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("unable to create Kafka producer: %w", err)
	}
	c.client = client

	readers := c.cfg.Readers
	if readers == 0 {
		readers = runtime.GOMAXPROCS(0)
	}
	for _, spec := range c.specs {
		l := &listener{spec: spec, name: string(spec.Protocol) + "://" + spec.Addr}
		addr := spec.Addr
		for i := 0; i < readers; i++ {
			conn, rcvbuf, err := listenUDP(addr, c.cfg.ReceiveBuffer)
			if err != nil {
				// l is not in c.listeners yet: close its open readers too.
				for _, open := range l.conns {
					open.Close()
				}
				c.closeListeners()
				client.Close()
				return fmt.Errorf("ingest.flows.listen: cannot listen on %s: %w", l.name, err)
			}
			if i == 0 {
				// With port 0 the kernel picks one; the other readers
				// must join that same port.
				l.port = conn.LocalAddr().(*net.UDPAddr).Port
				host, _, _ := net.SplitHostPort(spec.Addr)
				addr = net.JoinHostPort(host, fmt.Sprint(l.port))
				l.name = string(spec.Protocol) + "://" + addr
				c.metrics.receiveBuffer.WithLabelValues(l.name).Set(float64(rcvbuf))
				if rcvbuf < c.cfg.ReceiveBuffer {
					c.r.Logger.Warn("receive buffer smaller than requested: run as root or raise net.core.rmem_max",
						"listener", l.name, "requested", c.cfg.ReceiveBuffer, "effective", rcvbuf)
				} else {
					c.r.Logger.Info("flow listener open", "listener", l.name, "port", l.port, "readers", readers, "receive_buffer", rcvbuf)
				}
			}
			l.conns = append(l.conns, conn)
		}
		c.mu.Lock()
		c.listeners = append(c.listeners, l)
		c.mu.Unlock()
		for _, conn := range l.conns {
			c.wg.Add(1)
			go c.read(l, conn)
		}
	}
	c.wg.Add(3)
	go c.watchDrops()
	go c.expireSeries()
	go c.persistTemplates()
	c.ready.Ready()
	return nil
}

// Addrs returns the bound address of each listener, in configuration
// order (useful with port 0).
func (c *Component) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.listeners))
	for i, l := range c.listeners {
		out[i] = l.conns[0].LocalAddr().String()
	}
	return out
}

// Done returns a channel that receives an error if the collector can no
// longer work: a listener's socket closed or failing (the process then
// stops, rather than receiving nothing while looking alive).
func (c *Component) Done() <-chan error { return c.fatal }

// readFailureLimit is how long a socket may fail every read before the
// collector gives up on it.
const readFailureLimit = 5 * time.Second

// die reports a fatal error once; later ones are dropped (the first
// names the cause).
func (c *Component) die(err error) {
	c.ready.NotReady(err.Error())
	select {
	case c.fatal <- err:
	default:
	}
}

// Stop closes the sockets, flushes the producer within 10 s and saves the
// templates.
func (c *Component) Stop() error {
	if !c.stopping.CompareAndSwap(false, true) {
		return nil
	}
	close(c.stopCh)
	c.closeListeners()
	c.wg.Wait()
	var errs []error
	if c.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.client.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flushing flows to the broker: %w", err))
		}
		cancel()
		c.client.Close()
	}
	if err := c.saveTemplates(); err != nil {
		errs = append(errs, fmt.Errorf("saving templates: %w", err))
	}
	return errors.Join(errs...)
}

func (c *Component) closeListeners() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.listeners {
		for _, conn := range l.conns {
			conn.Close()
		}
	}
}

func (c *Component) read(l *listener, conn *net.UDPConn) {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	var batch schemas.FlowBatch
	cache := map[schemas.Addr]*exporterCounters{}
	var failingSince time.Time
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if c.stopping.Load() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				// Not closed by Stop: the listener is gone for good.
				c.die(fmt.Errorf("ingest.flows.listen: %s: socket closed: %w", l.name, err))
				return
			}
			// Transient errors (ICMP-induced ECONNREFUSED, ENOBUFS) are
			// retried; a socket failing without a single read for
			// readFailureLimit is dead.
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > readFailureLimit {
				c.die(fmt.Errorf("ingest.flows.listen: %s: reads failing for %s: %w", l.name, readFailureLimit, err))
				return
			}
			if ok, n := c.sampler.Allow("read/" + l.name); ok {
				c.r.Logger.Error("reading flow datagram failed", "listener", l.name, "err", err, "suppressed", n)
			}
			select {
			case <-c.stopCh:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		failingSince = time.Time{}
		c.metrics.datagramsTotal.Inc()
		received := uint64(time.Now().UnixNano())
		exporter := schemas.AddrFromNetip(from.Addr())
		data := buf[:n]
		if l.spec.Protocol == ProtocolSFlow {
			err = c.decoder.DecodeSFlow(exporter, from.Port(), received, data, &batch)
		} else {
			err = c.decoder.DecodeNetFlow(exporter, from.Port(), received, data, &batch)
		}
		ec := c.series.lookup(cache, exporter, err == nil || batch.Records > 0, int64(received/1e9))
		if err != nil {
			c.decodeFailed(l, ec, data, err)
		}
		tc := c.series.typed(ec, batch.Type)
		tc.datagrams.Add(1)
		if len(batch.Flows) == 0 {
			continue
		}
		tc.flows.Add(float64(len(batch.Flows)))
		if batch.ClampedPast > 0 {
			c.series.add(c.metrics.clampedTimes, ec, float64(batch.ClampedPast), "past")
		}
		if batch.ClampedFuture > 0 {
			c.series.add(c.metrics.clampedTimes, ec, float64(batch.ClampedFuture), "future")
		}
		if lostD, lostF := c.seq.Observe(&batch, int(batch.Records)); lostD > 0 || lostF > 0 {
			c.series.add(c.metrics.lostDatagrams, ec, float64(lostD))
			c.series.add(c.metrics.lostFlows, ec, float64(lostF))
		}
		c.produce(&batch)
	}
}

// templateSaveDelay debounces template persistence: a flood of new
// templates costs one file write per delay, not one per datagram.
const templateSaveDelay = time.Second

// persistTemplates is the one writer of the template file: it waits for
// the decoder to report a change, lets further changes gather for
// templateSaveDelay, and saves. Readers never wait for it.
func (c *Component) persistTemplates() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stopCh:
			return // Stop saves once more
		case <-c.decoder.TemplatesChanged():
		}
		select {
		case <-c.stopCh:
			return
		case <-time.After(templateSaveDelay):
		}
		c.saveTemplates()
	}
}

func (c *Component) saveTemplates() error {
	err := c.save()
	c.metrics.templates.Set(float64(c.decoder.TemplateCount()))
	if err != nil {
		c.metrics.templateSaves.WithLabelValues("error").Inc()
		if ok, n := c.sampler.Allow("template-save"); ok {
			c.r.Logger.Error("cannot persist templates", "err", err, "suppressed", n)
		}
		return err
	}
	c.metrics.templateSaves.WithLabelValues("ok").Inc()
	return nil
}

func (c *Component) produce(batch *schemas.FlowBatch) {
	keyCopy := make([]byte, 16)
	copy(keyCopy, batch.Exporter[:])
	bp := c.bufPool.Get().(*[]byte)
	value := schemas.AppendFlowBatch((*bp)[:0], batch)
	*bp = value
	if len(value) <= kafka.MaxRecordBytes {
		c.produceRecord(&kgo.Record{Key: keyCopy, Value: value}, len(batch.Flows), func() { c.bufPool.Put(bp) })
		return
	}
	// Rare (the decoder bounds records per datagram): split below the
	// broker's limit, each chunk in its own buffer.
	c.bufPool.Put(bp)
	schemas.AppendFlowBatchChunks(nil, batch, kafka.MaxRecordBytes, func(chunk []byte, flows []schemas.Flow) {
		c.produceRecord(&kgo.Record{Key: keyCopy, Value: append([]byte(nil), chunk...)}, len(flows), nil)
	})
}

// produceRecord produces one flows record; release is called once the
// broker answered. A record the broker refuses for what it is (too large,
// invalid) is dead-lettered: nothing else would ever accept it.
func (c *Component) produceRecord(rec *kgo.Record, flows int, release func()) {
	c.client.Produce(context.Background(), rec, func(r *kgo.Record, err error) {
		if err == nil {
			c.metrics.producedRecs.Inc()
			c.metrics.producedFlows.Add(float64(flows))
		} else if reason, ok := kafka.RecordFault(err); ok {
			c.metrics.produceErrors.Inc()
			if ok, n := c.sampler.Allow("produce/" + reason); ok {
				c.r.Logger.Error("broker refused a flows record; dead-lettered", "flows", flows, "reason", reason, "err", err, "suppressed", n)
			}
			c.deadLetter("produce to "+c.flowsTopic, reason, err, r.Value)
		} else {
			c.metrics.produceErrors.Inc()
			if ok, n := c.sampler.Allow("produce"); ok {
				c.r.Logger.Error("broker did not accept flows", "flows", flows, "err", err, "suppressed", n)
			}
		}
		if release != nil {
			release()
		}
	})
}

// decodeFailed counts, logs (sampled) and dead-letters an undecodable
// datagram or part of one.
// The log sampler is keyed by the exporter's metric label, so exporters
// without series of their own share one key per reason.
func (c *Component) decodeFailed(l *listener, ec *exporterCounters, data []byte, err error) {
	reason := string(decoder.ReasonMalformed)
	var de *decoder.DecodeError
	exporter := ""
	if errors.As(err, &de) {
		reason = string(de.Reason)
		exporter = de.Exporter.String()
	}
	c.series.add(c.metrics.decodeErrors, ec, 1, reason)
	if ok, n := c.sampler.Allow("decode/" + ec.label + "/" + reason); ok {
		c.r.Logger.Warn("undecodable flow datagram", "listener", l.name, "exporter", exporter, "reason", reason, "err", err, "suppressed", n)
	}
	if c.deadLimit != nil && !c.deadLimit.Allow() {
		c.metrics.deadDropped.WithLabelValues(reason).Inc()
		return
	}
	c.deadLetter(l.name+" from "+exporter, reason, err, data)
}

// deadLetter sends data, cut to dead_letter_max_bytes, with its reason to
// the dead-letter topic.
func (c *Component) deadLetter(source, reason string, err error, data []byte) {
	rec := c.deps.Kafka.DeadLetterRecord("ingest.flows", source, reason, err, data, c.cfg.DeadLetterMaxBytes)
	c.client.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
		if err != nil {
			c.metrics.produceErrors.Inc()
			return
		}
		c.metrics.deadLetters.WithLabelValues(reason).Inc()
	})
}

// expireSeries deletes the metric series of silent exporters.
func (c *Component) expireSeries() {
	defer c.wg.Done()
	if c.cfg.ExporterSeriesTTL == 0 {
		return
	}
	t := time.NewTicker(min(c.cfg.ExporterSeriesTTL/4, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-c.stopCh:
			return
		case now := <-t.C:
			if n := c.series.expire(now.Unix()); n > 0 {
				c.r.Logger.Info("expired metric series of silent exporters", "exporters", n, "silent_for", c.cfg.ExporterSeriesTTL)
			}
		}
	}
}

// watchDrops exports the kernel's per-socket drop counters every 5 s.
func (c *Component) watchDrops() {
	defer c.wg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		c.mu.Lock()
		ls := append([]*listener(nil), c.listeners...)
		c.mu.Unlock()
		for _, l := range ls {
			if d, err := socketDrops(l.port); err == nil {
				c.metrics.socketDrops.WithLabelValues(l.name).Set(float64(d))
			}
		}
		select {
		case <-c.stopCh:
			return
		case <-t.C:
		}
	}
}

// Accepted returns the number of flows the broker has acknowledged.
func (c *Component) Accepted() uint64 {
	return uint64(readCounter(c.metrics.producedFlows))
}
