// Package access is the access-log collector: syslog listeners (UDP, TCP
// and TLS; RFC 3164 and RFC 5424; newline or RFC 6587 octet-counting
// framing), an HTTP intake (POST /v1/access) and file tailers, which
// parse each line with ingest/access/parser into a schemas.AccessEvent
// and produce it to flowaudit.access.v1, keyed by the actor's address.
//
// Lines no parser accepts are counted per format and reason, logged
// through a sampler and dead-lettered; they never stop a listener. Lines
// the parsers recognise as no access event (parser.ErrIgnored) are only
// counted. The HTTP intake answers, and the file tailers save their
// position, only once the broker acknowledged the lines concerned, so a
// 2xx or a saved position means accepted (DESIGN.md, delivery semantics).
// Syslog, like UDP flows, cannot push back: what is in a socket or an
// unflushed producer batch when the process is killed can be lost.
package access

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/ingest/access/parser"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/internal/udpsock"
	"github.com/flowaudit/flowaudit/schemas"
)

// Dependencies are what the collector needs from the rest of the process.
type Dependencies struct {
	Kafka kafka.Configuration
	// DataDir holds the tailers' saved positions under
	// DataDir/access-tail.
	DataDir string
	// Stdin is read by an ingest.access.files entry with path "-"
	// (k8s_pods); nil is os.Stdin.
	Stdin io.Reader
}

// Component is the access-log collector.
type Component struct {
	r       *reporter.Reporter
	cfg     Configuration
	deps    Dependencies
	metrics *metrics
	ready   *reporter.Readiness
	sampler *reporter.Sampler

	loc      *time.Location
	parsers  map[parser.Format]parser.Parser // json with ingest.access.json_mapping
	generic  parser.Parser                   // json with DefaultJSONMapping: the HTTP body schema
	apps     map[string]parser.Format        // syslog_apps
	specs    []syslogSpec
	tlsCfg   *tls.Config
	hostname string
	trust    *trustPolicy

	client *kgo.Client
	// udpClient produces what UDP syslog listeners read: its own buffer,
	// so that HTTP requests, tailers or TCP senders filling the main
	// client's never block a UDP reader (which cannot push back: a
	// blocked reader is kernel drops).
	udpClient              *kgo.Client
	accessTopic, deadTopic string

	mu          sync.Mutex
	syslogAddrs []string
	udpConns    []*net.UDPConn
	tcpLns      []net.Listener
	tcpConns    map[net.Conn]struct{}
	httpSrv     *http.Server
	httpSlots   chan struct{} // http_max_concurrent
	httpLn      net.Listener
	tailers     []*tailer
	// snapshotters follow the files of snapshot formats (snapshot.go).
	snapshotters []*snapshotter

	wg       sync.WaitGroup
	stopping atomic.Bool
	stopCh   chan struct{}
	// stopCtx is cancelled when Stop gives up waiting for the broker.
	stopCtx    context.Context
	stopCancel context.CancelFunc
	fatal      chan error
}

// formats are the parser formats the collector builds a parser for.
var formats = parser.Formats()

// New validates the configuration and prepares the collector; Start opens
// the listeners and files.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Component, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(cfg.Timezone)
	if err != nil {
		return nil, fmt.Errorf("ingest.access.timezone: %w", err)
	}
	c := &Component{
		r:           r,
		cfg:         cfg,
		deps:        deps,
		metrics:     newMetrics(r.Registry),
		ready:       r.Readiness("ingest.access"),
		sampler:     reporter.NewSampler(10 * time.Second),
		loc:         loc,
		parsers:     map[parser.Format]parser.Parser{},
		apps:        map[string]parser.Format{},
		tcpConns:    map[net.Conn]struct{}{},
		httpSlots:   make(chan struct{}, max(cfg.HTTPMaxConcurrent, 1)),
		accessTopic: deps.Kafka.Topic(kafka.TopicAccess),
		deadTopic:   deps.Kafka.Topic(kafka.TopicDeadLetter),
		stopCh:      make(chan struct{}),
		fatal:       make(chan error, 1),
	}
	c.stopCtx, c.stopCancel = context.WithCancel(context.Background())
	mapping, err := jsonMapping(cfg.JSONMapping)
	if err != nil {
		return nil, fmt.Errorf("ingest.access.json_mapping: %w", err)
	}
	for _, f := range formats {
		var opts []parser.Option
		if f == parser.FormatJSON {
			opts = append(opts, parser.WithJSONMapping(mapping))
		}
		p, err := parser.New(f, opts...)
		if err != nil {
			return nil, fmt.Errorf("unable to create the %s parser: %w", f, err)
		}
		c.parsers[f] = p
	}
	if c.generic, err = parser.New(parser.FormatJSON); err != nil {
		return nil, fmt.Errorf("unable to create the generic JSON parser: %w", err)
	}
	for app, name := range cfg.SyslogApps {
		f, _ := parser.ParseFormat(name) // checked by Validate
		c.apps[app] = f
	}
	for _, l := range cfg.SyslogListen {
		spec, _ := parseSyslogListen(l) // checked by Validate
		c.specs = append(c.specs, spec)
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("ingest.access.tls_cert: cannot load %s and %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		c.tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	c.trust = newTrustPolicy(cfg)
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("ingest.access.tls_client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ingest.access.tls_client_ca: %s holds no PEM certificate", cfg.TLSClientCA)
		}
		c.tlsCfg.ClientCAs = pool
		c.tlsCfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	c.hostname, _ = os.Hostname()
	for _, f := range cfg.Files {
		if fm, _ := parser.ParseFormat(f.Format); parser.IsSnapshot(fm) {
			s, err := c.newSnapshotter(f, fm)
			if err != nil {
				return nil, err
			}
			c.snapshotters = append(c.snapshotters, s)
			continue
		}
		t, err := c.newTailer(f)
		if err != nil {
			return nil, err
		}
		c.tailers = append(c.tailers, t)
	}
	return c, nil
}

