package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Parse parses and validates a policy file. filename only labels errors. An
// empty file is a valid policy with no segments (every address is external)
// and default deny.
//
// Every problem found is reported, joined (errors.Join), each a *FieldError
// naming the file, the line and the field, e.g.
//
//	policy.yaml:14: rules[1].ports[0]: "54x/tcp" is not PORT[-PORT]/PROTO (e.g. 5432/tcp)
func Parse(data []byte, filename string) (*Policy, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	pol := &Policy{Default: DefaultDeny}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return pol, nil
	}
	p := &parser{file: filename}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return pol, nil
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "", "expected a mapping with the keys segments, inventory, rules and default")
		return nil, p.err()
	}
	p.fields(root, "", []string{"segments", "inventory", "rules", "default"}, func(key string, v *yaml.Node) {
		switch key {
		case "segments":
			p.list(v, "segments", func(field string, n *yaml.Node) {
				pol.Segments = append(pol.Segments, p.segment(field, n))
			})
		case "inventory":
			p.list(v, "inventory", func(field string, n *yaml.Node) {
				pol.Inventory = append(pol.Inventory, p.inventoryEntry(field, n))
			})
		case "rules":
			p.list(v, "rules", func(field string, n *yaml.Node) {
				pol.Rules = append(pol.Rules, p.rule(field, n))
			})
		case "default":
			s, ok := p.scalar(v, "default")
			if !ok {
				return
			}
			switch s {
			case DefaultDeny, DefaultAllow:
				pol.Default = s
			default:
				p.errorf(v, "default", "%q is not deny or allow", s)
			}
		}
	})
	p.check(pol)
	if err := p.err(); err != nil {
		return nil, err
	}
	return pol, nil
}

type parser struct {
	file string
	errs []error
	// where each declared segment name / prefix was first seen
	segLines map[string]int
	// declared segment names in order, for messages
	segNames []string
	// positions of CIDRs and segment references, checked once the whole
	// file is read (rules may come before segments)
	cidrRefs []cidrRef
	segRefs  []segRef
	nsegs    int // segments seen so far
}

type cidrRef struct {
	field string
	line  int
	seg   int // index in Policy.Segments
	pfx   netip.Prefix
}

type segRef struct {
	field string
	line  int
	name  string
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &FieldError{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) err() error {
	return errors.Join(p.errs...)
}

// resolve follows aliases (bounded, to stay safe on hostile input).
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// fields walks mapping n, rejecting unknown and repeated keys, and calls fn
// for each known key with its value.
func (p *parser) fields(n *yaml.Node, prefix string, known []string, fn func(key string, v *yaml.Node)) {
	seen := make(map[string]int, len(known))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		key := k.Value
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, prefix, "keys must be plain names")
			continue
		}
		if first, ok := seen[key]; ok {
			p.errorf(k, join(prefix, key), "repeated key (first at line %d)", first)
			continue
		}
		seen[key] = k.Line
		found := false
		for _, want := range known {
			if key == want {
				found = true
				break
			}
		}
		if !found {
			p.errorf(k, join(prefix, key), "unknown key (expected one of %s)", strings.Join(known, ", "))
			continue
		}
		fn(key, v)
	}
}

// list walks sequence n (null counts as empty) and calls fn for each item
// with its field path, e.g. segments[2].
func (p *parser) list(n *yaml.Node, field string, fn func(field string, item *yaml.Node)) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, field, "expected a list")
		return
	}
	for i, item := range n.Content {
		item = resolve(item)
		if item == nil {
			continue
		}
		fn(fmt.Sprintf("%s[%d]", field, i), item)
	}
}

// scalar returns the text of scalar n.
func (p *parser) scalar(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, field, "expected a single value")
		return "", false
	}
	return n.Value, true
}

// strings returns the texts of a list of scalars; empty strings are errors.
func (p *parser) strings(n *yaml.Node, field string) []string {
	var out []string
	p.list(n, field, func(f string, item *yaml.Node) {
		s, ok := p.scalar(item, f)
		if !ok {
			return
		}
		if s == "" {
			p.errorf(item, f, "must not be empty")
			return
		}
		out = append(out, s)
	})
	return out
}

func (p *parser) mapping(n *yaml.Node, field string) bool {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "expected a mapping")
		return false
	}
	return true
}

