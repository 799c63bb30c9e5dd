package access_test

import (
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit and
// returns it.
func raiseNoFile(t *testing.T) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	return lim.Cur
}

// TestTCPSyslogIdleFlood opens 10,000 idle TCP syslog connections from
// 250 loopback sources (40 each in a row, above the per-source cap) while 20
// legitimate senders, each from its own address, connect one after the
// other in the middle of the flood and send one line: every line gets
// through, the listener never holds more than syslog_max_connections,
// and both caps evicted.
func TestTCPSyslogIdleFlood(t *testing.T) {
	const floodConns, floodSources, senders = 10_000, 250, 20
	if lim := raiseNoFile(t); lim < floodConns+3000 {
		t.Skipf("RLIMIT_NOFILE hard limit %d is below the %d descriptors this test needs", lim, floodConns+3000)
	}
	h := newHarness(t)
	cfg := testConfiguration()
	cfg.SyslogListen = []string{"tcp://127.0.0.1:0"}
	cfg.HTTPListen = ""
	cfg.SyslogMaxConnections = 1024
	cfg.SyslogMaxConnectionsPerSource = 32
	c := h.start(cfg)
	target := hostPort(t, c.SyslogAddrs()[0])

	var (
		mu     sync.Mutex
		flood  []net.Conn
		opened atomic.Int64
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range flood {
			conn.Close()
		}
	})
	var wg sync.WaitGroup
	const dialers = 8
	for d := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := d; i < floodConns; i += dialers {
				// 40 consecutive connections per source.
				n := i / (floodConns / floodSources)
				src := &net.TCPAddr{IP: net.IPv4(127, 1, byte(n/200), byte(1+n%200))}
				conn, err := (&net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}).Dial("tcp", target)
				if err != nil {
					t.Errorf("flood connection %d from %s: %v", i, src.IP, err)
					return
				}
				mu.Lock()
				flood = append(flood, conn)
				mu.Unlock()
				opened.Add(1)
			}
		}()
	}

	// Sender i waits until the flood has opened 1,500 + 400·i
	// connections: the listener is full from the first one on.
	for i := range senders {
		for opened.Load() < int64(1500+400*i) {
			if t.Failed() {
				t.FailNow()
			}
			time.Sleep(time.Millisecond)
		}
		src := &net.TCPAddr{IP: net.IPv4(127, 2, 0, byte(1+i))}
		conn, err := (&net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}).Dial("tcp", target)
		if err != nil {
			t.Fatalf("sender %d: %v", i, err)
		}
		line := fmt.Sprintf("<38>1 2024-01-02T03:04:05Z bastion sshd 1 - - Accepted password for legit-%02d from 10.9.0.%d port 40000 ssh2\n", i, i+1)
		if _, err := conn.Write([]byte(line)); err != nil {
			t.Fatalf("sender %d: %v", i, err)
		}
		conn.Close()
	}
	wg.Wait()
	t.Logf("flood: %d connections open on the client side", opened.Load())

	h.wait(senders, 0)
	h.settle()
	got := users(h.events)
	sort.Strings(got)
	var want []string
	for i := range senders {
		want = append(want, fmt.Sprintf("legit-%02d", i))
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("lines of the legitimate senders (-got +want):\n%s", diff)
	}
	// Evicted connections close within evictGrace of their eviction; on
	// a loaded machine (or under -race) their goroutines may take longer
	// to finish, so wait for the gauge rather than read it once.
	open := metricValue(t, h.r, "flowaudit_access_tcp_connections", nil)
	for deadline := time.Now().Add(10 * time.Second); open > 1024 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		open = metricValue(t, h.r, "flowaudit_access_tcp_connections", nil)
	}
	listenerFull := metricValue(t, h.r, "flowaudit_access_tcp_evictions_total", map[string]string{"reason": "listener_full"})
	sourceFull := metricValue(t, h.r, "flowaudit_access_tcp_evictions_total", map[string]string{"reason": "source_full"})
	t.Logf("server side: %v connections open, %v evicted as listener_full, %v as source_full", open, listenerFull, sourceFull)
	if open > 1024 {
		t.Errorf("open connections = %v, want at most syslog_max_connections (1024)", open)
	}
	if listenerFull == 0 || sourceFull == 0 {
		t.Errorf("evictions: listener_full %v, source_full %v; want both caps to have evicted", listenerFull, sourceFull)
	}
}
