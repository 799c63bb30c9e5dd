package access

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Connection caps of one TCP (or TLS) syslog listener. Idle connections
// cost a socket and a goroutine each, so a flood of them could lock out
// every legitimate sender for the idle timeout. Two caps hold instead:
// syslog_max_connections per listener and
// syslog_max_connections_per_source per source (an IPv4 address, or an
// IPv6 /64: one host usually holds a whole /64). When a new connection
// would exceed either, the connection of that scope (the listener, or the
// source) that has been idle longest is evicted to admit it: what it had
// sent is still read for evictGrace, then it is closed. A sender that
// keeps sending stays; a flood of idle connections only churns itself.

// sourceOf is the key of the per-source cap.
func sourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// tcpConn is one admitted connection.
type tcpConn struct {
	net.Conn
	source netip.Prefix
	// lastActive is the Unix ns of the last complete message, or of the
	// accept: what "idle longest" is measured by.
	lastActive atomic.Int64
	evicted    atomic.Bool
	// evictAt is the Unix ns by which an evicted connection closes.
	evictAt atomic.Int64
}

func (tc *tcpConn) touch() { tc.lastActive.Store(time.Now().UnixNano()) }

// evictGrace is how long an evicted connection is still read: what its
// sender wrote before the eviction (in the socket buffer, not yet read)
// is not lost, and the connection closes by then whatever it sends.
const evictGrace = 250 * time.Millisecond

// evict makes the connection close within evictGrace.
func (tc *tcpConn) evict() {
	at := time.Now().Add(evictGrace)
	tc.evictAt.Store(at.UnixNano())
	_ = tc.SetReadDeadline(at)
}

// armDeadline sets the deadline of the next read: idle from now, or the
// eviction's. An eviction racing with it still wins: evict stores evictAt
// before setting its deadline, and this checks evictAt after setting its
// own.
func (tc *tcpConn) armDeadline(idle time.Duration) {
	if at := tc.evictAt.Load(); at != 0 {
		_ = tc.SetReadDeadline(time.Unix(0, at))
		return
	}
	_ = tc.SetReadDeadline(time.Now().Add(idle))
	if at := tc.evictAt.Load(); at != 0 {
		_ = tc.SetReadDeadline(time.Unix(0, at))
	}
}

// connTable tracks the connections of one listener.
type connTable struct {
	max, perSource int

	mu       sync.Mutex
	conns    map[*tcpConn]struct{}
	bySource map[netip.Prefix]int
}

func newConnTable(max, perSource int) *connTable {
	return &connTable{max: max, perSource: perSource, conns: map[*tcpConn]struct{}{}, bySource: map[netip.Prefix]int{}}
}

// Eviction reasons (the reason label of flowaudit_access_tcp_evictions_total).
const (
	evictListenerFull = "listener_full"
	evictSourceFull   = "source_full"
)

// admit registers conn, first removing from the table the connections it
// displaces (the longest idle of its source when the source is at its
// cap, then of the listener when the listener is full). The caller closes
// the displaced connections, outside the table's lock.
func (t *connTable) admit(conn net.Conn, src netip.Addr) (tc *tcpConn, evicted []*tcpConn, reasons []string) {
	tc = &tcpConn{Conn: conn, source: sourceOf(src)}
	tc.touch()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bySource[tc.source] >= t.perSource {
		if old := t.oldestIdle(func(o *tcpConn) bool { return o.source == tc.source }); old != nil {
			t.removeLocked(old)
			evicted, reasons = append(evicted, old), append(reasons, evictSourceFull)
		}
	}
	if len(t.conns) >= t.max {
		if old := t.oldestIdle(nil); old != nil {
			t.removeLocked(old)
			evicted, reasons = append(evicted, old), append(reasons, evictListenerFull)
		}
	}
	t.conns[tc] = struct{}{}
	t.bySource[tc.source]++
	for _, old := range evicted {
		old.evicted.Store(true)
	}
	return tc, evicted, reasons
}

// oldestIdle returns the connection idle longest among those keep
// selects (all when keep is nil). A scan: the table holds at most max
// connections and is scanned only when a cap is reached.
func (t *connTable) oldestIdle(keep func(*tcpConn) bool) *tcpConn {
	var oldest *tcpConn
	var at int64
	for c := range t.conns {
		if keep != nil && !keep(c) {
			continue
		}
		if la := c.lastActive.Load(); oldest == nil || la < at {
			oldest, at = c, la
		}
	}
	return oldest
}

func (t *connTable) removeLocked(tc *tcpConn) {
	if _, ok := t.conns[tc]; !ok {
		return
	}
	delete(t.conns, tc)
	if t.bySource[tc.source]--; t.bySource[tc.source] <= 0 {
		delete(t.bySource, tc.source)
	}
}

// remove drops tc if it is still registered (an evicted one is not).
func (t *connTable) remove(tc *tcpConn) {
	t.mu.Lock()
	t.removeLocked(tc)
	t.mu.Unlock()
}
