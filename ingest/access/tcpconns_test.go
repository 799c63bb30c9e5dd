package access

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConnTable admits connections past both caps: the one idle longest
// of the scope goes, a connection that sent recently stays.
func TestConnTable(t *testing.T) {
	table := newConnTable(3, 2)
	at := int64(0)
	open := func(src string) *tcpConn {
		t.Helper()
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		tc, evicted, reasons := table.admit(a, netip.MustParseAddr(src))
		if len(evicted) != 0 {
			t.Fatalf("admitting %s evicted %d (%v)", src, len(evicted), reasons)
		}
		at++
		tc.lastActive.Store(at)
		return tc
	}
	a1, a2, b1 := open("10.0.0.1"), open("10.0.0.1"), open("10.0.0.2")
	a1.lastActive.Store(100) // a1 just sent a message: a2 is idle longest

	check := func(src string, wantEvicted []*tcpConn, wantReasons []string) *tcpConn {
		t.Helper()
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		tc, evicted, reasons := table.admit(a, netip.MustParseAddr(src))
		if diff := cmp.Diff(reasons, wantReasons); diff != "" {
			t.Errorf("admitting %s: reasons (-got +want):\n%s", src, diff)
		}
		if len(evicted) != len(wantEvicted) {
			t.Fatalf("admitting %s evicted %d connections, want %d", src, len(evicted), len(wantEvicted))
		}
		for i := range evicted {
			if evicted[i] != wantEvicted[i] || !evicted[i].evicted.Load() {
				t.Errorf("admitting %s: eviction %d is not the expected connection", src, i)
			}
		}
		at++
		tc.lastActive.Store(at)
		return tc
	}
	// 10.0.0.1 is at its cap of 2: its idle one (a2) goes, not a1.
	a3 := check("10.0.0.1", []*tcpConn{a2}, []string{evictSourceFull})
	// The listener is full (3): b1 is idle longest of all.
	check("10.0.0.3", []*tcpConn{b1}, []string{evictListenerFull})
	// An IPv6 /64 is one source.
	table2 := newConnTable(10, 1)
	x, _ := net.Pipe()
	y, _ := net.Pipe()
	first, _, _ := table2.admit(x, netip.MustParseAddr("2001:db8::1"))
	if _, ev, _ := table2.admit(y, netip.MustParseAddr("2001:db8::ffff:2")); len(ev) != 1 || ev[0] != first {
		t.Errorf("a second address of the same /64 did not displace the first")
	}
	// Removing an evicted connection again changes nothing.
	table.remove(a2)
	table.remove(a3)
	if got := len(table.conns); got != 2 {
		t.Errorf("connections left = %d, want 2", got)
	}
}
