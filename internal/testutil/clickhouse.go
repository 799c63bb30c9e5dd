// Package testutil holds helpers shared by flowaudit's tests: real servers
// started in process or as child processes, never mocks.
package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Environment variables read by StartClickHouse.
const (
	// EnvClickHouseServer names a clickhouse-server binary to use instead of
	// looking in PATH, /usr/sbin and /usr/bin. A multi-call `clickhouse`
	// binary works too (it is run as `clickhouse server`).
	EnvClickHouseServer = "FLOWAUDIT_CLICKHOUSE_SERVER"
	// EnvRequireClickHouse, when "1", turns a missing binary into a test
	// failure instead of a skip. CI sets it.
	EnvRequireClickHouse = "FLOWAUDIT_REQUIRE_CLICKHOUSE"
)

const (
	// clickHouseReadyTimeout bounds how long a start waits for the server
	// to answer. 18.16 answers in about 3 s on an idle machine; the margin
	// is for a loaded 2-core CI runner.
	clickHouseReadyTimeout = 60 * time.Second
	// clickHouseStopTimeout is how long Stop waits after SIGTERM before
	// SIGKILL.
	clickHouseStopTimeout = 10 * time.Second
	// clickHouseStartAttempts is how many times a start is tried when the
	// server dies early, typically because another process grabbed one of
	// the ports between choosing and binding them.
	clickHouseStartAttempts = 3
)

