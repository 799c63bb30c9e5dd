package probe

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/flowaudit/flowaudit/policy"
)

// Outcome is the verdict on one attempt.
type Outcome string

// Outcomes (the probe_results.result values).
const (
	// OutcomePass: what happened is what the policy says.
	OutcomePass Outcome = "pass"
	// OutcomeBreach: the policy denies it and the target answered (a TCP
	// handshake, a UDP reply, an echo reply): segmentation is not enforced.
	OutcomeBreach Outcome = "breach"
	// OutcomeBlocked: the policy allows it and the path refused or dropped
	// it (or the attempt failed): a broken legitimate path.
	OutcomeBlocked Outcome = "blocked"
)

// outcome judges an observation against an expectation. A refusal by the
// target itself (closed) passes both ways: for an allowed port the path
// reached the host, which runs no such service; for a denied one nothing
// answered. Only a completed connection breaches.
func outcome(exp Expectation, obs Observation) Outcome {
	switch exp {
	case ExpectAllow:
		if obs == ObservedOpen || obs == ObservedClosed {
			return OutcomePass
		}
		return OutcomeBlocked
	default:
		if obs == ObservedOpen {
			return OutcomeBreach
		}
		return OutcomePass
	}
}

// Result is one attempt of a run.
type Result struct {
	Check
	Time     time.Time
	Observed Observation
	Result   Outcome
	RTT      time.Duration
	Detail   string
}

// Summary counts a run's results.
type Summary struct {
	Pass    int `json:"pass"`
	Breach  int `json:"breach"`
	Blocked int `json:"blocked"`
	// Skipped counts checks not attempted because the run's bound
	// (probe.max_duration) or a stop ended it first.
	Skipped int `json:"skipped"`
}

// Report is one run.
type Report struct {
	RunID        string
	Prober       string
	Source       Source
	Start, End   time.Time
	Results      []Result // sorted: breach, blocked, pass; then as the plan
	Summary      Summary
	IdentityOnly int    // see Plan.IdentityOnly
	ICMPSkipped  string // why ICMP echo was not probed; "" when it was (or disabled)
}

func (r *Report) finish() {
	rank := map[Outcome]int{OutcomeBreach: 0, OutcomeBlocked: 1, OutcomePass: 2}
	slices.SortStableFunc(r.Results, func(a, b Result) int {
		return cmp.Or(cmp.Compare(rank[a.Result], rank[b.Result]), cmp.Compare(a.DstSegment, b.DstSegment),
			a.DstAddr.Compare(b.DstAddr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.DstPort, b.DstPort))
	})
	r.Summary.Pass, r.Summary.Breach, r.Summary.Blocked = 0, 0, 0
	for _, res := range r.Results {
		switch res.Result {
		case OutcomePass:
			r.Summary.Pass++
		case OutcomeBreach:
			r.Summary.Breach++
		case OutcomeBlocked:
			r.Summary.Blocked++
		}
	}
}

// ProtoName gives a protocol's name as the policy file writes it.
func ProtoName(proto uint8) string {
	switch proto {
	case policy.ProtoTCP:
		return "tcp"
	case policy.ProtoUDP:
		return "udp"
	case policy.ProtoICMP:
		return "icmp"
	case policy.ProtoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(proto))
}

func portName(port uint16, proto uint8) string {
	if proto == policy.ProtoICMP || proto == policy.ProtoICMPv6 {
		return ProtoName(proto) + " echo"
	}
	return strconv.Itoa(int(port)) + "/" + ProtoName(proto)
}

// WriteTable writes the results as a readable table and a summary line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tEXPECTED\tOBSERVED\tSOURCE\tTARGET\tSEGMENT\tWORKLOAD\tPORT\tRULE\tRTT")
	for _, res := range r.Results {
		src := res.SrcSegment
		if res.SrcAddr.IsValid() {
			src = res.SrcAddr.String() + " (" + res.SrcSegment + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Result, res.Expected, res.Observed, src,
			res.DstAddr, res.DstSegment, dash(res.DstWorkload), portName(res.DstPort, res.Proto), dash(res.Rule),
			res.RTT.Round(100*time.Microsecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nrun %s from %s: %d pass, %d breach, %d blocked", r.RunID, r.Source.Segment,
		r.Summary.Pass, r.Summary.Breach, r.Summary.Blocked)
	if r.Summary.Skipped > 0 {
		fmt.Fprintf(w, ", %d skipped (run bound reached)", r.Summary.Skipped)
	}
	fmt.Fprintf(w, " in %s\n", r.End.Sub(r.Start).Round(time.Millisecond))
	if r.IdentityOnly > 0 {
		fmt.Fprintf(w, "%d port(s) not probed: only identity-restricted rules allow them, which a network probe cannot exercise\n", r.IdentityOnly)
	}
	if r.ICMPSkipped != "" {
		fmt.Fprintf(w, "ICMP echo not probed: %s\n", r.ICMPSkipped)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// JSONReport is the JSON shape of a run (DESIGN.md: fields may be added,
// never renamed).
type JSONReport struct {
	RunID        string       `json:"run_id"`
	Prober       string       `json:"prober"`
	SrcSegment   string       `json:"src_segment"`
	Start        time.Time    `json:"start"`
	End          time.Time    `json:"end"`
	Summary      Summary      `json:"summary"`
	IdentityOnly int          `json:"identity_only"`
	ICMPSkipped  string       `json:"icmp_skipped,omitempty"`
	Results      []JSONResult `json:"results"`
}

// JSONResult is one attempt in JSONReport.
type JSONResult struct {
	Time        time.Time   `json:"time"`
	SrcAddr     string      `json:"src_addr"`
	SrcSegment  string      `json:"src_segment"`
	DstAddr     string      `json:"dst_addr"`
	DstSegment  string      `json:"dst_segment"`
	DstWorkload string      `json:"dst_workload"`
	DstPort     uint16      `json:"dst_port"`
	Proto       string      `json:"proto"`
	Expected    Expectation `json:"expected"`
	Observed    Observation `json:"observed"`
	Result      Outcome     `json:"result"`
	Rule        string      `json:"rule"`
	RTTMillis   float64     `json:"rtt_ms"`
	Detail      string      `json:"detail,omitempty"`
}

// JSON returns r in its JSON shape.
func (r *Report) JSON() JSONReport {
	out := JSONReport{RunID: r.RunID, Prober: r.Prober, SrcSegment: r.Source.Segment, Start: r.Start.UTC(), End: r.End.UTC(),
		Summary: r.Summary, IdentityOnly: r.IdentityOnly, ICMPSkipped: r.ICMPSkipped, Results: []JSONResult{}}
	for _, res := range r.Results {
		out.Results = append(out.Results, JSONResult{
			Time: res.Time.UTC(), SrcAddr: addrString(res.SrcAddr), SrcSegment: res.SrcSegment,
			DstAddr: res.DstAddr.String(), DstSegment: res.DstSegment, DstWorkload: res.DstWorkload,
			DstPort: res.DstPort, Proto: ProtoName(res.Proto), Expected: res.Expected, Observed: res.Observed,
			Result: res.Result, Rule: res.Rule, RTTMillis: float64(res.RTT.Microseconds()) / 1000, Detail: res.Detail,
		})
	}
	return out
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.JSON())
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