func (p *parser) segment(field string, n *yaml.Node) Segment {
	s := Segment{Line: n.Line}
	seg := p.nsegs
	p.nsegs++
	if !p.mapping(n, field) {
		return s
	}
	var cidrsNode *yaml.Node
	p.fields(n, field, []string{"name", "cidrs", "tags", "intra"}, func(key string, v *yaml.Node) {
		f := join(field, key)
		switch key {
		case "name":
			s.Name, _ = p.scalar(v, f)
			switch {
			case s.Name == "":
				p.errorf(v, f, "must not be empty")
			case s.Name == External:
				p.errorf(v, f, "%q is reserved for addresses outside every segment; rules may use it without declaring it", External)
			default:
				if p.segLines == nil {
					p.segLines = make(map[string]int)
				}
				if first, ok := p.segLines[s.Name]; ok {
					p.errorf(v, f, "%q is declared twice (first at line %d)", s.Name, first)
				} else {
					p.segLines[s.Name] = v.Line
					p.segNames = append(p.segNames, s.Name)
				}
			}
		case "cidrs":
			cidrsNode = v
			p.list(v, f, func(f string, item *yaml.Node) {
				if pfx, ok := p.prefix(item, f); ok {
					s.CIDRs = append(s.CIDRs, pfx)
					p.cidrRefs = append(p.cidrRefs, cidrRef{field: f, line: item.Line, seg: seg, pfx: pfx})
				}
			})
		case "tags":
			s.Tags = p.strings(v, f)
		case "intra":
			if val, ok := p.scalar(v, f); ok {
				switch val {
				case IntraAllow, IntraRules:
					s.Intra = val
				default:
					p.errorf(v, f, "%q is not allow or rules", val)
				}
			}
		}
	})
	if s.Name == "" && !hasKey(n, "name") {
		p.errorf(n, join(field, "name"), "is required")
	}
	switch {
	case cidrsNode == nil:
		p.errorf(n, join(field, "cidrs"), "is required")
	case isNull(cidrsNode) || (cidrsNode.Kind == yaml.SequenceNode && len(cidrsNode.Content) == 0):
		p.errorf(cidrsNode, join(field, "cidrs"), "at least one CIDR is required")
	}
	return s
}

func hasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

func (p *parser) inventoryEntry(field string, n *yaml.Node) InventoryEntry {
	e := InventoryEntry{Line: n.Line}
	if !p.mapping(n, field) {
		return e
	}
	hasCIDR := false
	p.fields(n, field, []string{"cidr", "workload", "owner", "service_account", "labels"}, func(key string, v *yaml.Node) {
		f := join(field, key)
		switch key {
		case "cidr":
			hasCIDR = true
			e.CIDR, _ = p.prefix(v, f)
		case "workload":
			e.Workload, _ = p.scalar(v, f)
		case "owner":
			e.Owner, _ = p.scalar(v, f)
		case "service_account":
			e.ServiceAccount, _ = p.scalar(v, f)
		case "labels":
			e.Labels = p.labels(v, f)
		}
	})
	if !hasCIDR {
		p.errorf(n, join(field, "cidr"), "is required")
	}
	return e
}

// labels reads a mapping of label names to values (null is none).
func (p *parser) labels(v *yaml.Node, f string) map[string]string {
	if isNull(v) || !p.mapping(v, f) {
		return nil
	}
	out := make(map[string]string, len(v.Content)/2)
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := resolve(v.Content[i]), resolve(v.Content[i+1])
		if k == nil || val == nil {
			continue
		}
		lf := join(f, k.Value)
		ks, ok1 := p.scalar(k, f)
		vs, ok2 := p.scalar(val, lf)
		if !ok1 || !ok2 {
			continue
		}
		if ks == "" {
			p.errorf(k, f, "label names must not be empty")
			continue
		}
		if _, dup := out[ks]; dup {
			p.errorf(k, lf, "repeated label")
			continue
		}
		out[ks] = vs
	}
	return out
}

