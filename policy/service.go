package policy

import "github.com/flowaudit/flowaudit/schemas"

// ServiceQuery is what DecideServiceSide looks at: one flow's ports,
// protocol and TCP flags, plus what the caller remembers of its two ends.
// It holds nothing of the policy: the service side is decided the same
// under any policy, so that replies and ephemeral client ports never
// become edges or rules.
type ServiceQuery struct {
	SrcPort, DstPort uint16
	Proto            uint8
	// TCPFlags is the OR of the flow's TCP flags as exported; 0 when the
	// exporter did not export them (then they say nothing).
	TCPFlags uint8
	// SrcListens and DstListens say that the caller has seen that end
	// (address, port, protocol) accept connections recently: a SYN without
	// ACK reached it, or many distinct peers talked to it (fan-in). Since
	// both directions of a connection share their ends, the reverse flow
	// of a decided connection is decided the same way. False when unknown.
	SrcListens, DstListens bool
}

// TCP flag bits of a flow record's tcp_flags.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// Port ranks, from the least to the most likely to be a service.
const (
	rankEphemeral  = 0 // >= EphemeralServicePortMin: a client's port
	rankRegistered = 1 // 1024..32767, not a known service
	rankWellKnown  = 2 // 1..1023, not a known service
	rankService    = 3 // a port known to carry a service (serviceBits)
)

// EphemeralServicePortMin is the lowest port DecideServiceSide takes for a
// client's ephemeral port: Linux allocates them from 32768 (to 60999), the
// IANA range and Windows from 49152. Services listening above it are
// found by their history (ServiceQuery.SrcListens/DstListens) only.
const EphemeralServicePortMin = 32768

// knownServicePorts are ports that carry a service whichever side of 1024
// they are on: well-known services, databases, brokers, orchestration and
// monitoring. They outrank other ports, so an NFS client's reserved port
// (< 1024) to 2049 still makes 2049 the service.
var knownServicePorts = []uint16{
	20, 21, 22, 23, 25, 53, 67, 69, 80, 88, 110, 111, 119, 123, 135, 137, 138, 139, 143, 161, 162,
	179, 389, 443, 445, 464, 465, 500, 514, 515, 587, 593, 631, 636, 853, 873, 989, 990, 993, 995,
	1080, 1194, 1433, 1434, 1521, 1701, 1723, 1812, 1813, 1883, 2049, 2055, 2181, 2375, 2376, 2379,
	2380, 3000, 3268, 3269, 3306, 3389, 3478, 4369, 4443, 4500, 4739, 5000, 5044, 5060, 5061, 5222,
	5353, 5432, 5514, 5601, 5671, 5672, 5900, 5984, 5985, 5986, 6343, 6379, 6443, 6514, 7000, 7001,
	7199, 8000, 8008, 8080, 8081, 8088, 8123, 8200, 8443, 8500, 8883, 8888, 9000, 9042, 9090, 9092,
	9093, 9100, 9200, 9300, 9411, 9418, 9443, 9464, 10250, 11211, 15672, 27017, 27018,
}

// serviceBits is knownServicePorts as a bitmap, for a branch-free lookup.
var serviceBits = func() (b [65536 / 64]uint64) {
	for _, p := range knownServicePorts {
		b[p/64] |= 1 << (p % 64)
	}
	return b
}()

// PortRank ranks a port by how likely it is to be a service: 3 a known
// service port, 2 another well-known port (1-1023), 1 another registered
// port (1024-32767), 0 an ephemeral port (>= 32768) or port 0.
func PortRank(p uint16) int {
	switch {
	case serviceBits[p/64]&(1<<(p%64)) != 0:
		return rankService
	case p == 0 || p >= EphemeralServicePortMin:
		return rankEphemeral
	case p < 1024:
		return rankWellKnown
	}
	return rankRegistered
}

// HasPorts reports whether the protocol's flows carry ports: TCP, UDP,
// DCCP, SCTP and UDP-Lite.
func HasPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 33, 132, 136:
		return true
	}
	return false
}

