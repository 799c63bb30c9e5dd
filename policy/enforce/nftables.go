package enforce

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"go4.org/netipx"

	"github.com/flowaudit/flowaudit/policy"
)

// NftablesTable is the table Nftables defines (family inet).
const NftablesTable = "flowaudit"

// Nftables renders p as an nftables ruleset for a router that forwards
// between the segments, loadable with `nft -f` (it replaces the table
// inet flowaudit, leaving other tables alone):
//
//   - one interval set per segment and address family holding the
//     segment's addresses after longest-prefix matching (nested segments
//     carved out), a set of every segment address (External is "not in
//     it"), and one set per label selector of a rule;
//   - chain forward (hook forward, priority 0), policy drop under
//     "default: deny" and accept under "default: allow";
//   - established and related traffic accepted first (replies of allowed
//     connections: the policy judges connections, as Decide does);
//   - traffic inside a segment accepted unless the segment has
//     intra: rules (and External to External, as Decide calls it
//     intra_segment);
//   - then each enforced rule in file order, accept or drop, per end pair,
//     family and protocol, commented with the rule's name.
//
// Staged rules are not exported; rules with identities are exported
// without them (nftables sees addresses, not users) — both are listed in
// the returned notes. source names the policy file in the header comment.
func Nftables(p *policy.Policy, source string) (string, []string) {
	r := newRegions(p)
	var notes []string
	var b strings.Builder
	fmt.Fprintf(&b, "# flowaudit policy %s as nftables (flowaudit policy export --format nftables).\n", source)
	b.WriteString("# Load with: nft -f FILE. Replaces table inet " + NftablesTable + " only.\n")
	b.WriteString("table inet " + NftablesTable + "\n")
	b.WriteString("delete table inet " + NftablesTable + "\n\n")
	b.WriteString("table inet " + NftablesTable + " {\n")

	names := setNamer{}
	type sets struct{ v4, v6 string } // "" when the family is empty
	writeSet := func(name, comment string, s *netipx.IPSet) sets {
		v4, v6 := split(s)
		var out sets
		for _, fam := range []struct {
			suffix, typ string
			pfx         []netip.Prefix
			dst         *string
		}{{"_v4", "ipv4_addr", v4, &out.v4}, {"_v6", "ipv6_addr", v6, &out.v6}} {
			n := names.name(name + fam.suffix)
			*fam.dst = n
			fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n", n, fam.typ)
			if comment != "" {
				fmt.Fprintf(&b, "\t\tcomment %s\n", nftString(comment))
			}
			if len(fam.pfx) > 0 {
				elems := make([]string, len(fam.pfx))
				for i, p := range fam.pfx {
					elems[i] = p.String()
				}
				fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
			} else {
				*fam.dst = ""
			}
			b.WriteString("\t}\n")
		}
		return out
	}
	writeSet("segments", "every declared segment", r.all)
	allV4, allV6 := names.lookup("segments_v4"), names.lookup("segments_v6")
	segSets := map[string]sets{}
	for _, name := range r.segName {
		segSets[name] = writeSet("seg_"+name, "segment "+name, r.seg[name])
	}

	// An end as a match per family: "@set", "!= @segments" for External,
	// "" when the end has no address of that family.
	type endMatch struct{ v4, v6 string }
	endOf := func(name string) endMatch {
		if name == policy.External {
			return endMatch{"!= @" + allV4, "!= @" + allV6}
		}
		s := segSets[name]
		m := endMatch{}
		if s.v4 != "" {
			m.v4 = "@" + s.v4
		}
		if s.v6 != "" {
			m.v6 = "@" + s.v6
		}
		return m
	}
	type ruleEnds struct{ from, to []endMatch }
	ends := make([]ruleEnds, len(p.Rules))
	for i, rule := range p.Rules {
		if rule.Staged() {
			continue
		}
		side := func(names []string, sels []policy.Selector, dir string) []endMatch {
			var out []endMatch
			for _, n := range names {
				out = append(out, endOf(n))
			}
			for j, sel := range sels {
				if len(sel.Labels) == 0 {
					out = append(out, endOf(sel.Segment))
					continue
				}
				s := writeSet(fmt.Sprintf("rule%d_%s%d", i, dir, j), fmt.Sprintf("rule %s %s %s", rule.Name, dir, sel), r.selector(p, sel))
				m := endMatch{}
				if s.v4 != "" {
					m.v4 = "@" + s.v4
				}
				if s.v6 != "" {
					m.v6 = "@" + s.v6
				}
				out = append(out, m)
			}
			return out
		}
		ends[i] = ruleEnds{side(rule.From, rule.FromSelectors, "from"), side(rule.To, rule.ToSelectors, "to")}
	}

	verdict := "drop"
	if p.Default == policy.DefaultAllow {
		verdict = "accept"
	}
	b.WriteString("\n\tchain forward {\n")
	fmt.Fprintf(&b, "\t\ttype filter hook forward priority 0; policy %s;\n", verdict)
	b.WriteString("\t\tct state established,related accept\n")
	for _, name := range r.segName {
		seg := segmentByName(p, name)
		if seg.Intra == policy.IntraRules {
			continue
		}
		m := endOf(name)
		if m.v4 != "" {
			fmt.Fprintf(&b, "\t\tip saddr %s ip daddr %s accept comment %s\n", m.v4, m.v4, nftString("intra "+name))
		}
		if m.v6 != "" {
			fmt.Fprintf(&b, "\t\tip6 saddr %s ip6 daddr %s accept comment %s\n", m.v6, m.v6, nftString("intra "+name))
		}
	}
	ext := endOf(policy.External)
	fmt.Fprintf(&b, "\t\tip saddr %s ip daddr %s accept comment %s\n", ext.v4, ext.v4, nftString("intra external"))
	fmt.Fprintf(&b, "\t\tip6 saddr %s ip6 daddr %s accept comment %s\n", ext.v6, ext.v6, nftString("intra external"))
	for i, rule := range p.Rules {
		if rule.Staged() {
			notes = append(notes, fmt.Sprintf("rule %s (line %d) is staged: not exported", rule.Name, rule.Line))
			continue
		}
		if len(rule.Identities) > 0 {
			notes = append(notes, fmt.Sprintf("rule %s (line %d): identities %s cannot be enforced by nftables; exported for every source",
				rule.Name, rule.Line, strings.Join(rule.Identities, ", ")))
		}
		action := "accept"
		if rule.Deny() {
			action = "drop"
		}
		for _, from := range ends[i].from {
			for _, to := range ends[i].to {
				for _, fam := range []struct {
					kw       string
					src, dst string
					v6       bool
				}{{"ip", from.v4, to.v4, false}, {"ip6", from.v6, to.v6, true}} {
					if fam.src == "" || fam.dst == "" {
						continue
					}
					for _, l4 := range l4Matches(rule.Ports, fam.v6) {
						line := fmt.Sprintf("%s saddr %s %s daddr %s", fam.kw, fam.src, fam.kw, fam.dst)
						if l4 != "" {
							line += " " + l4
						}
						fmt.Fprintf(&b, "\t\t%s %s comment %s\n", line, action, nftString(rule.Name))
					}
				}
			}
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String(), notes
}

func segmentByName(p *policy.Policy, name string) policy.Segment {
	for _, s := range p.Segments {
		if s.Name == name {
			return s
		}
	}
	return policy.Segment{}
}

// l4Matches gives the protocol and port matches of a rule's port specs for
// one family, one per protocol ("" matches every protocol).
func l4Matches(ports []policy.PortSpec, v6 bool) []string {
	byProto := map[uint8][]string{}
	var order []uint8
	whole := map[uint8]bool{}
	for _, ps := range ports {
		if ps.Proto == policy.ProtoAny {
			return []string{""}
		}
		if _, ok := byProto[ps.Proto]; !ok {
			order = append(order, ps.Proto)
			byProto[ps.Proto] = nil
		}
		if ps.Lo == 0 && ps.Hi == 65535 {
			whole[ps.Proto] = true
			continue
		}
		r := strconv.Itoa(int(ps.Lo))
		if ps.Hi != ps.Lo {
			r += "-" + strconv.Itoa(int(ps.Hi))
		}
		byProto[ps.Proto] = append(byProto[ps.Proto], r)
	}
	var out []string
	for _, proto := range order {
		switch proto {
		case policy.ProtoICMP:
			if !v6 {
				out = append(out, "meta l4proto icmp")
			}
			continue
		case policy.ProtoICMPv6:
			if v6 {
				out = append(out, "meta l4proto ipv6-icmp")
			}
			continue
		}
		name := map[uint8]string{policy.ProtoTCP: "tcp", policy.ProtoUDP: "udp"}[proto]
		if name == "" {
			out = append(out, "meta l4proto "+strconv.Itoa(int(proto)))
			continue
		}
		list := byProto[proto]
		switch {
		case whole[proto]:
			out = append(out, "meta l4proto "+name)
		case len(list) == 1:
			out = append(out, name+" dport "+list[0])
		default:
			out = append(out, name+" dport { "+strings.Join(list, ", ")+" }")
		}
	}
	return out
}

var nftNameRE = regexp.MustCompile(`[^A-Za-z0-9_]`)

// setNamer makes set names nftables accepts ([A-Za-z][A-Za-z0-9_]*) and
// unique, however segments are named.
type setNamer struct {
	used map[string]bool
	by   map[string]string
}

func (n *setNamer) name(want string) string {
	if n.used == nil {
		n.used, n.by = map[string]bool{}, map[string]string{}
	}
	s := nftNameRE.ReplaceAllString(want, "_")
	if s == "" || !(s[0] >= 'A' && s[0] <= 'Z' || s[0] >= 'a' && s[0] <= 'z') {
		s = "s" + s
	}
	if len(s) > 60 {
		s = s[:60]
	}
	base := s
	for i := 2; n.used[s]; i++ {
		s = base + "_" + strconv.Itoa(i)
	}
	n.used[s] = true
	n.by[want] = s
	return s
}

func (n *setNamer) lookup(want string) string { return n.by[want] }

// nftString quotes s for a comment: nftables strings may not hold quotes.
func nftString(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 {
			return '\''
		}
		return r
	}, s)
	if len(s) > 120 {
		s = s[:120]
	}
	return `"` + s + `"`
}