// Start connects the producer, opens every listener and starts the
// tailers. On error nothing is left open.
func (c *Component) Start() error {
	opts := append(kafka.ClientOptions(c.deps.Kafka, "access"),
		kgo.DefaultProduceTopic(c.accessTopic),
		kgo.MaxBufferedBytes(64<<20),
	)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("unable to create Kafka producer: %w", err)
	}
	c.client = client
	c.udpClient = client
	if c.hasUDP() {
		udpOpts := append(kafka.ClientOptions(c.deps.Kafka, "access-udp"),
			kgo.DefaultProduceTopic(c.accessTopic),
			kgo.MaxBufferedBytes(32<<20),
		)
		if c.udpClient, err = kgo.NewClient(udpOpts...); err != nil {
			client.Close()
			return fmt.Errorf("unable to create Kafka producer: %w", err)
		}
	}
	if err := c.startListeners(); err != nil {
		c.closeListeners()
		c.wg.Wait()
		c.closeClients()
		return err
	}
	for _, t := range c.tailers {
		c.wg.Add(1)
		go t.run()
	}
	for _, s := range c.snapshotters {
		c.wg.Add(1)
		go s.run()
	}
	c.ready.Ready()
	return nil
}

func (c *Component) hasUDP() bool {
	for _, spec := range c.specs {
		if spec.Protocol == syslogUDP {
			return true
		}
	}
	return false
}

func (c *Component) closeClients() {
	if c.udpClient != nil && c.udpClient != c.client {
		c.udpClient.Close()
	}
	if c.client != nil {
		c.client.Close()
	}
	c.client, c.udpClient = nil, nil
}

func (c *Component) startListeners() error {
	for i, spec := range c.specs {
		name := string(spec.Protocol) + "://" + spec.Addr
		var addr string
		switch spec.Protocol {
		case syslogUDP:
			uc, rcvbuf, err := udpsock.Listen(spec.Addr, c.cfg.SyslogReceiveBuffer)
			if err != nil {
				return fmt.Errorf("ingest.access.syslog_listen[%d]: cannot listen on %s: %w", i, name, err)
			}
			c.mu.Lock()
			c.udpConns = append(c.udpConns, uc)
			c.mu.Unlock()
			addr = uc.LocalAddr().String()
			c.metrics.udpDrops.add(name, uc.LocalAddr().(*net.UDPAddr).Port)
			c.metrics.receiveBuffer.WithLabelValues(name).Set(float64(rcvbuf))
			if rcvbuf < c.cfg.SyslogReceiveBuffer {
				c.r.Logger.Warn("syslog UDP receive buffer smaller than asked (without CAP_NET_ADMIN, raise net.core.rmem_max)",
					"listener", name, "asked", c.cfg.SyslogReceiveBuffer, "effective", rcvbuf)
			}
			c.wg.Add(1)
			go c.readUDP(name, uc)
		case syslogTCP, syslogTLS:
			ln, err := net.Listen("tcp", spec.Addr)
			if err != nil {
				return fmt.Errorf("ingest.access.syslog_listen[%d]: cannot listen on %s: %w", i, name, err)
			}
			addr = ln.Addr().String()
			if spec.Protocol == syslogTLS {
				ln = tls.NewListener(ln, c.tlsCfg)
			}
			c.mu.Lock()
			c.tcpLns = append(c.tcpLns, ln)
			c.mu.Unlock()
			c.wg.Add(1)
			go c.acceptTCP(name, ln)
		}
		c.mu.Lock()
		c.syslogAddrs = append(c.syslogAddrs, string(spec.Protocol)+"://"+addr)
		c.mu.Unlock()
		c.r.Logger.Info("syslog listener open", "listener", name, "addr", addr)
	}
	if c.cfg.HTTPListen != "" {
		if err := c.startHTTP(); err != nil {
			return err
		}
	}
	return nil
}

