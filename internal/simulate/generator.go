package simulate

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// DefaultIPv6Share is the fraction of flows a Generator makes IPv6 unless
// told otherwise.
const DefaultIPv6Share = 0.15

// Generator produces a deterministic stream of realistic flows: the same
// seed and options give the same flows (addresses, ports, counters, flags),
// except for timestamps, which are placed within the last few seconds of
// the generator's clock (fix the clock with WithClock for fully
// reproducible output).
//
// Traffic model: clients (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8:2::/48) reach web servers (10.1.0.0/16, 2001:db8:1::/48) on
// 443/80 and everything on 22; web servers call app servers (10.3.0.0/16)
// on 8080/9092/6379; app servers call databases (10.2.0.0/16) on
// 5432/3306; everyone asks DNS (53/udp) and NTP (123/udp); a little ICMP
// echo; and a few web→db flows, which a segmentation policy should flag.
// Source ports are ephemeral (32768-60999). Byte counts are heavy-tailed;
// bytes/packets always lies within [40, 1500] (IPv6: [60, 1500]).
//
// Fields a Generator never fills: SamplingRate (encoders export
// EncoderOptions.SamplingRate), Direction (always 0, ingress).
//
// A Generator is not safe for concurrent use.
type Generator struct {
	rng           *rand.Rand
	now           func() time.Time
	ipv6Share     float64
	packetSamples bool
}

// GeneratorOption configures a Generator.
type GeneratorOption func(*Generator)

// WithIPv6Share sets the fraction of IPv6 flows, clamped to [0, 1].
func WithIPv6Share(share float64) GeneratorOption {
	return func(g *Generator) { g.ipv6Share = math.Min(1, math.Max(0, share)) }
}

// WithClock sets the clock flow timestamps are placed relative to
// (default time.Now).
func WithClock(now func() time.Time) GeneratorOption {
	return func(g *Generator) { g.now = now }
}

// WithPacketSamples makes every flow a single sampled packet, as sFlow
// reports traffic: Packets is 1 and Bytes is the Ethernet frame length
// including the 4-byte FCS (64-1518), which is what the sFlow encoder puts
// in the raw header's frame_length field. TimeStart equals TimeEnd.
func WithPacketSamples() GeneratorOption {
	return func(g *Generator) { g.packetSamples = true }
}

// ForProtocol restricts the generator to what p can carry: IPv4 only for
// NetFlow v5 (it has no IPv6 records) and single sampled packets for sFlow.
// Put it after WithIPv6Share so it wins.
func ForProtocol(p Protocol) GeneratorOption {
	return func(g *Generator) {
		switch p {
		case ProtocolNetFlowV5:
			g.ipv6Share = 0
		case ProtocolSFlow:
			g.packetSamples = true
		}
	}
}

// NewGenerator returns a generator seeded with seed. Without options it
// makes DefaultIPv6Share IPv6 flows, multi-packet flows, and uses
// time.Now.
func NewGenerator(seed int64, opts ...GeneratorOption) *Generator {
	g := &Generator{
		rng:       rand.New(rand.NewPCG(uint64(seed), 0x666c6f7761756474)), // "flowaudt"
		now:       time.Now,
		ipv6Share: DefaultIPv6Share,
	}
	for _, o := range opts {
		o(g)
	}
	return g
}

// service is one kind of traffic in the model.
type service struct {
	weight  int
	proto   uint8 // 6 TCP, 17 UDP, 1 ICMP (58 for IPv6 is chosen at fill time)
	port    uint16
	from    zone
	to      zone
	ipv6    bool // also appears in the IPv6 mix
	meanPkt int  // typical packet size in bytes
}

// zone is a pool of hosts in one subnet.
type zone uint8

const (
	zoneClient zone = iota
	zoneWeb
	zoneApp
	zoneDB
	zoneDNS
	zoneAny // any internal host
)