func (p *parser) rule(field string, n *yaml.Node) Rule {
	r := Rule{Line: n.Line}
	if !p.mapping(n, field) {
		return r
	}
	seen := map[string]bool{}
	p.fields(n, field, []string{"name", "from", "to", "ports", "identities", "action", "mode", "owner", "justification", "review_by"}, func(key string, v *yaml.Node) {
		f := join(field, key)
		seen[key] = true
		switch key {
		case "name":
			r.Name, _ = p.scalar(v, f)
			if r.Name == "" {
				p.errorf(v, f, "must not be empty")
			}
		case "from":
			r.From, r.FromSelectors = p.ruleEnds(v, f)
		case "to":
			r.To, r.ToSelectors = p.ruleEnds(v, f)
		case "action":
			if val, ok := p.scalar(v, f); ok {
				switch val {
				case ActionAllow, ActionDeny:
					r.Action = val
				default:
					p.errorf(v, f, "%q is not allow or deny", val)
				}
			}
		case "mode":
			if val, ok := p.scalar(v, f); ok {
				switch val {
				case ModeEnforced, ModeStaged:
					r.Mode = val
				default:
					p.errorf(v, f, "%q is not enforced or staged", val)
				}
			}
		case "owner":
			r.Owner, _ = p.scalar(v, f)
		case "justification":
			r.Justification, _ = p.scalar(v, f)
		case "review_by":
			if val, ok := p.scalar(v, f); ok {
				d, err := time.Parse("2006-01-02", val)
				if err != nil {
					p.errorf(v, f, "%q is not a date YYYY-MM-DD (e.g. 2027-05-31)", val)
				} else {
					r.ReviewBy = d
				}
			}
		case "ports":
			p.list(v, f, func(f string, item *yaml.Node) {
				if ps, ok := p.portSpec(item, f); ok {
					r.Ports = append(r.Ports, ps)
				}
			})
		case "identities":
			r.Identities = p.strings(v, f)
		}
	})
	for _, key := range []string{"name", "from", "to", "ports"} {
		if !seen[key] {
			msg := "is required"
			if key == "ports" {
				msg = `is required (use ["any"] to allow all traffic)`
			}
			p.errorf(n, join(field, key), "%s", msg)
		}
	}
	return r
}

// ruleEnds reads a rule's from or to: a non-empty list of segment names
// and selectors ({segment: db, labels: {app: orders}}), segment names
// checked against the declared segments once the whole file is read.
func (p *parser) ruleEnds(n *yaml.Node, field string) ([]string, []Selector) {
	var names []string
	var sels []Selector
	p.list(n, field, func(f string, item *yaml.Node) {
		if item.Kind == yaml.MappingNode {
			var sel Selector
			p.fields(item, f, []string{"segment", "labels"}, func(key string, v *yaml.Node) {
				kf := join(f, key)
				switch key {
				case "segment":
					if s, ok := p.scalar(v, kf); ok {
						sel.Segment = s
						p.segRefs = append(p.segRefs, segRef{field: kf, line: v.Line, name: s})
					}
				case "labels":
					sel.Labels = p.labels(v, kf)
				}
			})
			if sel.Segment == "" && len(sel.Labels) == 0 {
				p.errorf(item, f, "a selector needs a segment, labels or both (e.g. {segment: db, labels: {app: orders}})")
				return
			}
			sels = append(sels, sel)
			return
		}
		s, ok := p.scalar(item, f)
		if !ok {
			return
		}
		names = append(names, s)
		p.segRefs = append(p.segRefs, segRef{field: f, line: item.Line, name: s})
	})
	if len(names) == 0 && len(sels) == 0 && (isNull(n) || (n.Kind == yaml.SequenceNode && len(n.Content) == 0)) {
		p.errorf(n, field, "at least one segment is required")
	}
	return names, sels
}

// prefix parses a CIDR. A bare address is a single-host prefix; an
// IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/104) becomes the IPv4 prefix it
// denotes, since addresses are looked up unmapped.
func (p *parser) prefix(n *yaml.Node, field string) (netip.Prefix, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return netip.Prefix{}, false
	}
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		pfx, err = netip.ParsePrefix(s)
		if err != nil {
			p.errorf(n, field, "%q is not a CIDR (e.g. 10.1.0.0/16 or 2001:db8::/48)", s)
			return netip.Prefix{}, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			p.errorf(n, field, "%q is not a CIDR (e.g. 10.1.0.0/16 or 2001:db8::/48)", s)
			return netip.Prefix{}, false
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
	}
	if m := pfx.Masked(); m != pfx {
		p.errorf(n, field, "%q has host bits set; did you mean %s?", s, m)
		return netip.Prefix{}, false
	}
	return pfx, true
}

