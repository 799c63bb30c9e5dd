// Package netlab builds a real segmented network for tests: one Linux
// network namespace per segment host, joined by veth pairs to a router
// namespace that forwards between them under an nftables ruleset, with
// real daemons (nginx, sshd, softflowd) started inside. Nothing is
// created in the test's own namespace: every interface and address lives
// in a namespace the lab made, so no packet can leave for anything else,
// and processes in the test's namespace are reached through relays the
// lab opens inside a namespace (Relay).
//
// It needs root. Without it New skips the test; with root, a failing set
// up skips too, unless FLOWAUDIT_REQUIRE_CLICKHOUSE=1 (CI), where it
// fails. Namespaces and daemons are removed by t.Cleanup; names are
// unique per lab, so tests may build labs in parallel.
package netlab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowaudit/flowaudit/internal/testutil"
)

// SegmentSpec is one segment host of the lab: a namespace with one
// address in Prefix, whose gateway is the router's address in Prefix.
type SegmentSpec struct {
	Name   string       // short: it names the namespace and the router's interface
	Prefix netip.Prefix // the segment's subnet, e.g. 10.71.1.0/24
	Host   netip.Addr   // the host's address, e.g. 10.71.1.10
	Router netip.Addr   // the router's address, e.g. 10.71.1.1
}

// Host is a segment host of a running lab.
type Host struct {
	SegmentSpec
	NS       string // network namespace name
	RouterIf string // the router's interface towards this host
}

// Lab is a running lab. Methods may be called from the test goroutine
// only, except Relay's goroutines, which run until the lab is removed.
type Lab struct {
	t      testing.TB
	Router string // the router's namespace
	Hosts  map[string]*Host
	Dir    string // configuration, logs and pid files of the daemons

	namespaces []string
	mu         sync.Mutex
	daemons    []*daemon
	closers    []io.Closer
}

var labSeq atomic.Int32

// New builds the lab: the router namespace (forwarding on, no ruleset yet:
// everything is forwarded until LoadRuleset) and one namespace per segment.
func New(t testing.TB, segments []SegmentSpec) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab needs root (network namespaces, nftables)")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			setupFailed(t, fmt.Errorf("%s not found: apt-get install iproute2 nftables", bin))
		}
	}
	prefix := fmt.Sprintf("fa%d-%d", os.Getpid()%100000, labSeq.Add(1))
	l := &Lab{t: t, Router: prefix + "-router", Hosts: map[string]*Host{}, Dir: t.TempDir()}
	t.Cleanup(l.remove)
	if err := l.build(prefix, segments); err != nil {
		setupFailed(t, err)
	}
	return l
}

func setupFailed(t testing.TB, err error) {
	t.Helper()
	if testutil.RequireExternal() {
		t.Fatalf("netlab set up: %v", err)
	}
	t.Skipf("netlab set up: %v (set %s=1 to fail instead)", err, testutil.EnvRequireClickHouse)
}