// services is the traffic mix. Weights are relative.
var services = []service{
	{weight: 30, proto: 6, port: 443, from: zoneClient, to: zoneWeb, ipv6: true, meanPkt: 900},
	{weight: 8, proto: 6, port: 80, from: zoneClient, to: zoneWeb, ipv6: true, meanPkt: 700},
	{weight: 4, proto: 6, port: 22, from: zoneClient, to: zoneAny, ipv6: true, meanPkt: 200},
	{weight: 10, proto: 6, port: 8080, from: zoneWeb, to: zoneApp, ipv6: true, meanPkt: 600},
	{weight: 5, proto: 6, port: 9092, from: zoneApp, to: zoneApp, meanPkt: 1000},
	{weight: 5, proto: 6, port: 6379, from: zoneApp, to: zoneApp, meanPkt: 150},
	{weight: 10, proto: 6, port: 5432, from: zoneApp, to: zoneDB, meanPkt: 400},
	{weight: 4, proto: 6, port: 3306, from: zoneApp, to: zoneDB, meanPkt: 400},
	{weight: 1, proto: 6, port: 5432, from: zoneWeb, to: zoneDB, meanPkt: 400},
	{weight: 12, proto: 17, port: 53, from: zoneAny, to: zoneDNS, ipv6: true, meanPkt: 90},
	{weight: 2, proto: 17, port: 123, from: zoneAny, to: zoneDNS, meanPkt: 76},
	{weight: 3, proto: 1, port: 0, from: zoneAny, to: zoneAny, ipv6: true, meanPkt: 84},
}

var servicesWeight4, servicesWeight6 = func() (int, int) {
	var w4, w6 int
	for _, s := range services {
		w4 += s.weight
		if s.ipv6 {
			w6 += s.weight
		}
	}
	return w4, w6
}()

// Next overwrites *f with the next flow.
func (g *Generator) Next(f *schemas.Flow) {
	*f = schemas.Flow{}
	r := g.rng
	v6 := g.ipv6Share > 0 && r.Float64() < g.ipv6Share

	svc := g.pickService(v6)
	proto := svc.proto
	if proto == 1 && v6 {
		proto = 58
	}
	f.Proto = proto
	f.SrcAddr = g.host(svc.from, v6)
	f.DstAddr = g.host(svc.to, v6)
	if proto == 6 || proto == 17 {
		f.SrcPort = uint16(32768 + r.IntN(61000-32768))
		f.DstPort = svc.port
	}
	if v6 {
		f.EtherType = 0x86dd
		f.NextHop = schemas.AddrFromNetip(addr6(0xff, 0, 1))
	} else {
		f.EtherType = 0x0800
	}

	// Interfaces: clients arrive on uplinks 1-4, internal zones sit on
	// their own access ports.
	f.InIf = g.ifIndex(svc.from)
	f.OutIf = g.ifIndex(svc.to)
	if !v6 {
		f.NextHop = schemas.AddrFrom4([4]byte{10, 255, byte(f.OutIf >> 8), byte(f.OutIf)})
	}
	if svc.from == zoneClient {
		f.SrcAS = 64496 + uint32(r.IntN(16))
	}
	switch r.IntN(10) {
	case 0:
		f.IPTos = 0xb8 // EF
	case 1:
		f.IPTos = 0x28 // AF11
	}

	minPkt := 40
	if v6 {
		minPkt = 60
	}
	if g.packetSamples {
		g.fillPacket(f, svc, minPkt)
	} else {
		g.fillFlow(f, svc, minPkt)
	}
}

// fillFlow sets counters, flags and times of a multi-packet flow.
func (g *Generator) fillFlow(f *schemas.Flow, svc service, minPkt int) {
	r := g.rng
	// Packets: Pareto-distributed (alpha 1.1), capped at 2^20 so v5's
	// 32-bit octet counter never overflows (2^20 * 1500 < 2^32).
	packets := uint64(1 / math.Pow(1-r.Float64(), 1/1.1))
	packets = max(1, min(packets, 1<<20))
	size := svc.meanPkt/2 + r.IntN(svc.meanPkt+1)
	size = max(minPkt, min(size, 1500))
	f.Packets = packets
	f.Bytes = packets * uint64(size)
	if f.Proto == 6 {
		switch x := r.IntN(100); {
		case x < 3: // unanswered SYN
			f.Packets, f.TCPFlags = 1, 0x02
			f.Bytes = uint64(minPkt + 4)
		case x < 6: // reset
			f.TCPFlags = 0x14
		case x < 70: // complete connection
			f.TCPFlags = 0x1b
		default: // long-lived, still open
			f.TCPFlags = 0x18
		}
	}
	g.fillTimes(f, time.Duration(min(f.Packets, 8000))*time.Millisecond)
}

