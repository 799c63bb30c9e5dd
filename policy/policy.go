// Package policy is the model, loader and compiled matcher of flowaudit's
// policy file: segments (named sets of IPv4/IPv6 CIDRs), an inventory of
// workloads, owners and service accounts, and allow rules between segments
// (see "Policy file (contract)" in DESIGN.md).
//
// Parse and Load read and validate a file; Compile turns a Policy into a
// read-only Matcher that the enricher, the detectors and the policy tools
// share: Matcher.Lookup labels an address (longest prefix wins) and
// Matcher.Decide gives a flow its Verdict.
package policy

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"
)

// External is the reserved segment of addresses outside every declared
// segment. Rules may name it in from/to; the policy file may not declare it.
const External = "external"

// Default actions for cross-segment traffic no rule allows.
const (
	DefaultDeny  = "deny"
	DefaultAllow = "allow"
)

// Policy is a parsed and validated policy file. Line fields give the line of
// the list item in the file, for messages that point back at the source.
type Policy struct {
	Segments  []Segment
	Inventory []InventoryEntry
	Rules     []Rule
	// Default is DefaultDeny (cross-segment traffic no rule allows is a
	// violation) or DefaultAllow (it is allowed, with rule "default").
	Default string
}

// Segment is a named set of CIDRs. IPv4 prefixes are plain IPv4 (never
// IPv4-mapped IPv6) and have no host bits set.
type Segment struct {
	Name  string
	CIDRs []netip.Prefix
	Tags  []string
	// Intra is IntraAllow ("" means allow) or IntraRules.
	Intra string
	Line  int
}

// InventoryEntry describes the workload behind a CIDR (often a /32 or /128).
// Inventory is looked up separately from segments: an address gets the
// segment of its longest segment prefix and the workload of its longest
// inventory prefix.
type InventoryEntry struct {
	CIDR           netip.Prefix
	Workload       string
	Owner          string
	ServiceAccount string // static identity of the workload, used when no login binds the address
	Labels         map[string]string
	Line           int
}

// Rule allows (or, with Action deny, denies) traffic from an end of From
// to an end of To on one of Ports, optionally only for the listed
// Identities (users or service accounts of the source). Rules are
// evaluated in file order and the first that matches decides.
//
// An end is a segment name (From, To) or a selector (FromSelectors,
// ToSelectors): the addresses of a segment, or of any segment, whose
// inventory entry carries every label of the selector. A rule matches a
// source that any of From or FromSelectors matches, and likewise for the
// destination.
type Rule struct {
	Name                       string
	From, To                   []string
	FromSelectors, ToSelectors []Selector
	Ports                      []PortSpec
	Identities                 []string
	// Action is ActionAllow or ActionDeny; "" means allow.
	Action string
	// Mode is ModeEnforced or ModeStaged; "" means enforced. A staged rule
	// decides only the staged verdict (the verdict had it been enforced).
	Mode string
	// Owner, Justification and ReviewBy are metadata for reviews (PCI DSS
	// 1.2.5, 1.2.7); ReviewBy is a date (UTC midnight), zero when unset.
	Owner, Justification string
	ReviewBy             time.Time
	Line                 int
}

// Selector picks inventory workloads by label: the addresses whose
// longest inventory entry carries every label in Labels, within Segment
// ("" for any segment). A selector without labels is its whole segment.
type Selector struct {
	Segment string
	Labels  map[string]string
}

// String gives s in a compact written form: "db{app=orders}".
func (s Selector) String() string {
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(s.Segment)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + s.Labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// Rule actions and modes.
const (
	ActionAllow  = "allow"
	ActionDeny   = "deny"
	ModeEnforced = "enforced"
	ModeStaged   = "staged"
)

// Deny reports whether r denies what it matches.
func (r *Rule) Deny() bool { return r.Action == ActionDeny }

// Staged reports whether r is a staged rule.
func (r *Rule) Staged() bool { return r.Mode == ModeStaged }

// Intra-segment modes of a segment.
const (
	IntraAllow = "allow" // traffic inside the segment is intra_segment, never judged
	IntraRules = "rules" // traffic inside the segment is judged by the rules
)

// IP protocol numbers PortSpec knows by name.
const (
	ProtoAny    uint8 = 0
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// PortSpec is a destination port range of one protocol. Proto 0 means any
// protocol. ICMP specs cover every type and code (Lo 0, Hi 65535).
//
// Written forms: "5432/tcp", "8000-8100/tcp", "53/udp", "tcp" (every TCP
// port), "icmp", "icmpv6", "any".
type PortSpec struct {
	Lo, Hi uint16
	Proto  uint8
}

// Matches reports whether port and proto fall in p.
func (p PortSpec) Matches(port uint16, proto uint8) bool {
	return (p.Proto == ProtoAny || p.Proto == proto) && port >= p.Lo && port <= p.Hi
}

// String gives p in its written form.
func (p PortSpec) String() string {
	var proto string
	switch p.Proto {
	case ProtoAny:
		return "any"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	case ProtoTCP:
		proto = "tcp"
	case ProtoUDP:
		proto = "udp"
	default:
		proto = fmt.Sprint(p.Proto)
	}
	switch {
	case p.Lo == 0 && p.Hi == 65535:
		return proto
	case p.Lo == p.Hi:
		return fmt.Sprintf("%d/%s", p.Lo, proto)
	}
	return fmt.Sprintf("%d-%d/%s", p.Lo, p.Hi, proto)
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("unable to read policy file: %w", err)
	}
	return Parse(data, path)
}

// Validate loads and compiles the policy file at path, as
// `flowaudit policy validate FILE` does, and summarises it in one line, e.g.
// "3 segments, 12 CIDRs, 2 inventory entries, 4 rules, default deny". The
// error lists every problem, one per line, each as FILE:LINE: FIELD: message.
func Validate(path string) (string, error) {
	p, err := Load(path)
	if err != nil {
		return "", err
	}
	if _, err := Compile(p); err != nil {
		return "", err
	}
	return p.Summary(), nil
}

// Summary describes p in one line.
func (p *Policy) Summary() string {
	cidrs := 0
	for _, s := range p.Segments {
		cidrs += len(s.CIDRs)
	}
	return fmt.Sprintf("%s, %s, %s, %s, default %s",
		plural(len(p.Segments), "segment"), plural(cidrs, "CIDR"),
		plural(len(p.Inventory), "inventory entry"), plural(len(p.Rules), "rule"), p.Default)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(what, "y"))
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// FieldError is one problem in a policy file. Its message reads
// "FILE:LINE: FIELD: Msg", the FIELD being a path such as rules[1].ports[0].
type FieldError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
