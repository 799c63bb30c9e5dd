package simulate

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

func generate(n int, seed int64, opts ...GeneratorOption) []schemas.Flow {
	g := NewGenerator(seed, append([]GeneratorOption{WithClock(fixedClock(testNow))}, opts...)...)
	flows := make([]schemas.Flow, n)
	for i := range flows {
		g.Next(&flows[i])
	}
	return flows
}

func TestGeneratorDeterministic(t *testing.T) {
	if diff := cmp.Diff(generate(500, 9), generate(500, 9)); diff != "" {
		t.Errorf("same seed, different flows (-first +second):\n%s", diff)
	}
	if cmp.Equal(generate(50, 9), generate(50, 10)) {
		t.Error("seeds 9 and 10 gave the same flows")
	}
}

var allowedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

func allowed(a schemas.Addr) bool {
	for _, p := range allowedPrefixes {
		if p.Contains(a.Netip()) {
			return true
		}
	}
	return false
}

func TestGeneratorInvariants(t *testing.T) {
	nowNs := uint64(testNow.UnixNano())
	for _, tc := range []struct {
		name      string
		opts      []GeneratorOption
		v6Min     int // per 10000 flows
		v6Max     int
		onePacket bool
	}{
		{name: "default", v6Min: 1300, v6Max: 1700},
		{name: "v5", opts: []GeneratorOption{ForProtocol(ProtocolNetFlowV5)}, v6Min: 0, v6Max: 0},
		{name: "sflow", opts: []GeneratorOption{ForProtocol(ProtocolSFlow)}, v6Min: 1300, v6Max: 1700, onePacket: true},
		{name: "all-v6", opts: []GeneratorOption{WithIPv6Share(1)}, v6Min: 10000, v6Max: 10000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v6, ports, protos := 0, map[uint16]bool{}, map[uint8]bool{}
			for i, f := range generate(10000, 3, tc.opts...) {
				is6 := !f.SrcAddr.Is4()
				if is6 {
					v6++
				}
				if f.DstAddr.Is4() == is6 || (f.EtherType == 0x86dd) != is6 {
					t.Fatalf("flow %d mixes families: %+v", i, f)
				}
				if !allowed(f.SrcAddr) || !allowed(f.DstAddr) || !allowed(f.NextHop) {
					t.Fatalf("flow %d outside documentation/private space: %s -> %s via %s", i, f.SrcAddr, f.DstAddr, f.NextHop)
				}
				if f.Packets == 0 || f.Packets > 1<<20 {
					t.Fatalf("flow %d: %d packets", i, f.Packets)
				}
				if tc.onePacket {
					if f.Packets != 1 || f.Bytes < 64 || f.Bytes > 1518 {
						t.Fatalf("flow %d: sampled packet of %d packets, %d bytes; want 1 packet of 64-1518", i, f.Packets, f.Bytes)
					}
				} else {
					minSize := uint64(40)
					if is6 {
						minSize = 60
					}
					if per := f.Bytes / f.Packets; per < minSize || per > 1500 {
						t.Fatalf("flow %d: %d bytes / %d packets out of [%d, 1500]", i, f.Bytes, f.Packets, minSize)
					}
				}
				if f.TimeEnd > nowNs || f.TimeEnd+10e9 < nowNs || f.TimeStart > f.TimeEnd || f.TimeStart%1e6 != 0 || f.TimeEnd%1e6 != 0 {
					t.Fatalf("flow %d: times %d-%d not ms-aligned within 10 s before %d", i, f.TimeStart, f.TimeEnd, nowNs)
				}
				if f.InIf == 0 || f.OutIf == 0 || f.InIf > 48 || f.OutIf > 48 {
					t.Fatalf("flow %d: interfaces %d -> %d", i, f.InIf, f.OutIf)
				}
				if (f.Proto == 6 || f.Proto == 17) && (f.SrcPort < 32768 || f.DstPort == 0) {
					t.Fatalf("flow %d: ports %d -> %d", i, f.SrcPort, f.DstPort)
				}
				if f.Proto != 6 && f.TCPFlags != 0 {
					t.Fatalf("flow %d: TCP flags %#x on protocol %d", i, f.TCPFlags, f.Proto)
				}
				ports[f.DstPort], protos[f.Proto] = true, true
			}
			if v6 < tc.v6Min || v6 > tc.v6Max {
				t.Errorf("%d IPv6 flows of 10000, want %d-%d", v6, tc.v6Min, tc.v6Max)
			}
			for _, p := range []uint16{443, 80, 22, 5432, 3306, 53, 6379, 9092} {
				if tc.name != "all-v6" && !ports[p] {
					t.Errorf("no flow to port %d", p)
				}
			}
			if !protos[6] || !protos[17] || !(protos[1] || protos[58]) {
				t.Errorf("protocol mix %v lacks TCP, UDP or ICMP", protos)
			}
		})
	}
}

func BenchmarkGenerator(b *testing.B) {
	g := NewGenerator(1)
	var f schemas.Flow
	b.ReportAllocs()
	for b.Loop() {
		g.Next(&f)
	}
}