func (l *Lab) build(prefix string, segments []SegmentSpec) error {
	if err := l.addNS(l.Router); err != nil {
		return err
	}
	if _, err := l.Exec(l.Router, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	for _, s := range segments {
		h := &Host{SegmentSpec: s, NS: prefix + "-" + s.Name, RouterIf: ifName("v" + s.Name)}
		if err := l.addNS(h.NS); err != nil {
			return err
		}
		bits := fmt.Sprintf("/%d", s.Prefix.Bits())
		for _, args := range [][]string{
			{"-n", l.Router, "link", "add", h.RouterIf, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			{"-n", l.Router, "addr", "add", s.Router.String() + bits, "dev", h.RouterIf},
			{"-n", l.Router, "link", "set", h.RouterIf, "up"},
			{"-n", h.NS, "addr", "add", s.Host.String() + bits, "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
			{"-n", h.NS, "route", "add", "default", "via", s.Router.String()},
		} {
			if err := ip(args...); err != nil {
				return err
			}
		}
		l.Hosts[s.Name] = h
	}
	return nil
}

func ifName(s string) string {
	if len(s) > 15 {
		return s[:15]
	}
	return s
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (l *Lab) addNS(name string) error {
	if err := ip("netns", "add", name); err != nil {
		return err
	}
	l.namespaces = append(l.namespaces, name)
	return ip("-n", name, "link", "set", "lo", "up")
}

// Command returns a command that runs inside namespace ns.
func (l *Lab) Command(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Exec runs a command inside ns and returns its combined output.
func (l *Lab) Exec(ns string, name string, args ...string) (string, error) {
	out, err := l.Command(ns, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %v: %s", ns, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// LoadRuleset replaces the router's nftables ruleset with ruleset (nft -f
// syntax).
func (l *Lab) LoadRuleset(ruleset string) error {
	file := filepath.Join(l.Dir, "ruleset.nft")
	if err := os.WriteFile(file, []byte("flush ruleset\n"+ruleset), 0o644); err != nil {
		return err
	}
	_, err := l.Exec(l.Router, "nft", "-f", file)
	return err
}

// ForwardChain returns the family, table and chain of the router's
// ruleset that filters forwarded traffic (the base chain on the forward
// hook), so a test can change an exported ruleset it did not write.
func (l *Lab) ForwardChain() (family, table, chain string, err error) {
	out, err := l.Exec(l.Router, "nft", "-j", "list", "chains")
	if err != nil {
		return "", "", "", err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return "", "", "", fmt.Errorf("nft -j list chains: %w", err)
	}
	for _, item := range doc.Nftables {
		raw, ok := item["chain"]
		if !ok {
			continue
		}
		var c struct {
			Family, Table, Name, Hook string
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			continue
		}
		if c.Hook == "forward" {
			return c.Family, c.Table, c.Name, nil
		}
	}
	return "", "", "", errors.New("the router's ruleset has no chain on the forward hook")
}

// InsertRule inserts rule (nft syntax, e.g. "ip saddr 10.0.1.0/24 tcp
// dport 22 accept") at the top of the forward chain.
func (l *Lab) InsertRule(rule string) error {
	family, table, chain, err := l.ForwardChain()
	if err != nil {
		return err
	}
	_, err = l.Exec(l.Router, "nft", append([]string{"insert", "rule", family, table, chain}, strings.Fields(rule)...)...)
	return err
}

// daemon is a process started in a namespace, stopped at cleanup.
type daemon struct {
	name string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Start starts a daemon (in the foreground: it must not fork) inside ns;
// it is killed at cleanup and its output logged when the test failed.
func (l *Lab) Start(ns, name string, args ...string) error {
	d := &daemon{name: name + " in " + ns, out: &bytes.Buffer{}, done: make(chan struct{})}
	d.cmd = l.Command(ns, name, args...)
	w := &lockedBuffer{b: d.out}
	d.cmd.Stdout, d.cmd.Stderr = w, w
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", d.name, err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	l.mu.Lock()
	l.daemons = append(l.daemons, d)
	l.mu.Unlock()
	select {
	case <-d.done:
		return fmt.Errorf("%s exited at once: %s", d.name, d.out.String())
	case <-time.After(200 * time.Millisecond):
	}
	return nil
}

// WaitTCP waits until something in ns accepts connections on addr.
func (l *Lab) WaitTCP(ns string, addr netip.AddrPort, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		err := l.InNS(ns, func() error {
			c, err := net.DialTimeout("tcp", addr.String(), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return nil
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s in %s after %s: %v", addr, ns, timeout, lastErr)
}

// InNS runs f on a thread switched into namespace ns. Sockets f creates
// stay in ns after f returns.
func (l *Lab) InNS(ns string, f func() error) error {
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with this goroutine
			// rather than serve others in the wrong namespace.
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// RelayUDP listens on 127.0.0.1 inside ns and sends every datagram it
// receives on to `to` in the test's namespace: how an exporter inside
// the lab reaches a collector listening on the test's loopback. It
// returns the address to use inside ns.
func (l *Lab) RelayUDP(ns string, to string) (string, error) {
	var in net.PacketConn
	if err := l.InNS(ns, func() (err error) {
		in, err = net.ListenPacket("udp", "127.0.0.1:0")
		return err
	}); err != nil {
		return "", err
	}
	out, err := net.Dial("udp", to)
	if err != nil {
		in.Close()
		return "", err
	}
	l.closers = append(l.closers, in, out)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := in.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = out.Write(buf[:n])
		}
	}()
	return in.LocalAddr().String(), nil
}

// RelayTCP listens on 127.0.0.1 inside ns and connects every accepted
// connection to `to` in the test's namespace (say, ClickHouse for a
// prober inside the lab). It returns the address to use inside ns.
func (l *Lab) RelayTCP(ns string, to string) (string, error) {
	var lis net.Listener
	if err := l.InNS(ns, func() (err error) {
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		return "", err
	}
	l.closers = append(l.closers, lis)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return lis.Addr().String(), nil
}

// remove stops the daemons and deletes the namespaces (and with them
// every veth pair).
func (l *Lab) remove() {
	for _, c := range l.closers {
		c.Close()
	}
	l.mu.Lock()
	daemons := l.daemons
	l.mu.Unlock()
	for _, d := range daemons {
		if d.cmd.Process != nil {
			_ = d.cmd.Process.Kill()
		}
	}
	for _, d := range daemons {
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			l.t.Errorf("netlab: %s did not exit after SIGKILL", d.name)
		}
		if l.t.Failed() {
			l.t.Logf("%s output:\n%s", d.name, d.out.String())
		}
	}
	for i := len(l.namespaces) - 1; i >= 0; i-- {
		if err := ip("netns", "del", l.namespaces[i]); err != nil {
			l.t.Errorf("netlab: %v", err)
		}
	}
}
