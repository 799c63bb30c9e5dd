package access

import (
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
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         c.tlsCfg,
		ErrorLog:          slog.NewLogLogger(c.r.Logger.With("component", "ingest.access").Handler(), slog.LevelWarn),
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(c.cfg.HTTPMaxBody)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			c.reply(w, http.StatusRequestEntityTooLarge, IntakeResponse{Error: fmt.Sprintf("body larger than %d bytes", c.cfg.HTTPMaxBody)})
			return
		}
		c.reply(w, http.StatusBadRequest, IntakeResponse{Error: "reading body: " + err.Error()})
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.HTTPAckTimeout)
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
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if !raw && len(trimmed) > 0 && trimmed[0] == '[' {
		if err := eachArrayElement(trimmed, handle); err != nil {
			lines++
			resp.Rejected++
			if len(resp.Errors) < maxReportedErrors {
				resp.Errors = append(resp.Errors, IntakeError{Line: lines, Reason: "bad_json", Error: err.Error()})
			}
		}
	} else {
		eachLine(body, handle)
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

// eachLine calls fn for every non-blank line of body with its 1-based
// number, without its line end.
func eachLine(body []byte, fn func(n int, line []byte)) {
	n := 0
	for len(body) > 0 {
		n++
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		fn(n, line)
	}
}

// eachArrayElement calls fn for every element of the JSON array in body
// with its 1-based position. It stops at the first syntax error, which it
// returns: what follows cannot be delimited.
func eachArrayElement(body []byte, fn func(n int, elem []byte)) error {
	dec := json.NewDecoder(bytes.NewReader(body))
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