// fillPacket sets counters and flags of one sampled packet.
func (g *Generator) fillPacket(f *schemas.Flow, svc service, minPkt int) {
	r := g.rng
	// IP length at least 46 so the frame (14 + IP + 4 FCS) is never
	// padded up to Ethernet's 64-byte minimum: frame = IP length + 18.
	ipLen := svc.meanPkt/2 + r.IntN(svc.meanPkt+1)
	if r.IntN(4) == 0 {
		ipLen = 1500 // full-size segments are common in sampled traffic
	}
	ipLen = max(minPkt, 46, min(ipLen, 1500))
	f.Packets = 1
	f.Bytes = uint64(ipLen + 18)
	if f.Proto == 6 {
		switch x := r.IntN(100); {
		case x < 3:
			f.TCPFlags = 0x02
		case x < 60:
			f.TCPFlags = 0x10
		default:
			f.TCPFlags = 0x18
		}
	}
	g.fillTimes(f, 0)
}

// fillTimes places the flow's end within the last 2 s and its start
// dur (at most 8 s) earlier, at millisecond precision, which every
// protocol carries exactly.
func (g *Generator) fillTimes(f *schemas.Flow, dur time.Duration) {
	nowMs := g.now().UnixMilli()
	endMs := nowMs - int64(g.rng.IntN(2000))
	startMs := endMs - dur.Milliseconds()
	f.TimeEnd = uint64(endMs) * 1e6
	f.TimeStart = uint64(startMs) * 1e6
}

func (g *Generator) pickService(v6 bool) service {
	total := servicesWeight4
	if v6 {
		total = servicesWeight6
	}
	x := g.rng.IntN(total)
	for _, s := range services {
		if v6 && !s.ipv6 {
			continue
		}
		if x < s.weight {
			return s
		}
		x -= s.weight
	}
	return services[0]
}

// host picks an address in z. Hosts are drawn with a skew (square of a
// uniform) so a few hosts are busy and many are quiet, as in real traffic.
func (g *Generator) host(z zone, v6 bool) schemas.Addr {
	r := g.rng
	skewed := func(n int) int { u := r.Float64(); return int(u * u * float64(n)) }
	if z == zoneAny {
		z = []zone{zoneWeb, zoneApp, zoneDB}[r.IntN(3)]
	}
	if v6 {
		switch z {
		case zoneClient:
			return schemas.AddrFromNetip(addr6(2, uint16(r.IntN(16)), uint16(1+r.IntN(4000))))
		case zoneDNS:
			return schemas.AddrFromNetip(addr6(1, 0x53, 0x53))
		default: // every internal IPv6 host sits in 2001:db8:1::/48
			return schemas.AddrFromNetip(addr6(1, uint16(z), uint16(1+skewed(200))))
		}
	}
	switch z {
	case zoneClient:
		nets := [][3]byte{{192, 0, 2}, {198, 51, 100}, {203, 0, 113}}
		n := nets[r.IntN(len(nets))]
		return schemas.AddrFrom4([4]byte{n[0], n[1], n[2], byte(1 + r.IntN(254))})
	case zoneWeb:
		h := skewed(400)
		return schemas.AddrFrom4([4]byte{10, 1, byte(h / 250), byte(10 + h%250)})
	case zoneApp:
		h := skewed(300)
		return schemas.AddrFrom4([4]byte{10, 3, byte(h / 250), byte(10 + h%250)})
	case zoneDB:
		h := skewed(20)
		return schemas.AddrFrom4([4]byte{10, 2, 0, byte(10 + h)})
	case zoneDNS:
		return schemas.AddrFrom4([4]byte{10, 3, 53, byte(53 + r.IntN(2))})
	}
	return schemas.Addr{}
}

// ifIndex maps a zone to an interface index (1-48).
func (g *Generator) ifIndex(z zone) uint32 {
	switch z {
	case zoneClient:
		return 1 + uint32(g.rng.IntN(4))
	case zoneWeb:
		return 10 + uint32(g.rng.IntN(8))
	case zoneApp:
		return 20 + uint32(g.rng.IntN(8))
	case zoneDB:
		return 30 + uint32(g.rng.IntN(4))
	case zoneDNS:
		return 40
	}
	return 48
}