// ClickHouseServer is a clickhouse-server child process owned by one test.
// It listens on loopback only, keeps all its files under Dir, and is killed
// when the test ends. Methods are not safe for concurrent use; call them
// from the test goroutine.
type ClickHouseServer struct {
	Addr     string // native protocol, 127.0.0.1:port
	HTTPAddr string // HTTP interface, 127.0.0.1:port
	Dir      string // config, data and logs; survives Stop

	binary []string // binary, plus "server" for the multi-call binary
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// StartClickHouse starts a clickhouse-server on free loopback ports in a
// fresh t.TempDir(), waits until it answers SELECT 1, and registers a
// cleanup that kills it. When no binary is found it skips the test, unless
// FLOWAUDIT_REQUIRE_CLICKHOUSE=1 or FLOWAUDIT_CLICKHOUSE_SERVER names a
// missing file, in which case it fails.
func StartClickHouse(t testing.TB) *ClickHouseServer {
	t.Helper()
	bin, err := findClickHouseServer()
	if err != nil {
		// A binary named explicitly but unusable is a mistake to report,
		// not a reason to skip silently.
		if os.Getenv(EnvRequireClickHouse) == "1" || os.Getenv(EnvClickHouseServer) != "" {
			t.Fatalf("%v: a real ClickHouse server is required; install it with `apt-get install clickhouse-server` or set %s to the binary",
				err, EnvClickHouseServer)
		}
		t.Skipf("%v; install it with `apt-get install clickhouse-server` (set %s=1 to fail instead of skipping)",
			err, EnvRequireClickHouse)
	}
	s := &ClickHouseServer{Dir: t.TempDir(), binary: bin}
	// Registered after t.TempDir, so it runs before the directory is
	// removed. The data is not needed any more: kill rather than wait for a
	// graceful shutdown.
	t.Cleanup(s.kill)

	var lastErr error
	for attempt := 0; attempt < clickHouseStartAttempts; attempt++ {
		if lastErr = s.choosePorts(); lastErr != nil {
			continue
		}
		if lastErr = s.writeConfig(); lastErr != nil {
			break
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("start clickhouse-server: %v", lastErr)
	return nil
}

// Stop stops the server as an outage would: SIGTERM, then SIGKILL if it has
// not exited after 10 s. The data directory and ports are kept for Start.
func (s *ClickHouseServer) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		t.Fatal("stop clickhouse-server: not running")
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(clickHouseStopTimeout):
		t.Logf("clickhouse-server did not exit %v after SIGTERM, killing it", clickHouseStopTimeout)
		s.kill()
	}
	s.cmd = nil
}

// Start starts a stopped server again on the same ports and data
// directory, and waits until it answers.
func (s *ClickHouseServer) Start(t testing.TB) {
	t.Helper()
	if s.cmd != nil {
		t.Fatal("start clickhouse-server: already running")
	}
	var err error
	for attempt := 0; attempt < clickHouseStartAttempts; attempt++ {
		// The old process's sockets may linger briefly; the ports cannot
		// change (clients hold the address), so wait and retry.
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("restart clickhouse-server: %v", err)
}

// Conn opens a clickhouse-go connection to the server's default database.
// It is closed when the test ends. The connection pool redials after a
// Stop/Start, so one Conn can span an outage.
func (s *ClickHouseServer) Conn(t testing.TB) driver.Conn {
	t.Helper()
	conn, err := s.open()
	if err != nil {
		t.Fatalf("open clickhouse connection to %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// QueryUint64 runs query, which must return one row with one UInt64 column
// (wrap the expression in toUInt64), and returns that value.
func (s *ClickHouseServer) QueryUint64(t testing.TB, query string, args ...any) uint64 {
	t.Helper()
	conn, err := s.open()
	if err != nil {
		t.Fatalf("open clickhouse connection to %s: %v", s.Addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var v uint64
	if err := conn.QueryRow(ctx, query, args...).Scan(&v); err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	return v
}

func (s *ClickHouseServer) open() (driver.Conn, error) {
	return clickhouse.Open(&clickhouse.Options{
		Addr:         []string{s.Addr},
		Auth:         clickhouse.Auth{Database: "default", Username: "default"},
		DialTimeout:  5 * time.Second,
		ReadTimeout:  60 * time.Second,
		MaxOpenConns: 4,
		MaxIdleConns: 2,
	})
}

// findClickHouseServer returns the command that runs a server.
func findClickHouseServer() ([]string, error) {
	if p := os.Getenv(EnvClickHouseServer); p != "" {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", EnvClickHouseServer, p, err)
		}
		if filepath.Base(p) == "clickhouse" {
			return []string{p, "server"}, nil
		}
		return []string{p}, nil
	}
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return []string{p}, nil
	}
	// /usr/sbin is often missing from a non-root PATH.
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if _, err := os.Stat(p); err == nil {
			return []string{p}, nil
		}
	}
	return nil, errors.New("clickhouse-server not found in PATH, /usr/sbin or /usr/bin")
}

// choosePorts picks two free loopback ports. Both listeners are held until
// both are chosen so they differ; the ports are then released, which leaves
// a small window for another process to take them (start retries).
func (s *ClickHouseServer) choosePorts() error {
	var ports [2]string
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		_, ports[i], _ = net.SplitHostPort(l.Addr().String())
	}
	s.Addr = net.JoinHostPort("127.0.0.1", ports[0])
	s.HTTPAddr = net.JoinHostPort("127.0.0.1", ports[1])
	return nil
}

// writeConfig writes a minimal config that both 18.16 and modern servers
// accept: loopback only, everything under Dir, small caches, UTC so that
// DateTime values read back the same on every machine. poll_interval 1 and
// shutdown_wait_unfinished 2 make SIGTERM take about a second: with the
// defaults an idle client connection holds 18.16's shutdown for 10 s.
func (s *ClickHouseServer) writeConfig() error {
	_, tcpPort, _ := net.SplitHostPort(s.Addr)
	_, httpPort, _ := net.SplitHostPort(s.HTTPAddr)
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>%[1]s/log/server.log</log>
        <errorlog>%[1]s/log/error.log</errorlog>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%[2]s</tcp_port>
    <http_port>%[3]s</http_port>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <shutdown_wait_unfinished>2</shutdown_wait_unfinished>
</yandex>
`, s.Dir, tcpPort, httpPort)
	users := `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>1000000000</max_memory_usage>
            <poll_interval>1</poll_interval>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default></default>
    </quotas>
</yandex>
`
	for _, d := range []string{"log", "data", "tmp", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "config.xml"), []byte(config), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "users.xml"), []byte(users), 0o644)
}

// start runs the server and waits until it answers SELECT 1. On failure
// the process is killed and the error carries the error log's tail.
func (s *ClickHouseServer) start() error {
	out, err := os.OpenFile(filepath.Join(s.Dir, "log", "stdout.log"),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := append(s.binary[1:len(s.binary):len(s.binary)],
		"--config-file="+filepath.Join(s.Dir, "config.xml"))
	cmd := exec.Command(s.binary[0], args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group: a Ctrl-C on `go test` does not reach it first, so
	// cleanup decides how it stops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("run %s: %w", s.binary[0], err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		out.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	if err := s.waitReady(exited); err != nil {
		s.kill()
		s.cmd = nil
		if waitErr != nil {
			err = fmt.Errorf("%w (process: %v)", err, waitErr)
		}
		return fmt.Errorf("%w\n--- tail of %s ---\n%s", err, s.Dir, s.logTail())
	}
	return nil
}

func (s *ClickHouseServer) waitReady(exited <-chan struct{}) error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{s.Addr},
		Auth:        clickhouse.Auth{Database: "default", Username: "default"},
		DialTimeout: time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(clickHouseReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var one uint8
		err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("clickhouse-server exited before answering on %s", s.Addr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clickhouse-server did not answer on %s within %v: %w", s.Addr, clickHouseReadyTimeout, err)
		}
	}
}

// kill SIGKILLs the process if it runs and waits for it.
func (s *ClickHouseServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// logTail returns the last lines of the error log and of stdout, which
// together say why a server did not come up.
func (s *ClickHouseServer) logTail() string {
	var b strings.Builder
	for _, name := range []string{"error.log", "stdout.log"} {
		data, err := os.ReadFile(filepath.Join(s.Dir, "log", name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		b.WriteString(name + ":\n")
		b.Write(bytes.Join(lines, []byte("\n")))
		b.WriteString("\n")
	}
	if b.Len() == 0 {
		return "(no log output)"
	}
	return b.String()
}

// RequireExternal reports whether tests must fail rather than skip when an
// external program they need (clickhouse-server, softflowd) is missing.
func RequireExternal() bool { return os.Getenv(EnvRequireClickHouse) == "1" }
