package access

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/ingest/access/parser"
)

// maxReportedErrors bounds the errors listed in an HTTP response.
const maxReportedErrors = 10

// IntakeResponse is the JSON body of POST /v1/access responses.
type IntakeResponse struct {
	Accepted int           `json:"accepted"` // events the broker acknowledged
	Rejected int           `json:"rejected"` // lines dead-lettered
	Ignored  int           `json:"ignored"`  // valid lines that are no access event
	Errors   []IntakeError `json:"errors,omitempty"`
	Error    string        `json:"error,omitempty"` // why the request as a whole failed
}

// IntakeError describes one rejected line: its 1-based line number (for a
// JSON array, the element's position) and the parser's reason.
type IntakeError struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

func (c *Component) startHTTP() error {
	ln, err := net.Listen("tcp", c.cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("ingest.access.http_listen: cannot listen on %s: %w", c.cfg.HTTPListen, err)
	}
	scheme := "http"
	if c.tlsCfg != nil {
		scheme = "https"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/access", c.serveAccess)
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// A backstop: serveAccess sets tighter deadlines for the body
		// (http_read_timeout, http_read_idle_timeout) once the request
		// has its slot, which it may wait up to http_ack_timeout for.
		ReadTimeout: c.cfg.HTTPReadTimeout + c.cfg.HTTPAckTimeout,
		IdleTimeout: 2 * time.Minute,
		TLSConfig:   c.tlsCfg,
		ErrorLog:    slog.NewLogLogger(c.r.Logger.With("component", "ingest.access").Handler(), slog.LevelWarn),
	}
	c.mu.Lock()
	c.httpLn = ln
	c.httpSrv = srv
	c.mu.Unlock()
	name := scheme + "://" + ln.Addr().String()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var err error
		if c.tlsCfg != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.fail(fmt.Errorf("HTTP intake on %s stopped: %w", name, err))
		}
	}()
	c.r.Logger.Info("access HTTP intake listening", "addr", name, "paths", "POST /v1/access, GET /v1/health", "auth", c.trust.authRequired())
	return nil
}

// stopHTTP stops accepting requests and waits for those in flight, which
// wait for their acknowledgements, until Stop's deadline.
func (c *Component) stopHTTP() error {
	c.mu.Lock()
	srv := c.httpSrv
	c.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(c.stopCtx)
}

func (c *Component) reply(w http.ResponseWriter, code int, resp IntakeResponse) {
	c.metrics.httpRequests.WithLabelValues(strconv.Itoa(code)).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(resp)
}

// authorized checks the bearer token in constant time against every
// configured token (http_tokens and http_token_hosts) and returns the
// one matched; ok without a token when none is configured.
func (c *Component) authorized(r *http.Request) (*httpToken, bool) {
	if !c.trust.authRequired() {
		return nil, true
	}
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, false
	}
	tok := c.trust.token([]byte(strings.TrimSpace(token)))
	return tok, tok != nil
}

