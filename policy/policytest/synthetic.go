// Package policytest builds large synthetic policies and addresses for
// benchmarks and tests of the policy matcher and the enricher.
package policytest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

// Synthetic is a generated policy with the addresses it covers.
type Synthetic struct {
	Policy *policy.Policy
	// Hosts are addresses inside segment CIDRs (some inside inventory
	// CIDRs), IPv4 and IPv6 mixed.
	Hosts []schemas.Addr
}

// Options size a synthetic policy.
type Options struct {
	Segments  int     // number of segments (default 100)
	CIDRs     int     // segment CIDRs in total (default 10000)
	Inventory int     // inventory entries, host prefixes (default 2000)
	Rules     int     // allow rules (default 300)
	IPv6Share float64 // share of IPv6 CIDRs (default 0.4)
	Seed      uint64
}

// New generates a policy: segment CIDRs nested three levels deep (IPv4
// /16 ⊃ /24 ⊃ /28, IPv6 /48 ⊃ /64 ⊃ /112), each level owned by a random
// segment, host-prefix inventory entries inside them, and random rules
// between segments on common ports.
func New(o Options) *Synthetic {
	if o.Segments == 0 {
		o.Segments = 100
	}
	if o.CIDRs == 0 {
		o.CIDRs = 10000
	}
	if o.Inventory == 0 {
		o.Inventory = 2000
	}
	if o.Rules == 0 {
		o.Rules = 300
	}
	if o.IPv6Share == 0 {
		o.IPv6Share = 0.4
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	p := &policy.Policy{Default: policy.DefaultDeny}
	for i := 0; i < o.Segments; i++ {
		p.Segments = append(p.Segments, policy.Segment{Name: fmt.Sprintf("seg%03d", i), Tags: []string{fmt.Sprintf("tier%d", i%3)}})
	}
	seen := map[netip.Prefix]bool{}
	var all []netip.Prefix
	add := func(pfx netip.Prefix) bool {
		if seen[pfx] {
			return false
		}
		seen[pfx] = true
		s := &p.Segments[r.IntN(o.Segments)]
		s.CIDRs = append(s.CIDRs, pfx)
		all = append(all, pfx)
		return true
	}
	n6 := int(float64(o.CIDRs) * o.IPv6Share)
	n4 := o.CIDRs - n6
	// Level sizes: 5% top, 75% middle, 20% bottom.
	gen := func(n int, v6 bool) {
		top := max(1, n/20)
		mid := n * 3 / 4
		var tops, mids []netip.Prefix
		for len(tops) < top {
			var pfx netip.Prefix
			if v6 {
				pfx = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(r.IntN(256)), byte(r.IntN(256))}), 48)
			} else {
				pfx = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(10 + r.IntN(4)), byte(r.IntN(256)), 0, 0}), 16)
			}
			if add(pfx) {
				tops = append(tops, pfx)
			}
		}
		for tries := 0; len(mids) < mid && tries < 50*n; tries++ {
			b := tops[r.IntN(len(tops))].Addr().AsSlice()
			var pfx netip.Prefix
			if v6 {
				b[6], b[7] = byte(r.IntN(256)), byte(r.IntN(256))
				pfx = netip.PrefixFrom(netip.AddrFrom16([16]byte(b)), 64)
			} else {
				b[2] = byte(r.IntN(256))
				pfx = netip.PrefixFrom(netip.AddrFrom4([4]byte(b)), 24)
			}
			if add(pfx) {
				mids = append(mids, pfx)
			}
		}
		for tries, done := 0, 0; done < n-top-len(mids) && tries < 50*n; tries++ {
			b := mids[r.IntN(len(mids))].Addr().AsSlice()
			var pfx netip.Prefix
			if v6 {
				b[12], b[13] = byte(r.IntN(256)), byte(r.IntN(256))
				pfx = netip.PrefixFrom(netip.AddrFrom16([16]byte(b)), 112)
			} else {
				b[3] = byte(r.IntN(16) << 4)
				pfx = netip.PrefixFrom(netip.AddrFrom4([4]byte(b)), 28)
			}
			if add(pfx) {
				done++
			}
		}
	}
	gen(n4, false)
	gen(n6, true)

	s := &Synthetic{Policy: p}
	// Hosts: random addresses inside random prefixes.
	for len(s.Hosts) < 4*o.Inventory {
		s.Hosts = append(s.Hosts, randomIn(r, all[r.IntN(len(all))]))
	}
	inv := map[netip.Prefix]bool{}
	for i := 0; len(p.Inventory) < o.Inventory && i < len(s.Hosts); i++ {
		a := s.Hosts[i].Netip()
		pfx := netip.PrefixFrom(a, a.BitLen())
		if inv[pfx] {
			continue
		}
		inv[pfx] = true
		p.Inventory = append(p.Inventory, policy.InventoryEntry{
			CIDR:           pfx,
			Workload:       fmt.Sprintf("wl-%d", i),
			Owner:          fmt.Sprintf("team-%d", i%17),
			ServiceAccount: fmt.Sprintf("svc-%d", i%101),
		})
	}
	ports := []string{"22/tcp", "53/udp", "80/tcp", "443/tcp", "5432/tcp", "3306/tcp", "6379/tcp", "8000-8100/tcp", "icmp"}
	for i := 0; i < o.Rules; i++ {
		ps, _ := policy.ParsePortSpec(ports[r.IntN(len(ports))])
		rule := policy.Rule{
			Name:  fmt.Sprintf("rule-%d", i),
			From:  []string{p.Segments[r.IntN(o.Segments)].Name},
			To:    []string{p.Segments[r.IntN(o.Segments)].Name},
			Ports: []policy.PortSpec{ps},
		}
		if i%10 == 0 {
			rule.Identities = []string{"alice", "svc-7"}
		}
		p.Rules = append(p.Rules, rule)
	}
	return s
}

func randomIn(r *rand.Rand, pfx netip.Prefix) schemas.Addr {
	b := pfx.Addr().As16()
	bits := pfx.Bits()
	if pfx.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		if r.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	if pfx.Addr().Is4() {
		b[10], b[11] = 0xff, 0xff
	}
	return schemas.Addr(b)
}

// RandomAddr returns an address inside a random segment CIDR of s, or, with
// probability external, a random public IPv4 or IPv6 address.
func (s *Synthetic) RandomAddr(r *rand.Rand, external float64) schemas.Addr {
	if r.Float64() < external {
		if r.IntN(2) == 0 {
			return schemas.AddrFrom4([4]byte{byte(100 + r.IntN(100)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		}
		var a schemas.Addr
		a[0], a[1] = 0x2a, 0x00
		for i := 2; i < 16; i++ {
			a[i] = byte(r.IntN(256))
		}
		return a
	}
	seg := &s.Policy.Segments[r.IntN(len(s.Policy.Segments))]
	for len(seg.CIDRs) == 0 {
		seg = &s.Policy.Segments[r.IntN(len(s.Policy.Segments))]
	}
	return randomIn(r, seg.CIDRs[r.IntN(len(seg.CIDRs))])
}