// SyslogAddrs returns the bound address of each syslog listener as
// scheme://host:port, in configuration order (useful with port 0).
func (c *Component) SyslogAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.syslogAddrs...)
}

// HTTPAddr returns the bound host:port of the HTTP intake, or "" when it
// is disabled or not started.
func (c *Component) HTTPAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.httpLn == nil {
		return ""
	}
	return c.httpLn.Addr().String()
}

// Done returns a channel that receives an error if the collector can no
// longer work.
func (c *Component) Done() <-chan error { return c.fatal }

func (c *Component) fail(err error) {
	if c.stopping.Load() {
		return
	}
	select {
	case c.fatal <- err:
	default:
	}
}

// Stop closes the listeners, lets HTTP requests and tailers finish their
// acknowledged batches and flushes the producer, all within 10 s.
func (c *Component) Stop() error {
	if !c.stopping.CompareAndSwap(false, true) {
		return nil
	}
	c.ready.NotReady("stopping")
	close(c.stopCh)
	deadline := time.AfterFunc(10*time.Second, c.stopCancel)
	defer deadline.Stop()
	defer c.stopCancel()
	var errs []error
	if err := c.stopHTTP(); err != nil {
		errs = append(errs, fmt.Errorf("stopping the HTTP intake: %w", err))
	}
	c.closeListeners()
	c.wg.Wait()
	if c.client != nil {
		if err := c.client.Flush(c.stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("flushing access events to the broker: %w", err))
		}
	}
	if c.udpClient != nil && c.udpClient != c.client {
		if err := c.udpClient.Flush(c.stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("flushing UDP syslog events to the broker: %w", err))
		}
	}
	c.closeClients()
	return errors.Join(errs...)
}

func (c *Component) closeListeners() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.udpConns {
		conn.Close()
	}
	for _, ln := range c.tcpLns {
		ln.Close()
	}
	for conn := range c.tcpConns {
		conn.Close()
	}
}

// origin says where a line came from, for the event's provenance,
// metrics, logs and dead letters.
type origin struct {
	listener string     // udp://0.0.0.0:5514, http://127.0.0.1:8080, file:///var/log/auth.log
	peer     string     // remote address; empty for files
	addr     netip.Addr // the peer's address; invalid for files
	// untrusted: the peer is not in trusted_senders.
	untrusted bool
	// token is the HTTP request's bearer token; checkClaims says its
	// claims (http_token_hosts) decide the events' trust.
	token       *httpToken
	checkClaims bool
	// udp: produced through the UDP listeners' own client.
	udp bool
}

// producer returns the client that produces the records of o.
func (c *Component) producer(o origin) *kgo.Client {
	if o.udp {
		return c.udpClient
	}
	return c.client
}

// peerOrigin is the origin of a syslog or HTTP peer.
func (c *Component) peerOrigin(listener string, peer netip.AddrPort) origin {
	a := peer.Addr().Unmap()
	return origin{listener: listener, peer: peer.String(), addr: a, untrusted: !c.trust.senderTrusted(a)}
}

// untrusted decides whether ev, parsed from a line of o, may bind
// identities.
func (c *Component) untrusted(o origin, ev *schemas.AccessEvent) bool {
	if o.untrusted {
		return true
	}
	return o.checkClaims && !c.trust.claimsAllowed(o.token, ev)
}

func (o origin) String() string {
	if o.peer == "" {
		return o.listener
	}
	return o.listener + " from " + o.peer
}

// lineResult is what became of one line.
type lineResult int

const (
	lineAccepted lineResult = iota // parsed and handed to the producer
	lineIgnored                    // valid, but no access event
	lineRejected                   // dead-lettered
)

// intakeError is a rejection decided by the collector, not the parser.
type intakeError struct {
	Reason string
	Err    error
}

