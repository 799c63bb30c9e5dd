// Package enforce translates a flowaudit policy into the rules enforcement
// points load — an nftables ruleset for a router, Kubernetes
// NetworkPolicies, Cilium CiliumNetworkPolicies — and Kubernetes
// NetworkPolicies back into a flowaudit policy, so that the policy an
// operator enforces can be audited as it is.
//
// Every translation is a pure function of its input and deterministic:
// the same policy gives byte-identical output. What a target cannot
// express (identities at L3/L4, staged rules) is left out and reported in
// the returned notes, never silently widened or narrowed.
package enforce

import (
	"net/netip"
	"sort"

	"go4.org/netipx"

	"github.com/flowaudit/flowaudit/policy"
)

// regions gives the addresses each segment and each inventory entry
// really holds once longest-prefix matching is applied: a segment's CIDRs
// minus the more specific CIDRs of other segments nested in them (and
// likewise for inventory entries among themselves). Enforcement points
// match sets, not longest prefixes, so sets must be disjoint.
type regions struct {
	seg     map[string]*netipx.IPSet // by segment name; External not included
	all     *netipx.IPSet            // every declared segment address
	inv     []*netipx.IPSet          // by inventory index
	segName []string                 // declared order
}

type owned struct {
	pfx   netip.Prefix
	owner int
}

// carve builds one disjoint set per owner from prefixes, the longest
// prefix of an address deciding its owner.
func carve(n int, prefixes []owned) []*netipx.IPSet {
	sort.SliceStable(prefixes, func(i, j int) bool { return prefixes[i].pfx.Bits() < prefixes[j].pfx.Bits() })
	b := make([]netipx.IPSetBuilder, n)
	for _, o := range prefixes {
		for i := range b {
			if i != o.owner {
				b[i].RemovePrefix(o.pfx)
			}
		}
		b[o.owner].AddPrefix(o.pfx)
	}
	out := make([]*netipx.IPSet, n)
	for i := range b {
		s, _ := b[i].IPSet() // only invalid prefixes give errors; Parse rejects them
		out[i] = s
	}
	return out
}

func newRegions(p *policy.Policy) *regions {
	var segPfx []owned
	var all netipx.IPSetBuilder
	for i, s := range p.Segments {
		for _, c := range s.CIDRs {
			segPfx = append(segPfx, owned{c, i})
			all.AddPrefix(c)
		}
	}
	r := &regions{seg: map[string]*netipx.IPSet{}}
	for i, set := range carve(len(p.Segments), segPfx) {
		r.seg[p.Segments[i].Name] = set
		r.segName = append(r.segName, p.Segments[i].Name)
	}
	r.all, _ = all.IPSet()
	var invPfx []owned
	for i, e := range p.Inventory {
		invPfx = append(invPfx, owned{e.CIDR, i})
	}
	r.inv = carve(len(p.Inventory), invPfx)
	return r
}

// selector returns the addresses a selector picks: the regions of the
// inventory entries carrying its labels, within its segment's region (or
// within the declared segments and External when it names none).
func (r *regions) selector(p *policy.Policy, sel policy.Selector) *netipx.IPSet {
	var b netipx.IPSetBuilder
	for i, e := range p.Inventory {
		if labelsMatch(e.Labels, sel.Labels) {
			b.AddSet(r.inv[i])
		}
	}
	if sel.Segment != "" {
		if sel.Segment == policy.External {
			b.RemoveSet(r.all)
		} else if seg := r.seg[sel.Segment]; seg != nil {
			b.Intersect(seg)
		}
	}
	s, _ := b.IPSet()
	return s
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// split returns a set's prefixes by family, in address order.
func split(s *netipx.IPSet) (v4, v6 []netip.Prefix) {
	if s == nil {
		return nil, nil
	}
	for _, p := range s.Prefixes() {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}
