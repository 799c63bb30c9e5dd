package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/flowaudit/flowaudit/policy"
)

// Observation is what one attempt saw.
type Observation string

// Observations (the probe_results.observed values).
const (
	// ObservedOpen: a TCP handshake completed, a UDP service answered, an
	// echo reply came back.
	ObservedOpen Observation = "open"
	// ObservedClosed: the target itself refused (TCP RST, ICMP port
	// unreachable for UDP): the packet crossed the boundary, nothing
	// listens.
	ObservedClosed Observation = "closed"
	// ObservedFiltered: no answer within the timeout, or the path refused
	// it (host/network unreachable, administratively prohibited).
	ObservedFiltered Observation = "filtered"
	// ObservedError: the attempt could not be made (a local failure).
	ObservedError Observation = "error"
)

// attempt is the result of one network attempt.
type attempt struct {
	observed Observation
	local    netip.Addr // local address used
	rtt      time.Duration
	detail   string
}

// prober makes attempts. Its methods are safe for concurrent use.
type prober struct {
	timeout time.Duration
	icmpSeq atomic.Uint32
}

func (p *prober) do(ctx context.Context, c *Check) attempt {
	switch c.Proto {
	case policy.ProtoTCP:
		return p.tcp(ctx, c)
	case policy.ProtoUDP:
		return p.udp(ctx, c)
	case policy.ProtoICMP, policy.ProtoICMPv6:
		return p.echo(ctx, c)
	}
	return attempt{observed: ObservedError, detail: fmt.Sprintf("protocol %d cannot be probed", c.Proto)}
}

func (p *prober) tcp(ctx context.Context, c *Check) attempt {
	d := net.Dialer{Timeout: p.timeout}
	if c.SrcAddr.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: c.SrcAddr.AsSlice()}
	}
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(c.DstAddr, c.DstPort).String())
	a := attempt{rtt: time.Since(start)}
	if err != nil {
		a.observed, a.detail = classify(err)
		a.local = c.SrcAddr
		return a
	}
	a.observed = ObservedOpen
	a.local = addrOf(conn.LocalAddr())
	conn.Close()
	return a
}

func (p *prober) udp(ctx context.Context, c *Check) attempt {
	var laddr *net.UDPAddr
	if c.SrcAddr.IsValid() {
		laddr = &net.UDPAddr{IP: c.SrcAddr.AsSlice()}
	}
	conn, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.DstAddr, c.DstPort)))
	if err != nil {
		obs, detail := classify(err)
		return attempt{observed: obs, detail: detail, local: c.SrcAddr}
	}
	defer conn.Close()
	a := attempt{local: addrOf(conn.LocalAddr())}
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	start := time.Now()
	if _, err := conn.Write(udpPayload(c.DstPort)); err != nil {
		a.observed, a.detail = classify(err)
		a.rtt = time.Since(start)
		return a
	}
	buf := make([]byte, 1500)
	_, err = conn.Read(buf)
	a.rtt = time.Since(start)
	if err != nil {
		a.observed, a.detail = classify(err)
		return a
	}
	a.observed = ObservedOpen
	return a
}

// udpPayload is a request the service usually on port answers: a DNS
// query for the root's NS records, an NTP client request, else one zero
// byte (many services stay silent on it: a UDP port with no reply is
// reported filtered, never open).
func udpPayload(port uint16) []byte {
	switch port {
	case 53, 5353:
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0xfa17, RecursionDesired: true})
		_ = b.StartQuestions()
		_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("."), Type: dnsmessage.TypeNS, Class: dnsmessage.ClassINET})
		msg, _ := b.Finish()
		return msg
	case 123:
		req := make([]byte, 48)
		req[0] = 0x23 // LI 0, version 4, mode 3 (client)
		return req
	}
	return []byte{0}
}

// icmpNetworks are the ways to open an ICMP socket, best first:
// unprivileged ping sockets (net.ipv4.ping_group_range), then raw sockets
// (root or CAP_NET_RAW).
func icmpNetworks(v6 bool) []string {
	if v6 {
		return []string{"udp6", "ip6:ipv6-icmp"}
	}
	return []string{"udp4", "ip4:icmp"}
}

