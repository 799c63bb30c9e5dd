package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

func TestDecideServiceSide(t *testing.T) {
	type result struct {
		Side schemas.ServiceSide
		Port uint16
	}
	dst := func(p uint16) result { return result{schemas.ServiceDst, p} }
	src := func(p uint16) result { return result{schemas.ServiceSrc, p} }
	unknown := result{}
	tests := []struct {
		name string
		q    ServiceQuery
		want result
	}{
		{"client to https", ServiceQuery{SrcPort: 51234, DstPort: 443, Proto: 6}, dst(443)},
		{"https reply", ServiceQuery{SrcPort: 443, DstPort: 51234, Proto: 6}, src(443)},
		{"postgres from a Linux ephemeral port", ServiceQuery{SrcPort: 40000, DstPort: 5432, Proto: 6}, dst(5432)},
		{"postgres reply", ServiceQuery{SrcPort: 5432, DstPort: 40000, Proto: 6}, src(5432)},
		{"reply to a Windows ephemeral port", ServiceQuery{SrcPort: 3389, DstPort: 61000, Proto: 6}, src(3389)},
		{"dns query", ServiceQuery{SrcPort: 33333, DstPort: 53, Proto: 17}, dst(53)},
		{"dns reply", ServiceQuery{SrcPort: 53, DstPort: 33333, Proto: 17}, src(53)},
		{"dns server to server, equal ports", ServiceQuery{SrcPort: 53, DstPort: 53, Proto: 17}, dst(53)},
		{"ntp symmetric", ServiceQuery{SrcPort: 123, DstPort: 123, Proto: 17}, dst(123)},
		{"dhcp server answers the client port", ServiceQuery{SrcPort: 67, DstPort: 68, Proto: 17}, src(67)},
		{"nfs client from a reserved port", ServiceQuery{SrcPort: 1023, DstPort: 2049, Proto: 6}, dst(2049)},
		{"nfs reply to a reserved port", ServiceQuery{SrcPort: 2049, DstPort: 1023, Proto: 6}, src(2049)},
		{"well-known unlisted port against registered", ServiceQuery{SrcPort: 20000, DstPort: 702, Proto: 6}, dst(702)},
		{"registered against ephemeral", ServiceQuery{SrcPort: 50001, DstPort: 12345, Proto: 6}, dst(12345)},
		{"registered reply to ephemeral", ServiceQuery{SrcPort: 12345, DstPort: 50001, Proto: 6}, src(12345)},
		{"two registered ports: the lower", ServiceQuery{SrcPort: 20001, DstPort: 12345, Proto: 6}, dst(12345)},
		{"two registered ports, reply: the lower", ServiceQuery{SrcPort: 12345, DstPort: 20001, Proto: 6}, src(12345)},
		{"two known services: the lower", ServiceQuery{SrcPort: 9090, DstPort: 8080, Proto: 6}, dst(8080)},
		{"both ephemeral, no history", ServiceQuery{SrcPort: 50000, DstPort: 40000, Proto: 6}, unknown},
		{"both ephemeral, equal", ServiceQuery{SrcPort: 50000, DstPort: 50000, Proto: 17}, dst(50000)},
		{"both ephemeral, destination listens (fan-in)", ServiceQuery{SrcPort: 50000, DstPort: 40000, Proto: 6, DstListens: true}, dst(40000)},
		{"both ephemeral, source listens (reverse flow)", ServiceQuery{SrcPort: 40000, DstPort: 50000, Proto: 6, SrcListens: true}, src(40000)},
		{"both listen: ports decide", ServiceQuery{SrcPort: 50000, DstPort: 40000, Proto: 6, SrcListens: true, DstListens: true}, unknown},
		{"history beats weak port evidence", ServiceQuery{SrcPort: 12345, DstPort: 50001, Proto: 6, DstListens: true}, dst(50001)},
		{"history does not beat a well-known port", ServiceQuery{SrcPort: 443, DstPort: 50001, Proto: 6, DstListens: true}, src(443)},
		{"SYN without ACK from the client", ServiceQuery{SrcPort: 50000, DstPort: 40000, Proto: 6, TCPFlags: 0x02}, dst(40000)},
		{"a SYN from a service port does not beat the port", ServiceQuery{SrcPort: 443, DstPort: 50000, Proto: 6, TCPFlags: 0x02}, src(443)},
		{"SYN between two registered ports", ServiceQuery{SrcPort: 12345, DstPort: 20001, Proto: 6, TCPFlags: 0x02}, dst(20001)},
		{"SYN+ACK alone from the server", ServiceQuery{SrcPort: 40000, DstPort: 50000, Proto: 6, TCPFlags: 0x12}, src(40000)},
		{"whole connection flags say nothing", ServiceQuery{SrcPort: 443, DstPort: 50000, Proto: 6, TCPFlags: 0x1b}, src(443)},
		{"flags ignored for udp", ServiceQuery{SrcPort: 53, DstPort: 50000, Proto: 17, TCPFlags: 0x02}, src(53)},
		{"port 0 on one end", ServiceQuery{SrcPort: 0, DstPort: 80, Proto: 6}, dst(80)},
		{"no ports at all", ServiceQuery{Proto: 17}, unknown},
		{"icmp echo request", ServiceQuery{DstPort: 8 << 8, Proto: 1}, dst(0)},
		{"icmp echo reply or no type exported", ServiceQuery{DstPort: 0, Proto: 1}, unknown},
		{"icmp timestamp reply", ServiceQuery{DstPort: 14 << 8, Proto: 1}, src(0)},
		{"icmp unreachable", ServiceQuery{DstPort: 3<<8 | 3, Proto: 1}, unknown},
		{"icmpv6 echo request", ServiceQuery{DstPort: 128 << 8, Proto: 58}, dst(0)},
		{"icmpv6 echo reply", ServiceQuery{DstPort: 129 << 8, Proto: 58}, src(0)},
		{"icmpv6 neighbour solicitation", ServiceQuery{DstPort: 135 << 8, Proto: 58}, unknown},
		{"gre", ServiceQuery{SrcPort: 1, DstPort: 2, Proto: 47}, unknown},
		{"sctp", ServiceQuery{SrcPort: 40000, DstPort: 3868, Proto: 132}, dst(3868)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			side, port := DecideServiceSide(&q)
			if diff := cmp.Diff(result{side, port}, tt.want); diff != "" {
				t.Errorf("DecideServiceSide(%+v) (-got +want):\n%s", tt.q, diff)
			}
		})
	}
}