func (e *intakeError) Error() string { return e.Err.Error() }
func (e *intakeError) Unwrap() error { return e.Err }

// Rejection reasons of the collector itself (the parser has its own).
const (
	reasonTooLong    = "too_long"
	reasonUnknownApp = "unknown_app"
	reasonParse      = "parse_error" // a parser error without a reason
)

func reasonOf(err error) string {
	var pe *parser.ParseError
	if errors.As(err, &pe) && pe.Reason != "" {
		return string(pe.Reason)
	}
	var ie *intakeError
	if errors.As(err, &ie) {
		return ie.Reason
	}
	return reasonParse
}

// lineFormat is how the lines of one origin are parsed: with p, or as
// syslog messages when p is nil.
type lineFormat struct {
	format parser.Format
	p      parser.Parser
}

var syslogFormat = lineFormat{format: parser.FormatSyslog}

// lineFormatOf returns the lineFormat of a format name of the
// configuration or the HTTP query (json with the configured mapping).
func (c *Component) lineFormatOf(name string) (lineFormat, error) {
	f, err := formatOf(name, true)
	if err != nil {
		return lineFormat{}, err
	}
	if f == parser.FormatSyslog {
		return syslogFormat, nil
	}
	if parser.IsSnapshot(f) {
		return lineFormat{}, fmt.Errorf("format %q is a whole file, accepted only in ingest.access.files", f)
	}
	return lineFormat{format: f, p: c.parsers[f]}, nil
}

// handleLine parses one line and produces its event, or its dead letter.
// Records are produced under ctx and registered with acks when it is not
// nil. It never blocks on a bad line; it blocks on the producer only when
// its buffer is full.
func (c *Component) handleLine(ctx context.Context, o origin, lf lineFormat, line []byte, meta parser.Meta, acks *ackGroup) (lineResult, string, error) {
	var ev schemas.AccessEvent
	format := lf.format
	var err error
	switch {
	case len(line) > c.cfg.MaxLineBytes:
		err = &intakeError{Reason: reasonTooLong, Err: fmt.Errorf("line of %d bytes is longer than ingest.access.max_line_bytes (%d)", len(line), c.cfg.MaxLineBytes)}
		line = line[:c.cfg.MaxLineBytes]
	case lf.p == nil:
		format, err = c.parseSyslog(line, meta, &ev)
	default:
		err = lf.p.Parse(line, meta, &ev)
	}
	c.metrics.lines.WithLabelValues(o.listener, string(format)).Inc()
	switch {
	case err == nil:
		if ev.Received == 0 {
			ev.Received = uint64(meta.Received.UnixNano())
		}
		if ev.Time == 0 {
			ev.Time = ev.Received
		}
		if ev.Source == "" {
			ev.Source = string(format)
		}
		if ev.Host == "" {
			ev.Host = meta.Host
		}
		// Provenance comes from the connection, whatever the line says.
		ev.PeerAddr, ev.Listener = schemas.Addr{}, o.listener
		if o.addr.IsValid() {
			ev.PeerAddr = schemas.AddrFromNetip(o.addr)
		}
		ev.Untrusted = c.untrusted(o, &ev)
		if ev.Untrusted {
			c.metrics.untrusted.WithLabelValues(o.listener).Inc()
		}
		c.metrics.events.WithLabelValues(string(format), ev.Outcome.String()).Inc()
		c.produceEvent(ctx, c.producer(o), &ev, acks)
		return lineAccepted, "", nil
	case errors.Is(err, parser.ErrIgnored):
		c.metrics.ignored.WithLabelValues(string(format)).Inc()
		return lineIgnored, "", nil
	default:
		reason := reasonOf(err)
		c.metrics.rejected.WithLabelValues(string(format), reason).Inc()
		if ok, n := c.sampler.Allow("reject/" + string(format) + "/" + reason); ok {
			c.r.Logger.Warn("access log line rejected", "origin", o.String(), "format", format, "reason", reason, "err", err, "suppressed", n)
		}
		c.deadLetter(ctx, o, reason, err, line, acks)
		return lineRejected, reason, err
	}
}