// portSpec parses "5432/tcp", "8000-8100/tcp", "53/udp", "tcp", "udp",
// "icmp", "icmpv6" and "any".
func (p *parser) portSpec(n *yaml.Node, field string) (PortSpec, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return PortSpec{}, false
	}
	if ps, err := ParsePortSpec(s); err == nil {
		return ps, true
	}
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		p.errorf(n, field, "%q has no protocol; write \"%s/tcp\" or \"%s/udp\"", s, s, s)
		return PortSpec{}, false
	}
	p.errorf(n, field, "%q is not PORT[-PORT]/PROTO (e.g. 5432/tcp)", s)
	return PortSpec{}, false
}

var errPortSpec = errors.New("not PORT[-PORT]/PROTO, tcp, udp, icmp, icmpv6 or any")

// ParsePortSpec parses the written form of a PortSpec (see PortSpec).
func ParsePortSpec(s string) (PortSpec, error) {
	all := PortSpec{Lo: 0, Hi: 65535}
	switch strings.ToLower(s) {
	case "any":
		return all, nil
	case "tcp":
		all.Proto = ProtoTCP
		return all, nil
	case "udp":
		all.Proto = ProtoUDP
		return all, nil
	case "icmp":
		all.Proto = ProtoICMP
		return all, nil
	case "icmpv6":
		all.Proto = ProtoICMPv6
		return all, nil
	}
	ports, proto, ok := strings.Cut(s, "/")
	if !ok {
		return PortSpec{}, errPortSpec
	}
	var ps PortSpec
	switch strings.ToLower(proto) {
	case "tcp":
		ps.Proto = ProtoTCP
	case "udp":
		ps.Proto = ProtoUDP
	default:
		return PortSpec{}, errPortSpec
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	l, err := parsePort(lo)
	if err != nil {
		return PortSpec{}, errPortSpec
	}
	h := l
	if isRange {
		if h, err = parsePort(hi); err != nil || h < l {
			return PortSpec{}, errPortSpec
		}
	}
	ps.Lo, ps.Hi = l, h
	return ps, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, errPortSpec
	}
	v, err := strconv.ParseUint(s, 10, 16)
	return uint16(v), err
}

// check runs the cross-field rules: no prefix in two segments or two
// inventory entries, rules name declared segments and are unique.
func (p *parser) check(pol *Policy) {
	type owner struct {
		seg  int
		line int
	}
	segOf := map[netip.Prefix]owner{}
	for _, c := range p.cidrRefs {
		o, ok := segOf[c.pfx]
		if !ok {
			segOf[c.pfx] = owner{c.seg, c.line}
			continue
		}
		if o.seg == c.seg {
			p.errs = append(p.errs, &FieldError{File: p.file, Line: c.line, Field: c.field,
				Msg: fmt.Sprintf("%s is listed twice (first at line %d)", c.pfx, o.line)})
			continue
		}
		p.errs = append(p.errs, &FieldError{File: p.file, Line: c.line, Field: c.field,
			Msg: fmt.Sprintf("%s is already in segment %q (line %d); a prefix belongs to one segment only", c.pfx, pol.Segments[o.seg].Name, o.line)})
	}
	invOf := map[netip.Prefix]int{}
	for i, e := range pol.Inventory {
		if !e.CIDR.IsValid() {
			continue
		}
		if line, ok := invOf[e.CIDR]; ok {
			p.errs = append(p.errs, &FieldError{File: p.file, Line: e.Line, Field: fmt.Sprintf("inventory[%d].cidr", i),
				Msg: fmt.Sprintf("%s is already described at line %d", e.CIDR, line)})
			continue
		}
		invOf[e.CIDR] = e.Line
	}
	for _, r := range p.segRefs {
		if r.name == External || p.segLines[r.name] != 0 {
			continue
		}
		names := append([]string(nil), p.segNames...)
		sort.Strings(names)
		p.errs = append(p.errs, &FieldError{File: p.file, Line: r.line, Field: r.field,
			Msg: fmt.Sprintf("unknown segment %q (known: %s)", r.name, strings.Join(append(names, External), ", "))})
	}
	ruleLines := map[string]int{}
	for i, r := range pol.Rules {
		if r.Name == "" {
			continue
		}
		if line, ok := ruleLines[r.Name]; ok {
			p.errs = append(p.errs, &FieldError{File: p.file, Line: r.Line, Field: fmt.Sprintf("rules[%d].name", i),
				Msg: fmt.Sprintf("%q is declared twice (first at line %d)", r.Name, line)})
			continue
		}
		ruleLines[r.Name] = r.Line
	}
}
