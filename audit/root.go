// Package audit turns observed traffic into the answers a segmentation
// audit needs (DESIGN.md, "The audit layer"): least-privilege rule
// recommendations and what-if simulations of draft policies. Every function
// here is pure: rows from query/ and a policy in, one result type out,
// sorted by a documented key so re-runs over the same data are
// byte-identical. Rendering (tables, JSON, YAML) lives in render.go; the
// command line only composes.
package audit

import (
	"net/netip"
	"sort"
	"time"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

// Count is a value with its flow count, in evidence lists.
type Count struct {
	Value string `json:"value"`
	Flows uint64 `json:"flows"`
}

// counter accumulates flows per value.
type counter map[string]uint64

func (c counter) add(v string, n uint64) { c[v] += n }

// top returns the n values with the most flows (ties by value), n <= 0 for
// all.
func (c counter) top(n int) []Count {
	out := make([]Count, 0, len(c))
	for v, f := range c {
		out = append(out, Count{Value: v, Flows: f})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Flows != out[j].Flows {
			return out[i].Flows > out[j].Flows
		}
		return out[i].Value < out[j].Value
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

func addr(a netip.Addr) schemas.Addr { return schemas.AddrFromNetip(a) }

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// protoSpec is the written policy form of a whole protocol ("tcp",
// "icmp") and whether the protocol has ports; ok is false for protocols a
// policy cannot name.
func protoSpec(proto uint8) (name string, ports, ok bool) {
	switch proto {
	case policy.ProtoTCP:
		return "tcp", true, true
	case policy.ProtoUDP:
		return "udp", true, true
	case policy.ProtoICMP:
		return "icmp", false, true
	case policy.ProtoICMPv6:
		return "icmpv6", false, true
	}
	return "", false, false
}
