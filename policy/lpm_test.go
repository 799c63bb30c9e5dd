package policy_test

import (
	"math/rand/v2"
	"testing"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/policy/policytest"
	"github.com/flowaudit/flowaudit/schemas"
)

// BenchmarkLookup measures Matcher.Lookup (bart's Fast table) and the
// flattened range table (lpm_range_test.go) on the same union of 10k
// segment CIDRs (IPv4 and IPv6, nested three deep) and 2k inventory host
// prefixes; addresses are 90% inside segments, 10% external, IPv4 and IPv6
// mixed. Run with -cpu=1.
func BenchmarkLookup(b *testing.B) {
	syn := policytest.New(policytest.Options{Seed: 1})
	m, err := policy.Compile(syn.Policy)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	addrs := make([]schemas.Addr, 1<<16)
	for i := range addrs {
		addrs[i] = syn.RandomAddr(r, 0.1)
	}
	for _, fam := range []struct {
		name string
		keep func(schemas.Addr) bool
	}{
		{"mixed", func(schemas.Addr) bool { return true }},
		{"v4", schemas.Addr.Is4},
		{"v6", func(a schemas.Addr) bool { return !a.Is4() }},
	} {
		var as []schemas.Addr
		for _, a := range addrs {
			if fam.keep(a) {
				as = append(as, a)
			}
		}
		n := 1
		for n*2 <= len(as) {
			n *= 2
		}
		mask := n - 1
		b.Run("bart/"+fam.name, func(b *testing.B) {
			b.ReportAllocs()
			var sink *policy.Endpoint
			for i := 0; b.Loop(); i++ {
				sink = m.Lookup(as[i&mask])
			}
			_ = sink
		})
		b.Run("range/"+fam.name, func(b *testing.B) {
			rt := policy.NewRangeLookup(m)
			b.ReportAllocs()
			var sink *policy.Endpoint
			for i := 0; b.Loop(); i++ {
				sink = rt.Lookup(as[i&mask])
			}
			_ = sink
		})
	}
}
