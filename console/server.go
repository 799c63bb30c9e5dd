// Package console is flowaudit's web console (DESIGN.md, "flowaudit
// console"): read-only pages over the ClickHouse read side, rendered on the
// server with html/template and embedded assets, so it works air-gapped
// and needs no JavaScript toolchain. The segment map is an SVG computed
// here. With console.tokens set every route needs a bearer token (header,
// or the cookie a ?token= login sets).
package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

//go:embed assets
var assets embed.FS

// cookieName holds the token after a ?token= login.
const cookieName = "flowaudit_console"

// Dependencies are what the console reads.
type Dependencies struct {
	Reader *query.Reader
	// PolicyFile is read on every page that needs segments' tags or the
	// rules, so the console follows policy changes; "" = no policy.
	PolicyFile string
	// ReportDir is report.dir: packs under it can be opened from /reports.
	ReportDir string
	Logger    *slog.Logger
	Now       func() time.Time // default time.Now
}

// Server is the console's HTTP server.
type Server struct {
	cfg  Configuration
	deps Dependencies
	tmpl *template.Template
	mux  *http.ServeMux
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// New prepares the console; Start listens.
func New(cfg Configuration, deps Dependencies) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Reader == nil {
		return nil, errors.New("console: no ClickHouse reader")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	t, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	s := &Server{cfg: cfg, deps: deps, tmpl: t, mux: http.NewServeMux(), done: make(chan error, 1)}
	static, _ := fs.Sub(assets, "assets")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/map", http.StatusFound)
	})
	s.mux.HandleFunc("GET /map", s.handleMap)
	s.mux.HandleFunc("GET /api/edges", s.handleAPIEdges)
	s.mux.HandleFunc("GET /flows", s.handleFlows)
	s.mux.HandleFunc("GET /alerts", s.handleAlerts)
	s.mux.HandleFunc("GET /alerts/{id}", s.handleAlert)
	s.mux.HandleFunc("GET /audit", s.handleAudit)
	s.mux.HandleFunc("GET /audit/policy.yaml", s.handleAuditPolicy)
	s.mux.HandleFunc("GET /identities", s.handleIdentities)
	s.mux.HandleFunc("GET /identities.csv", s.handleIdentitiesCSV)
	s.mux.HandleFunc("GET /reports", s.handleReports)
	s.mux.HandleFunc("GET /reports/{id}/{file}", s.handleReportFile)
	return s, nil
}

// Handler is the console with its authentication.
func (s *Server) Handler() http.Handler { return s.auth(s.mux) }

// Addr is the listening address once started.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Start listens on console.listen and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("console.listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
		close(s.done)
	}()
	s.deps.Logger.Info("console listening", "url", "http://"+ln.Addr().String()+"/map", "auth", len(s.cfg.Tokens) > 0)
	return nil
}

// Done reports a serving failure.
func (s *Server) Done() <-chan error { return s.done }

// Stop stops serving, letting requests in flight finish for a few seconds.
func (s *Server) Stop() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// auth requires a configured token on every route: "Authorization: Bearer
// T", or the cookie set by visiting any page with ?token=T (which then
// redirects to the same page without it).
func (s *Server) auth(next http.Handler) http.Handler {
	if len(s.cfg.Tokens) == 0 {
		return secureHeaders(next)
	}
	return secureHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t := r.URL.Query().Get("token"); t != "" && s.validToken(t) {
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: t, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			q := r.URL.Query()
			q.Del("token")
			u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
		if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") && s.validToken(strings.TrimPrefix(h, "Bearer ")) {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(cookieName); err == nil && s.validToken(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="flowaudit console"`)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintln(w, "401: this console needs a token (one of console.tokens): send \"Authorization: Bearer TOKEN\", or open /map?token=TOKEN once to set a cookie.")
	}))
}

func (s *Server) validToken(t string) bool {
	ok := false
	for _, want := range s.cfg.Tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(want)) == 1 {
			ok = true
		}
	}
	return ok
}

// secureHeaders forbids every origin but the console's own: the pages
// load nothing from outside, and a browser enforces it.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// loadPolicy reads the policy file; nil without one.
func (s *Server) loadPolicy() (*policy.Matcher, error) {
	if s.deps.PolicyFile == "" {
		return nil, nil
	}
	p, err := policy.Load(s.deps.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("policy.file: %w", err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("policy.file: %w", err)
	}
	return m, nil
}

// page is what every template gets.
type page struct {
	Title  string
	Active string
	P      params
	Err    string
	Data   any
}

func (s *Server) render(w http.ResponseWriter, name string, pg page) {
	s.renderStatus(w, name, pg, http.StatusOK)
}

func (s *Server) renderStatus(w http.ResponseWriter, name string, pg page, status int) {
	var b strings.Builder
	if err := s.tmpl.ExecuteTemplate(&b, name, pg); err != nil {
		s.deps.Logger.Error("console: rendering", "page", name, "err", err)
		http.Error(w, "rendering failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail renders an error page naming what failed.
func (s *Server) fail(w http.ResponseWriter, pg page, status int, err error) {
	pg.Err = err.Error()
	s.renderStatus(w, "error.html", pg, status)
}
