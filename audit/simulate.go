package audit

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// Simulation outcomes of a flow.
const (
	NewlyBlocked = "newly_blocked" // passed when enriched, a violation under the draft
	NewlyAllowed = "newly_allowed" // a violation when enriched, passes under the draft
	Unchanged    = "unchanged"
	// Uncertain: history or the draft cannot tell, e.g. the draft's
	// decision hangs on an identity the flow does not carry, or the flow
	// was never decided (verdict unknown).
	Uncertain = "uncertain"
)

// Simulation is the result of Simulate.
type Simulation struct {
	From    time.Time  `json:"window_from"`
	To      time.Time  `json:"window_to"`
	Summary SimSummary `json:"summary"`
	// Changes are the groups whose outcome is not unchanged (all groups
	// when Simulate was asked for them), sorted by outcome, src_segment,
	// dst_segment, proto, dst_port, src_identity, before, after.
	Changes []Change `json:"changes"`
}

// SimSummary counts flows per outcome.
type SimSummary struct {
	NewlyBlocked uint64 `json:"newly_blocked"`
	NewlyAllowed uint64 `json:"newly_allowed"`
	Unchanged    uint64 `json:"unchanged"`
	Uncertain    uint64 `json:"uncertain"`
}

// Change is the flows of one service edge — segment pair (client to
// server, as relabelled by the draft), service port and client identity —
// that moved from one verdict to another.
type Change struct {
	Outcome     string `json:"outcome"`
	SrcSegment  string `json:"src_segment"`
	DstSegment  string `json:"dst_segment"`
	DstPort     uint16 `json:"dst_port"`
	Proto       uint8  `json:"proto"`
	SrcIdentity string `json:"src_identity"`
	Before      string `json:"before"`
	BeforeRule  string `json:"before_rule"`
	After       string `json:"after"`
	AfterRule   string `json:"after_rule"`
	Flows       uint64 `json:"flows"`
	Bytes       uint64 `json:"bytes"`
	// Replies is how many of Flows are the server's replies.
	Replies uint64 `json:"replies"`
	// Reason says why an uncertain change is uncertain.
	Reason string `json:"reason,omitempty"`
	// Examples are up to three "client -> server" address pairs.
	Examples []string `json:"examples"`
}

// SimulateOptions configures Simulate.
type SimulateOptions struct {
	Window query.Window
	// All lists unchanged groups in Changes too.
	All bool
	// Examples bounds the example address pairs per change (3).
	Examples int
}