// serveAccess is POST /v1/access. Without ?format the body holds events
// in the generic JSON schema, as NDJSON or one JSON array; with
// ?format=sshd|nginx|apache|k8s_audit|gateway|json|syslog it holds raw
// lines of that format. The answer waits for the broker: 200 means every
// accepted event was acknowledged.
func (c *Component) serveAccess(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		c.reply(w, http.StatusMethodNotAllowed, IntakeResponse{Error: "use POST"})
		return
	}
	tok, ok := c.authorized(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="flowaudit"`)
		c.reply(w, http.StatusUnauthorized, IntakeResponse{Error: "missing or invalid bearer token"})
		return
	}
	lf := lineFormat{format: parser.FormatJSON, p: c.generic}
	raw := false
	if fs := r.URL.Query().Get("format"); fs != "" {
		var err error
		if lf, err = c.lineFormatOf(fs); err != nil {
			c.reply(w, http.StatusBadRequest, IntakeResponse{Error: fmt.Sprintf("format: %v (or syslog)", err)})
			return
		}
		raw = true
	}
	if r.ContentLength > int64(c.cfg.HTTPMaxBody) {
		c.reply(w, http.StatusRequestEntityTooLarge, IntakeResponse{Error: fmt.Sprintf("body larger than %d bytes", c.cfg.HTTPMaxBody)})
		return
	}

	// At most http_max_concurrent requests read and parse their body at
	// once; the others wait here with their body unread.
	select {
	case c.httpSlots <- struct{}{}:
	default:
		c.metrics.httpWaiting.Inc()
		wait := time.NewTimer(c.cfg.HTTPAckTimeout)
		select {
		case c.httpSlots <- struct{}{}:
			wait.Stop()
			c.metrics.httpWaiting.Dec()
		case <-wait.C:
			c.metrics.httpWaiting.Dec()
			w.Header().Set("Retry-After", "1")
			c.reply(w, http.StatusServiceUnavailable, IntakeResponse{Error: fmt.Sprintf("busy: %d requests in progress (ingest.access.http_max_concurrent); retry", c.cfg.HTTPMaxConcurrent)})
			return
		case <-r.Context().Done():
			wait.Stop()
			c.metrics.httpWaiting.Dec()
			return
		}
	}
	c.metrics.httpInFlight.Inc()
	slot := true
	release := func() {
		if slot {
			slot = false
			c.metrics.httpInFlight.Dec()
			<-c.httpSlots
		}
	}
	defer release()

	// Records are produced as the body is decoded; the broker then has
	// http_ack_timeout, from the end of the body, to acknowledge them.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	peer, _ := netip.ParseAddrPort(r.RemoteAddr)
	listener := "http://" + c.HTTPAddr()
	if c.tlsCfg != nil {
		listener = "https://" + c.HTTPAddr()
	}
	o := c.peerOrigin(listener, peer)
	o.token, o.checkClaims = tok, true
	host := o.addr.String()
	var resp IntakeResponse
	acks := &ackGroup{}
	lines := 0
	handle := func(n int, line []byte) {
		lines++
		meta := parser.Meta{Received: time.Now(), Host: host, Location: c.loc}
		res, reason, err := c.handleLine(ctx, o, lf, line, meta, acks)
		switch res {
		case lineIgnored:
			resp.Ignored++
		case lineRejected:
			resp.Rejected++
			if len(resp.Errors) < maxReportedErrors {
				resp.Errors = append(resp.Errors, IntakeError{Line: n, Reason: reason, Error: err.Error()})
			}
		}
	}
	body := &bodyReader{
		r:     http.MaxBytesReader(w, r.Body, int64(c.cfg.HTTPMaxBody)),
		rc:    http.NewResponseController(w),
		idle:  c.cfg.HTTPReadIdleTimeout,
		until: time.Now().Add(c.cfg.HTTPReadTimeout),
	}
	br := bufio.NewReaderSize(body, c.cfg.MaxLineBytes+1)
	if first, ok := firstNonSpace(br); ok && !raw && first == '[' {
		if err := eachArrayElement(br, handle); err != nil && body.err == nil {
			lines++
			resp.Rejected++
			if len(resp.Errors) < maxReportedErrors {
				resp.Errors = append(resp.Errors, IntakeError{Line: lines, Reason: "bad_json", Error: err.Error()})
			}
		}
	} else {
		_ = eachLine(br, handle) // a read error is in body.err
	}
	release()
	ackTimer := time.AfterFunc(c.cfg.HTTPAckTimeout, cancel)
	defer ackTimer.Stop()
	if body.err != nil {
		// The lines before the failure were handled (and are counted
		// in the answer): the sender should resend from there.
		resp.Accepted, _ = acks.wait()
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(body.err, &mbe):
			resp.Error = fmt.Sprintf("body larger than %d bytes (ingest.access.http_max_body): cut after %d lines", c.cfg.HTTPMaxBody, lines)
			c.reply(w, http.StatusRequestEntityTooLarge, resp)
		case errors.As(body.err, &ne) && ne.Timeout():
			resp.Error = fmt.Sprintf("reading body: no data for %s (ingest.access.http_read_idle_timeout) or longer than %s (http_read_timeout): cut after %d lines",
				c.cfg.HTTPReadIdleTimeout, c.cfg.HTTPReadTimeout, lines)
			c.reply(w, http.StatusRequestTimeout, resp)
		default:
			resp.Error = fmt.Sprintf("reading body: %v: cut after %d lines", body.err, lines)
			c.reply(w, http.StatusBadRequest, resp)
		}
		return
	}

	accepted, err := acks.wait()
	resp.Accepted = accepted
	if err != nil {
		resp.Error = "the broker did not acknowledge every event; retry: " + err.Error()
		c.reply(w, http.StatusServiceUnavailable, resp)
		return
	}
	if lines > 0 && resp.Rejected == lines {
		resp.Error = "no line was accepted"
		c.reply(w, http.StatusBadRequest, resp)
		return
	}
	c.reply(w, http.StatusOK, resp)
}

// bodyReader reads a request body under deadlines: each read must
// bring data within idle, and the whole body arrive before until. It
// keeps the first read error other than EOF.
type bodyReader struct {
	r     io.Reader
	rc    *http.ResponseController
	idle  time.Duration
	until time.Time
	err   error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	deadline := time.Now().Add(b.idle)
	if b.until.Before(deadline) {
		deadline = b.until
	}
	_ = b.rc.SetReadDeadline(deadline)
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return n, err
}

// firstNonSpace skips leading white space and returns the next byte,
// unread; false at the end of the body.
func firstNonSpace(br *bufio.Reader) (byte, bool) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return 0, false
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			_, _ = br.Discard(1)
		default:
			return b[0], true
		}
	}
}

// eachLine calls fn for every non-blank line of the body with its
// 1-based number, without its line end, as the lines arrive. A line
// longer than the reader's buffer is passed as its first buffer-full of
// bytes (longer than max_line_bytes, so it is rejected as too_long) and
// the rest of it skipped. The line is valid only during the call. It
// returns the read error that ended the body, nil at its end.
func eachLine(br *bufio.Reader, fn func(n int, line []byte)) error {
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			n++
			fn(n, line)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return eofIsEnd(err)
			}
			continue
		}
		if len(line) > 0 {
			n++
			line = bytes.TrimRight(bytes.TrimSuffix(line, []byte("\n")), "\r")
			if len(bytes.TrimSpace(line)) > 0 {
				fn(n, line)
			}
		}
		if err != nil {
			return eofIsEnd(err)
		}
	}
}

func eofIsEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// eachArrayElement calls fn for every element of the JSON array the body
// holds with its 1-based position, decoding one element at a time. It
// stops at the first syntax or read error, which it returns: what
// follows cannot be delimited.
func eachArrayElement(body io.Reader, fn func(n int, elem []byte)) error {
	dec := json.NewDecoder(body)
	if _, err := dec.Token(); err != nil { // '['
		return err
	}
	n := 0
	for dec.More() {
		n++
		var elem json.RawMessage
		if err := dec.Decode(&elem); err != nil {
			return fmt.Errorf("array element %d: %w", n, err)
		}
		fn(n, elem)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return fmt.Errorf("after array element %d: %w", n, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("unexpected data after the JSON array")
	}
	return nil
}