// TestServiceSideReverse: a flow and its reverse agree on the server
// whenever the ports decide (never both "I am the server").
func TestServiceSideReverse(t *testing.T) {
	ports := []uint16{0, 22, 53, 80, 123, 443, 702, 1023, 2049, 5432, 8080, 9090, 12345, 20001, 32768, 40000, 50001, 61000}
	for _, a := range ports {
		for _, b := range ports {
			if a == b {
				continue
			}
			fwd := ServiceQuery{SrcPort: a, DstPort: b, Proto: 6}
			rev := ServiceQuery{SrcPort: b, DstPort: a, Proto: 6}
			s1, p1 := DecideServiceSide(&fwd)
			s2, p2 := DecideServiceSide(&rev)
			if s1 == schemas.ServiceUnknown || s2 == schemas.ServiceUnknown {
				if s1 != s2 {
					t.Errorf("%d->%d: %v, reverse %v", a, b, s1, s2)
				}
				continue
			}
			if s1 == s2 || p1 != p2 {
				t.Errorf("%d->%d: side %v port %d, reverse side %v port %d", a, b, s1, p1, s2, p2)
			}
		}
	}
}

func TestPortsDecide(t *testing.T) {
	for _, tt := range []struct {
		q    ServiceQuery
		want bool
	}{
		{ServiceQuery{SrcPort: 50000, DstPort: 443, Proto: 6}, true},
		{ServiceQuery{SrcPort: 50000, DstPort: 12345, Proto: 6}, false},
		{ServiceQuery{SrcPort: 53, DstPort: 53, Proto: 17}, false},
		{ServiceQuery{SrcPort: 50000, DstPort: 40000, Proto: 6}, false},
		{ServiceQuery{DstPort: 8 << 8, Proto: 1}, false},
	} {
		if got := PortsDecide(&tt.q); got != tt.want {
			t.Errorf("PortsDecide(%+v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}