// PortBounds returns the port boundaries Reader.ReplayGroups needs for
// deciding flows under the given policies: every rule port spec's Lo and
// Hi+1, and policy.EphemeralPortMin.
func PortBounds(policies ...*policy.Policy) []uint16 {
	seen := map[uint16]bool{policy.EphemeralPortMin: true}
	for _, p := range policies {
		if p == nil {
			continue
		}
		for _, r := range p.Rules {
			for _, s := range r.Ports {
				seen[s.Lo] = true
				if s.Hi < 65535 {
					seen[s.Hi+1] = true
				}
			}
		}
	}
	out := make([]uint16, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Simulate replays groups (Reader.ReplayGroups with PortBounds(draft))
// against the draft: each group's addresses are relabelled with the
// draft's segments and inventory and decided by the draft's Matcher, the
// code the enricher runs; "before" is the verdict the enricher stored.
func Simulate(groups []query.ReplayGroup, draft *policy.Matcher, opt SimulateOptions) (*Simulation, error) {
	if opt.Examples <= 0 {
		opt.Examples = 3
	}
	// The same draft without identity conditions tells decisions that
	// hang on an identity apart.
	anyID, err := policy.Compile(withoutIdentities(draft.Policy()))
	if err != nil {
		return nil, fmt.Errorf("audit: draft without identities: %w", err)
	}
	sim := &Simulation{From: opt.Window.From.UTC(), To: opt.Window.To.UTC(), Changes: []Change{}}
	type acc struct {
		c        Change
		examples map[string]bool
	}
	changes := map[string]*acc{}
	for i := range groups {
		g := &groups[i]
		src, dst := draft.Lookup(addr(g.SrcAddr)), draft.Lookup(addr(g.DstAddr))
		k := policy.FlowKey{Src: src, Dst: dst, SrcPort: g.SrcPort, DstPort: g.DstPort, Proto: g.Proto,
			SrcIdentity: g.SrcIdentity, DstIdentity: g.DstIdentity, ServiceSide: g.ServiceSide}
		v, rule := draft.Decide(&k)
		after := v.String()
		outcome, reason := Unchanged, ""
		before := g.Verdict
		switch {
		case before == policy.VerdictUnknown.String() || v == policy.VerdictUnknown:
			outcome, reason = Uncertain, "verdict unknown"
		case passes(before) && !passes(after):
			outcome = NewlyBlocked
		case !passes(before) && passes(after):
			outcome = NewlyAllowed
		}
		if outcome != Unchanged && v == policy.VerdictViolation && missingIdentity(g, src, dst) {
			ka := policy.FlowKey{Src: anyID.Lookup(addr(g.SrcAddr)), Dst: anyID.Lookup(addr(g.DstAddr)),
				SrcPort: g.SrcPort, DstPort: g.DstPort, Proto: g.Proto, ServiceSide: g.ServiceSide}
			if va, _ := anyID.Decide(&ka); va == policy.VerdictAllowed {
				outcome, reason = Uncertain, "identity unknown"
			}
		}
		switch outcome {
		case NewlyBlocked:
			sim.Summary.NewlyBlocked += g.Flows
		case NewlyAllowed:
			sim.Summary.NewlyAllowed += g.Flows
		case Unchanged:
			sim.Summary.Unchanged += g.Flows
		case Uncertain:
			sim.Summary.Uncertain += g.Flows
		}
		if outcome == Unchanged && !opt.All {
			continue
		}
		// Report the service edge: client to server.
		c := Change{Outcome: outcome, SrcSegment: src.Segment, DstSegment: dst.Segment, DstPort: g.ServicePort,
			Proto: g.Proto, SrcIdentity: g.SrcIdentity, Before: before, BeforeRule: g.Rule, After: after, AfterRule: rule,
			Reason: reason}
		client, server := g.SrcAddr, g.DstAddr
		if g.Reply {
			c.SrcSegment, c.DstSegment, c.SrcIdentity = dst.Segment, src.Segment, g.DstIdentity
			client, server = g.DstAddr, g.SrcAddr
		}
		if c.Proto == policy.ProtoICMP || c.Proto == policy.ProtoICMPv6 {
			c.DstPort = 0
		}
		key := fmt.Sprint(c.Outcome, "|", c.SrcSegment, "|", c.DstSegment, "|", c.Proto, "|", c.DstPort, "|",
			c.SrcIdentity, "|", c.Before, "|", c.BeforeRule, "|", c.After, "|", c.AfterRule, "|", c.Reason)
		a := changes[key]
		if a == nil {
			a = &acc{c: c, examples: map[string]bool{}}
			changes[key] = a
		}
		a.c.Flows += g.Flows
		a.c.Bytes += g.Bytes
		if g.Reply {
			a.c.Replies += g.Flows
		}
		a.examples[client.String()+" -> "+server.String()] = true
	}
	for _, a := range changes {
		ex := sortedKeys(a.examples)
		if len(ex) > opt.Examples {
			ex = ex[:opt.Examples]
		}
		a.c.Examples = ex
		sim.Changes = append(sim.Changes, a.c)
	}
	sort.Slice(sim.Changes, func(i, j int) bool { return changeKey(&sim.Changes[i]) < changeKey(&sim.Changes[j]) })
	return sim, nil
}

var outcomeOrder = map[string]string{NewlyBlocked: "0", NewlyAllowed: "1", Uncertain: "2", Unchanged: "3"}

func changeKey(c *Change) string {
	return strings.Join([]string{outcomeOrder[c.Outcome], c.SrcSegment, c.DstSegment, fmt.Sprintf("%03d|%05d", c.Proto, c.DstPort),
		c.SrcIdentity, c.Before, c.BeforeRule, c.After, c.AfterRule, c.Reason}, "|")
}

// passes reports whether a stored verdict lets the flow through.
func passes(verdict string) bool {
	return verdict == policy.VerdictAllowed.String() || verdict == policy.VerdictIntraSegment.String()
}

// missingIdentity reports whether either end of g lacks an identity (no
// login binding and no service account under the draft).
func missingIdentity(g *query.ReplayGroup, src, dst *policy.Endpoint) bool {
	return (g.SrcIdentity == "" && src.ServiceAccount == "") || (g.DstIdentity == "" && dst.ServiceAccount == "")
}

func withoutIdentities(p *policy.Policy) *policy.Policy {
	q := *p
	q.Rules = make([]policy.Rule, len(p.Rules))
	for i, r := range p.Rules {
		r.Identities = nil
		q.Rules[i] = r
	}
	return &q
}
