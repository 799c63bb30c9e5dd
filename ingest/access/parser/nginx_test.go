package parser

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// nginxConf is a real nginx that logs every request in three formats
// found in the wild: the X-Forwarded-For chain with the peer appended
// ($proxy_add_x_forwarded_for), the header quoted then the peer, and
// vhost:port before the peer. %[1]s is the work folder, %[2]d the port.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	log_format chain '$proxy_add_x_forwarded_for - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"';
	log_format split '"$http_x_forwarded_for" $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"';
	log_format vhost '$host:$server_port $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"';
	server {
		listen 127.0.0.1:%[2]d;
		listen unix:%[1]s/nginx.sock;
		access_log %[1]s/chain.log chain;
		access_log %[1]s/split.log split;
		access_log %[1]s/vhost.log vhost;
		root %[1]s/www;
		location /private { auth_basic "flowaudit"; auth_basic_user_file %[1]s/htpasswd; }
		location /missing { return 404; }
		location /broken { return 502; }
		location / { return 200 "ok\n"; }
	}
}
`

// startNginx runs nginx with nginxConf and returns the work folder and
// the TCP address; it stops nginx when the test ends.
func startNginx(t *testing.T) (dir, addr string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			bin = "/usr/sbin/nginx"
		} else if testutil.RequireExternal() {
			t.Fatal("nginx not installed (apt-get install nginx-light)")
		} else {
			t.Skip("nginx not installed")
		}
	}
	dir = t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("alice:{PLAIN}s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A file, not "return": return runs before auth_basic checks anything.
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "private"), []byte("private\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s%s", err, stderr.Bytes(), errLog)
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			if _, err := os.Stat(filepath.Join(dir, "nginx.sock")); err == nil {
				return dir, addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not answer on %s: %v", addr, err)
		}
	}
}

// TestRealNginxLines sends requests through a real nginx (TCP and a Unix
// socket, with and without X-Forwarded-For, authenticated, refused,
// failing) and parses the lines it wrote in each format.
func TestRealNginxLines(t *testing.T) {
	dir, addr := startNginx(t)
	tcp := &http.Client{Timeout: 10 * time.Second}
	unix := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", filepath.Join(dir, "nginx.sock"))
		},
	}}
	type request struct {
		client      *http.Client
		path, xff   string
		user, pass  string
		host        string
		wantStatus  int
		wantOutcome schemas.Outcome
	}
	requests := []request{
		{client: tcp, path: "/", wantStatus: 200, wantOutcome: schemas.OutcomeSuccess},
		{client: tcp, path: "/", xff: "203.0.113.7, 10.0.0.1", wantStatus: 200, wantOutcome: schemas.OutcomeSuccess},
		{client: tcp, path: "/private", xff: "10.1.0.5", user: "alice", pass: "s3cret", wantStatus: 200, wantOutcome: schemas.OutcomeSuccess},
		{client: tcp, path: "/private", user: "alice", pass: "wrong", wantStatus: 401, wantOutcome: schemas.OutcomeDenied},
		{client: tcp, path: "/missing", host: "shop.example", wantStatus: 404, wantOutcome: schemas.OutcomeFailure},
		{client: tcp, path: "/broken", wantStatus: 502, wantOutcome: schemas.OutcomeFailure},
		{client: unix, path: "/", wantStatus: 200, wantOutcome: schemas.OutcomeSuccess},
		{client: unix, path: "/", xff: "198.51.100.9", wantStatus: 200, wantOutcome: schemas.OutcomeSuccess},
		// nginx logs $remote_user from any Authorization header, also
		// where no auth_basic checks it: the line is a success with a
		// user nobody verified (see README, Access logs).
		{client: tcp, path: "/", user: "mallory", pass: "unchecked", wantStatus: 200, wantOutcome: schemas.OutcomeSuccess},
	}
	for _, r := range requests {
		req, err := http.NewRequest("GET", "http://"+addr+r.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.xff != "" {
			req.Header.Set("X-Forwarded-For", r.xff)
		}
		if r.user != "" {
			req.SetBasicAuth(r.user, r.pass)
		}
		if r.host != "" {
			req.Host = r.host
		}
		req.Header.Set("User-Agent", "flowaudit-test/1")
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.wantStatus {
			t.Fatalf("GET %s = %d, want %d", r.path, resp.StatusCode, r.wantStatus)
		}
	}

	// What each request must parse to, per format: client, chain, user.
	type want struct {
		Src, XFF, User, DstHost, DstAddr string
		Outcome                          schemas.Outcome
		Status                           int32
	}
	const lo = "127.0.0.1"
	base := make([]want, len(requests))
	for i, r := range requests {
		base[i] = want{User: r.user, Outcome: r.wantOutcome, Status: int32(r.wantStatus)}
	}
	with := func(f func(i int, w *want)) []want {
		out := append([]want(nil), base...)
		for i := range out {
			f(i, &out[i])
		}
		return out
	}
	wants := map[string][]want{
		"chain.log": with(func(i int, w *want) {
			w.Src, w.XFF = []string{lo, "203.0.113.7", "10.1.0.5", lo, lo, lo, "", "198.51.100.9", lo}[i],
				[]string{"", "203.0.113.7, 10.0.0.1, 127.0.0.1", "10.1.0.5, 127.0.0.1", "", "", "", "", "198.51.100.9, unix:", ""}[i]
		}),
		"split.log": with(func(i int, w *want) {
			w.Src, w.XFF = []string{lo, "203.0.113.7", "10.1.0.5", lo, lo, lo, "", "198.51.100.9", lo}[i],
				[]string{"", "203.0.113.7, 10.0.0.1, 127.0.0.1", "10.1.0.5, 127.0.0.1", "", "", "", "", "198.51.100.9, unix:", ""}[i]
		}),
		"vhost.log": with(func(i int, w *want) {
			w.Src = []string{lo, lo, lo, lo, lo, lo, "", "", lo}[i]
			if requests[i].host != "" {
				w.DstHost = requests[i].host
			} else {
				w.DstAddr = lo
			}
		}),
	}
	p, _ := New(FormatNginx)
	for name, ws := range wants {
		lines := waitLines(t, filepath.Join(dir, name), len(requests))
		t.Logf("%s:\n%s", name, strings.Join(lines, "\n"))
		var got []want
		for _, l := range lines {
			var ev schemas.AccessEvent
			if err := p.Parse([]byte(l), testMeta, &ev); err != nil {
				t.Errorf("%s: %v\n  %s", name, err, l)
				got = append(got, want{})
				continue
			}
			w := want{User: ev.User, XFF: ev.ForwardedFor, DstHost: ev.DstHost, Outcome: ev.Outcome, Status: ev.Status}
			if ev.SrcAddr != (schemas.Addr{}) {
				w.Src = ev.SrcAddr.String()
			}
			if ev.DstAddr != (schemas.Addr{}) {
				w.DstAddr = ev.DstAddr.String()
			}
			got = append(got, w)
		}
		if diff := cmp.Diff(got, ws); diff != "" {
			t.Errorf("%s (-got +want):\n%s\nlines:\n%s", name, diff, strings.Join(lines, "\n"))
		}
	}
}

// waitLines waits until path holds n complete lines (nginx writes a
// request's line after sending the response) and returns them.
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var lines []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if bytes.Count(b, []byte("\n")) >= n {
			return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		}
		lines = strings.Split(string(b), "\n")
	}
	t.Fatalf("%s: %d lines after 20 s, want %d", path, len(lines), n)
	return nil
}