// PortsDecide reports whether the ports alone decide q's service side
// strongly (a known service or well-known port against a lesser one), so
// that a caller need not consult its history of the ends. It is false for
// protocols without ports.
func PortsDecide(q *ServiceQuery) bool {
	if !HasPorts(q.Proto) {
		return false
	}
	s, d := PortRank(q.SrcPort), PortRank(q.DstPort)
	return s != d && max(s, d) >= rankWellKnown
}

// DecideServiceSide says which end of a flow offers the service and that
// end's port (0 when unknown or for protocols without ports). The evidence,
// strongest first:
//
//  1. ICMP and ICMPv6 (no ports; the type is the high byte of DstPort, as
//     NetFlow encodes it): echo, timestamp, information and address-mask
//     requests go to the server (ServiceDst), their replies come from it
//     (ServiceSrc); error messages are ServiceUnknown, and so is an ICMP
//     echo reply (type 0 code 0 is a zero DstPort, which is also what
//     exporters that report no ICMP type send). Other protocols without
//     ports: ServiceUnknown.
//  2. Strong port evidence: a known service port or another well-known
//     port (< 1024) against a lesser port serves (PortRank). It comes
//     before the flags: exporters report flags of sampled packets and of
//     partial flows, and a SYN from a service port to an ephemeral one is
//     rarer than flags that mislead.
//  3. TCP flags, when exported: SYN without ACK comes from the client
//     (ServiceDst); SYN+ACK alone comes from the server (ServiceSrc).
//     Flags OR-ed over a whole connection (SYN and ACK both set) say
//     nothing.
//  4. History of the ends (ServiceQuery.SrcListens/DstListens): the end
//     seen accepting connections serves.
//  5. Weak port evidence: a registered port (1024-32767) against an
//     ephemeral one (>= 32768) serves; between two ports of the same rank
//     the lower serves; equal ports (DNS, NTP, IKE between servers) are
//     taken as client (source) to server (destination), since either end
//     serves.
//  6. Both ports ephemeral with no history: ServiceUnknown.
func DecideServiceSide(q *ServiceQuery) (schemas.ServiceSide, uint16) {
	switch q.Proto {
	case ProtoICMP:
		switch q.DstPort >> 8 {
		case 8, 13, 15, 17:
			return schemas.ServiceDst, 0
		case 14, 16, 18:
			return schemas.ServiceSrc, 0
		}
		// An echo reply is type 0 code 0, a DstPort of 0: what exporters
		// that do not report ICMP types send for every ICMP flow, so it
		// says nothing.
		return schemas.ServiceUnknown, 0
	case ProtoICMPv6:
		switch q.DstPort >> 8 {
		case 128:
			return schemas.ServiceDst, 0
		case 129:
			return schemas.ServiceSrc, 0
		}
		return schemas.ServiceUnknown, 0
	}
	if !HasPorts(q.Proto) || (q.SrcPort == 0 && q.DstPort == 0) {
		return schemas.ServiceUnknown, 0
	}
	dst := func() (schemas.ServiceSide, uint16) { return schemas.ServiceDst, q.DstPort }
	src := func() (schemas.ServiceSide, uint16) { return schemas.ServiceSrc, q.SrcPort }
	s, d := PortRank(q.SrcPort), PortRank(q.DstPort)
	if s != d && max(s, d) >= rankWellKnown {
		if d > s {
			return dst()
		}
		return src()
	}
	if q.Proto == ProtoTCP && q.TCPFlags != 0 {
		switch {
		case q.TCPFlags&tcpSYN != 0 && q.TCPFlags&tcpACK == 0:
			return dst()
		case q.TCPFlags&(tcpSYN|tcpACK) == tcpSYN|tcpACK && q.TCPFlags&^(tcpSYN|tcpACK) == 0:
			return src()
		}
	}
	if q.DstListens != q.SrcListens {
		if q.DstListens {
			return dst()
		}
		return src()
	}
	switch {
	case q.SrcPort == q.DstPort:
		return dst()
	case d > s:
		return dst()
	case s > d:
		return src()
	case s == rankEphemeral:
		return schemas.ServiceUnknown, 0
	case q.DstPort < q.SrcPort:
		return dst()
	}
	return src()
}