// parseSyslog parses a syslog message and its payload with the parser of
// its APP-NAME: syslog_apps first, then parser.FormatForApp. A message
// whose app has no format is tried as a web access log (nginx's parser
// takes the combined and common formats, which Apache writes too), since
// web servers logging to syslog often use a site-specific tag; if that
// fails too it is rejected as unknown_app.
func (c *Component) parseSyslog(line []byte, meta parser.Meta, ev *schemas.AccessEvent) (parser.Format, error) {
	var msg parser.SyslogMessage
	if needsPRI(line) {
		// A relay adds the default PRI to a message without one (RFC
		// 3164 section 4.3.3); syslog files are written without it.
		line = append([]byte("<13>"), line...)
	}
	if err := parser.ParseSyslog(line, meta.Received, c.loc, &msg); err != nil {
		return parser.FormatSyslog, err
	}
	if msg.Hostname != "" && msg.Hostname != "-" {
		meta.Host = msg.Hostname
	}
	f, ok := c.apps[msg.AppName]
	if !ok {
		f, ok = parser.FormatForApp(msg.AppName)
	}
	var err error
	if ok {
		err = c.parsers[f].Parse(msg.Message, meta, ev)
	} else {
		f = parser.FormatNginx
		if err = c.parsers[f].Parse(msg.Message, meta, ev); err != nil {
			*ev = schemas.AccessEvent{}
			return parser.FormatSyslog, &intakeError{Reason: reasonUnknownApp, Err: fmt.Errorf("no log format for syslog app %q (set ingest.access.syslog_apps)", msg.AppName)}
		}
	}
	// Lines such as sshd's carry no time of their own: the syslog
	// header's is then the time of the access.
	if err == nil && !msg.Timestamp.IsZero() && (ev.Time == 0 || ev.Time == uint64(meta.Received.UnixNano())) {
		ev.Time = uint64(msg.Timestamp.UnixNano())
	}
	return f, err
}

// needsPRI reports whether line looks like a syslog message without its
// <PRI>: one starting with an RFC 3164 ("Jan  2 03:04:05") or RFC 3339
// ("2024-01-02T03:04:05") timestamp, as syslog daemons write files.
// Anything else without PRI stays a no_match.
func needsPRI(line []byte) bool {
	digit := func(i int) bool { return i < len(line) && line[i] >= '0' && line[i] <= '9' }
	if len(line) < 16 {
		return false
	}
	if digit(0) {
		return digit(1) && digit(2) && digit(3) && line[4] == '-' && digit(5) && digit(6) && line[7] == '-' && line[10] == 'T'
	}
	upper, lower := line[0] >= 'A' && line[0] <= 'Z', func(i int) bool { return line[i] >= 'a' && line[i] <= 'z' }
	return upper && lower(1) && lower(2) && line[3] == ' ' && (line[4] == ' ' || digit(4)) && digit(5) && line[6] == ' ' && line[9] == ':'
}

// ackGroup collects the broker's acknowledgements of the records produced
// for one HTTP request or one tailer batch.
type ackGroup struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	events int // acknowledged access events
	err    error
}

func (g *ackGroup) add() {
	if g != nil {
		g.wg.Add(1)
	}
}

func (g *ackGroup) done(event bool, err error) {
	if g == nil {
		return
	}
	g.mu.Lock()
	if err != nil && g.err == nil {
		g.err = err
	}
	if err == nil && event {
		g.events++
	}
	g.mu.Unlock()
	g.wg.Done()
}

// wait returns the number of acknowledged events and the first error.
func (g *ackGroup) wait() (int, error) {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.events, g.err
}

func (c *Component) produceEvent(ctx context.Context, client *kgo.Client, ev *schemas.AccessEvent, acks *ackGroup) {
	var key []byte
	if ev.SrcAddr != (schemas.Addr{}) {
		key = append(make([]byte, 0, 16), ev.SrcAddr[:]...)
	}
	value := schemas.AppendAccessEvent(make([]byte, 0, 256), ev)
	acks.add()
	client.Produce(ctx, &kgo.Record{Key: key, Value: value}, func(_ *kgo.Record, err error) {
		if err != nil {
			c.metrics.produceErrors.Inc()
			if ok, n := c.sampler.Allow("produce"); ok {
				c.r.Logger.Error("broker did not accept an access event", "err", err, "suppressed", n)
			}
		} else {
			c.metrics.produced.Inc()
		}
		acks.done(true, err)
	})
}

// deadLetter produces a rejected line to the dead-letter topic.
func (c *Component) deadLetter(ctx context.Context, o origin, reason string, err error, payload []byte, acks *ackGroup) {
	acks.add()
	c.producer(o).Produce(ctx, c.deps.Kafka.DeadLetterRecord("ingest.access", o.String(), reason, err, payload, -1), func(_ *kgo.Record, err error) {
		if err != nil {
			c.metrics.produceErrors.Inc()
		} else {
			c.metrics.deadLetters.Inc()
		}
		acks.done(false, err)
	})
}
