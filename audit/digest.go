package audit

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// Digest is one screen against log overload (`audit digest`): what is
// new in the window, what is hot, and what went quiet against the
// previous window of the same length.
type Digest struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// PreviousFrom starts the previous window [PreviousFrom, From) that
	// Quiet compares with.
	PreviousFrom time.Time   `json:"previous_from"`
	New          DigestNew   `json:"new"`
	Hot          DigestHot   `json:"hot"`
	Quiet        []QuietRule `json:"quiet"`
}

// DigestNew is what appeared in the window.
type DigestNew struct {
	// Edges are the service edges first seen in the window (as drift's
	// new edges), sorted by first seen.
	Edges []DriftEdge `json:"edges"`
	// SensitiveIdentities are the new edges with a client identity into
	// a segment tagged sensitive or pci-cde (by the configured policy).
	SensitiveIdentities []DriftEdge `json:"sensitive_identities"`
	// PolicyVersions are the versions that came into force in the window.
	PolicyVersions []DriftVersion `json:"policy_versions"`
}

// DigestHot is what was busiest in the window.
type DigestHot struct {
	// Violations are the violation edges with the most flows (at most
	// DigestTop), by flows, then client segment, server segment, port.
	Violations []DigestViolation `json:"violations"`
	// Alerts counts the window's alerts per kind and severity, by count,
	// then kind, severity.
	Alerts []AlertCount `json:"alerts"`
}

// DigestViolation is one violation edge of the window.
type DigestViolation struct {
	ClientSegment string    `json:"src_segment"`
	ServerSegment string    `json:"dst_segment"`
	Port          uint16    `json:"dst_port"`
	Proto         string    `json:"proto"`
	Rules         []string  `json:"rules"`
	Flows         uint64    `json:"flows"`
	Bytes         uint64    `json:"bytes"`
	Hours         uint64    `json:"hours"`
	LastSeen      time.Time `json:"last_seen"`
}

// AlertCount is the number of alerts of one kind and severity.
type AlertCount struct {
	Kind     string `json:"kind"`
	Severity string `json:"severity"`
	Count    int    `json:"count"`
}

// QuietRule is a rule that decided flows in the previous window and none
// in this one, sorted by previous flows (most first), then rule.
type QuietRule struct {
	Rule          string    `json:"rule"`
	PreviousFlows uint64    `json:"previous_flows"`
	LastSeen      time.Time `json:"last_seen"`
}

// DigestTop bounds the hot violation list.
const DigestTop = 10

// DigestInput is what a digest is made of: rows from query/ over the
// window w (and the previous window, for RulesBefore).
type DigestInput struct {
	Window       query.Window
	Applications []query.PolicyApplication // PolicyApplications(w.To)
	NewEdges     []query.EdgeSighting      // EdgesFirstSeen(w)
	Violations   []query.ViolationEdge     // ViolationEdges(w)
	Alerts       []query.Alert             // Alerts(w, every kind)
	Rules        []query.RuleTraffic       // RuleTraffics(w)
	RulesBefore  []query.RuleTraffic       // RuleTraffics of the previous window
	// Policy tags the segments (sensitive ones); nil when none is
	// configured: then no edge counts as sensitive.
	Policy *policy.Policy
}