// ICMPAvailable reports whether this process can send ICMP echo requests
// of the address family of a, and why not.
func ICMPAvailable(a netip.Addr) error {
	var errs []error
	for _, network := range icmpNetworks(a.Is6()) {
		conn, err := icmp.ListenPacket(network, "")
		if err == nil {
			conn.Close()
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", network, err))
	}
	return errors.Join(errs...)
}

func (p *prober) echo(ctx context.Context, c *Check) attempt {
	local := ""
	if c.SrcAddr.IsValid() {
		local = c.SrcAddr.String()
	}
	var conn *icmp.PacketConn
	var network string
	var err error
	for _, network = range icmpNetworks(c.DstAddr.Is6()) {
		if conn, err = icmp.ListenPacket(network, local); err == nil {
			break
		}
	}
	if conn == nil {
		return attempt{observed: ObservedError, detail: "no ICMP socket: " + err.Error(), local: c.SrcAddr}
	}
	defer conn.Close()
	raw := network[:2] == "ip"
	var dst net.Addr = &net.UDPAddr{IP: c.DstAddr.AsSlice()}
	if raw {
		dst = &net.IPAddr{IP: c.DstAddr.AsSlice()}
	}
	var typ, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	proto := 1
	if c.DstAddr.Is6() {
		typ, replyType, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	// Ping sockets replace the id with their own port and deliver only
	// their replies; raw sockets see every ICMP packet, so id and seq
	// pick ours out.
	id := os.Getpid() & 0xffff
	seq := int(p.icmpSeq.Add(1) & 0xffff)
	body := &icmp.Echo{ID: id, Seq: seq, Data: []byte("flowaudit probe")}
	msg, err := (&icmp.Message{Type: typ, Body: body}).Marshal(nil)
	if err != nil {
		return attempt{observed: ObservedError, detail: err.Error()}
	}
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	start := time.Now()
	a := attempt{local: c.SrcAddr}
	if _, err := conn.WriteTo(msg, dst); err != nil {
		a.observed, a.detail = classify(err)
		a.rtt = time.Since(start)
		return a
	}
	if la := addrOf(conn.LocalAddr()); la.IsValid() && !la.IsUnspecified() {
		a.local = la
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		a.rtt = time.Since(start)
		if err != nil {
			a.observed, a.detail = classify(err)
			return a
		}
		reply, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		switch b := reply.Body.(type) {
		case *icmp.Echo:
			if reply.Type != replyType || addrOf(peer) != c.DstAddr || b.Seq != seq || (raw && b.ID != id) {
				continue
			}
			a.observed = ObservedOpen
			return a
		case *icmp.DstUnreach:
			if !raw {
				continue
			}
			// Only an unreachable about our own request counts.
			if echoInside(b.Data, proto, id, seq) {
				a.observed, a.detail = ObservedFiltered, "destination unreachable from "+addrOf(peer).String()
				return a
			}
		}
	}
}

// echoInside reports whether the quoted datagram of an ICMP error holds
// our echo request.
func echoInside(quoted []byte, proto, id, seq int) bool {
	hdr := 40
	if proto == 1 {
		if len(quoted) < 20 {
			return false
		}
		hdr = int(quoted[0]&0x0f) * 4
	}
	if len(quoted) < hdr+8 {
		return false
	}
	q := quoted[hdr:]
	return int(q[4])<<8|int(q[5]) == id && int(q[6])<<8|int(q[7]) == seq
}

// classify maps a dial, write or read error to an observation.
func classify(err error) (Observation, string) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ObservedClosed, ""
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ObservedFiltered, ""
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		// Unreachable or prohibited on the path, or a local firewall's
		// reject: the boundary held.
		return ObservedFiltered, err.Error()
	}
	return ObservedError, err.Error()
}

func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	default:
		return netip.Addr{}
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}