// DigestOf assembles the digest of in.
func DigestOf(in DigestInput) *Digest {
	w := in.Window
	d := &Digest{From: w.From, To: w.To, PreviousFrom: w.From.Add(-w.To.Sub(w.From)),
		New: DigestNew{Edges: []DriftEdge{}, SensitiveIdentities: []DriftEdge{}, PolicyVersions: []DriftVersion{}},
		Hot: DigestHot{Violations: []DigestViolation{}, Alerts: []AlertCount{}}, Quiet: []QuietRule{}}
	sensitive := map[string]bool{}
	if in.Policy != nil {
		for _, s := range in.Policy.Segments {
			sensitive[s.Name] = Sensitive(s.Tags)
		}
	}
	drift := DriftOf(w, in.Applications, in.NewEdges, nil)
	d.New.Edges, d.New.PolicyVersions = drift.NewEdges, drift.Versions
	for _, e := range drift.NewEdges {
		if e.Identity != "" && sensitive[e.ServerSegment] {
			d.New.SensitiveIdentities = append(d.New.SensitiveIdentities, e)
		}
	}
	for _, v := range in.Violations {
		d.Hot.Violations = append(d.Hot.Violations, DigestViolation{ClientSegment: v.ClientSegment, ServerSegment: v.ServerSegment,
			Port: v.Port, Proto: protoName(v.Proto), Rules: nonEmpty(v.Rules), Flows: v.Flows, Bytes: v.Bytes, Hours: v.Hours, LastSeen: v.LastSeen})
	}
	sort.SliceStable(d.Hot.Violations, func(i, j int) bool { return d.Hot.Violations[i].Flows > d.Hot.Violations[j].Flows })
	if len(d.Hot.Violations) > DigestTop {
		d.Hot.Violations = d.Hot.Violations[:DigestTop]
	}
	counts := map[[2]string]int{}
	for _, a := range in.Alerts {
		counts[[2]string{a.Kind, a.Severity}]++
	}
	for k, n := range counts {
		d.Hot.Alerts = append(d.Hot.Alerts, AlertCount{Kind: k[0], Severity: k[1], Count: n})
	}
	sort.Slice(d.Hot.Alerts, func(i, j int) bool {
		a, b := d.Hot.Alerts[i], d.Hot.Alerts[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Severity < b.Severity
	})
	now := map[string]bool{}
	for _, r := range in.Rules {
		if r.Flows > 0 {
			now[r.Rule] = true
		}
	}
	for _, r := range in.RulesBefore {
		if r.Flows > 0 && !now[r.Rule] {
			d.Quiet = append(d.Quiet, QuietRule{Rule: r.Rule, PreviousFlows: r.Flows, LastSeen: r.LastSeen})
		}
	}
	sort.Slice(d.Quiet, func(i, j int) bool {
		if d.Quiet[i].PreviousFlows != d.Quiet[j].PreviousFlows {
			return d.Quiet[i].PreviousFlows > d.Quiet[j].PreviousFlows
		}
		return d.Quiet[i].Rule < d.Quiet[j].Rule
	})
	return d
}

func nonEmpty(s []string) []string {
	out := []string{}
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Empty reports whether nothing is new, hot or quiet.
func (d *Digest) Empty() bool {
	return len(d.New.Edges)+len(d.New.PolicyVersions)+len(d.Hot.Violations)+len(d.Hot.Alerts)+len(d.Quiet) == 0
}

// WriteDigestTable writes d as one screen: new, hot, quiet.
func WriteDigestTable(w io.Writer, d *Digest) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Digest %s to %s\n", ts(d.From), ts(d.To))
	fmt.Fprintf(tw, "\nNEW: %d edges, %d identities into sensitive segments, %d policy versions\n",
		len(d.New.Edges), len(d.New.SensitiveIdentities), len(d.New.PolicyVersions))
	if len(d.New.Edges) > 0 {
		fmt.Fprintln(tw, "FROM\tTO\tPORT\tIDENTITY\tVERDICTS\tFIRST SEEN\tFLOWS\tSENSITIVE")
		sens := map[DriftEdgeKey]bool{}
		for _, e := range d.New.SensitiveIdentities {
			sens[e.Key()] = true
		}
		for _, e := range d.New.Edges {
			mark := ""
			if sens[e.Key()] {
				mark = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%s\t%s\t%s\t%s\t%d\t%s\n", e.ClientSegment, e.ServerSegment, e.Port, e.Proto,
				dash(e.Identity), joinComma(e.Verdicts), ts(e.FirstSeen), e.Flows, dash(mark))
		}
	}
	for _, v := range d.New.PolicyVersions {
		fmt.Fprintf(tw, "policy %s applied %s on %s: %d opened, %d closed\n", short(v.Version), ts(v.LoadedAt), dash(v.Host), v.Opened, v.Closed)
	}
	fmt.Fprintf(tw, "\nHOT: top %d violation edges, %d alert kinds\n", len(d.Hot.Violations), len(d.Hot.Alerts))
	if len(d.Hot.Violations) > 0 {
		fmt.Fprintln(tw, "FROM\tTO\tPORT\tFLOWS\tHOURS\tLAST SEEN\tDENY RULES")
		for _, v := range d.Hot.Violations {
			fmt.Fprintf(tw, "%s\t%s\t%d/%s\t%d\t%d\t%s\t%s\n", v.ClientSegment, v.ServerSegment, v.Port, v.Proto,
				v.Flows, v.Hours, ts(v.LastSeen), joinComma(v.Rules))
		}
	}
	if len(d.Hot.Alerts) > 0 {
		var parts []string
		for _, a := range d.Hot.Alerts {
			parts = append(parts, fmt.Sprintf("%s/%s %d", a.Kind, a.Severity, a.Count))
		}
		fmt.Fprintf(tw, "alerts: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(tw, "\nQUIET: %d rules lost their traffic (vs %s to %s)\n", len(d.Quiet), ts(d.PreviousFrom), ts(d.From))
	if len(d.Quiet) > 0 {
		fmt.Fprintln(tw, "RULE\tPREVIOUS FLOWS\tLAST SEEN")
		for _, q := range d.Quiet {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", q.Rule, q.PreviousFlows, ts(q.LastSeen))
		}
	}
	return tw.Flush()
}

// DriftEdgeKey identifies a DriftEdge.
type DriftEdgeKey struct {
	ClientSegment, ServerSegment, Proto, Identity string
	Port                                          uint16
}

// Key returns e's identifying fields.
func (e DriftEdge) Key() DriftEdgeKey {
	return DriftEdgeKey{e.ClientSegment, e.ServerSegment, e.Proto, e.Identity, e.Port}
}
