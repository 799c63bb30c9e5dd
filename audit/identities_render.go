package audit

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// IdentityCSVHeader is the header row of WriteIdentityCSV. The last three
// columns are left empty for the periodic access review (PCI DSS 7.2.4):
// who reviewed the row, whether the access is acknowledged as needed
// (yes/no), and notes.
var IdentityCSVHeader = []string{"identity", "kind", "src_segments", "dst_segment", "dst_workload", "dst_port", "proto", "service",
	"sensitive", "source", "verdict", "rule", "rules", "flows", "bytes", "access_events", "violation_flows", "first_seen", "last_seen",
	"examples", "reviewer", "acknowledged", "review_notes"}

// WriteIdentityCSV writes one row per identity × destination × service
// of rev (rev.Identities, in its order) under IdentityCSVHeader. service
// is empty for access events that named no port (dst_port 0).
func WriteIdentityCSV(w io.Writer, rev *IdentityReview) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(IdentityCSVHeader); err != nil {
		return err
	}
	for _, r := range rev.Identities {
		rec := []string{r.Identity, r.Kind, strings.Join(r.SrcSegments, " "), r.DstSegment, r.DstWorkload,
			strconv.Itoa(int(r.DstPort)), strconv.Itoa(int(r.Proto)), serviceName(r.DstPort, r.Proto), strconv.FormatBool(r.Sensitive),
			r.Source, r.Verdict, r.Rule, strings.Join(r.Rules, " "), strconv.FormatUint(r.Flows, 10), strconv.FormatUint(r.Bytes, 10),
			strconv.FormatUint(r.AccessEvents, 10), strconv.FormatUint(r.ViolationFlows, 10), ts(r.FirstSeen), ts(r.LastSeen),
			strings.Join(r.Examples, "; "), "", "", ""}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteIdentityTable writes rev as readable tables: one line per
// identity, then every identity's destinations, the dormant entitlements
// and the unattributed share of access into sensitive segments.
func WriteIdentityTable(w io.Writer, rev *IdentityReview) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := rev.Summary
	fmt.Fprintf(tw, "Identity access review, %s to %s: %d identities (%d users, %d service accounts), %d destinations (%d sensitive, %d with violations), %d dormant entitlements\n",
		ts(rev.From), ts(rev.To), s.Identities, s.Users, s.ServiceAccounts, s.Rows, s.SensitiveRows, s.ViolationRows, s.Dormant)
	fmt.Fprintln(tw, "IDENTITY\tKIND\tSEGMENTS\tPORTS\tRULES\tFLOWS\tACCESS\tVIOLATIONS\tFIRST SEEN\tLAST SEEN\tDORMANT")
	for _, p := range rev.Profiles {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", p.Identity, p.Kind, dash(strings.Join(p.Segments, ",")),
			dash(strings.Join(p.Ports, ",")), dash(strings.Join(p.Rules, ",")), p.Flows, p.AccessEvents, p.ViolationFlows,
			ts(p.FirstSeen), ts(p.LastSeen), dash(strings.Join(p.Dormant, ",")))
	}
	if len(rev.Identities) > 0 {
		fmt.Fprintf(tw, "\nDestinations (identity × destination × service): %d\n", len(rev.Identities))
		fmt.Fprintln(tw, "IDENTITY\tFROM\tDST SEGMENT\tDST WORKLOAD\tPORT\tVERDICT\tRULE\tFLOWS\tACCESS\tFIRST SEEN\tLAST SEEN")
		for _, r := range rev.Identities {
			seg := r.DstSegment
			if seg == "" {
				seg = "?"
			}
			if r.Sensitive {
				seg += " (sensitive)"
			}
			rule := strings.Join(r.Rules, ",")
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Identity, dash(strings.Join(r.SrcSegments, ",")), seg,
				dash(r.DstWorkload), dash(serviceName(r.DstPort, r.Proto)), r.Verdict, dash(rule), r.Flows, r.AccessEvents,
				ts(r.FirstSeen), ts(r.LastSeen))
		}
	}
	if len(rev.Dormant) > 0 {
		fmt.Fprintf(tw, "\nDormant entitlements (identity-scoped rules not used in the window): %d\n", len(rev.Dormant))
		fmt.Fprintln(tw, "IDENTITY\tRULE\tFROM\tTO\tPORTS\tIDENTITY ACTIVE")
		for _, d := range rev.Dormant {
			active := "no"
			if d.Seen {
				active = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Identity, d.Rule, strings.Join(d.From, ","), strings.Join(d.To, ","),
				strings.Join(d.Ports, ","), active)
		}
	}
	u := rev.Unattributed
	if len(u.Segments) == 0 {
		fmt.Fprintln(tw, "\nNo segment is tagged sensitive or pci-cde: no unattributed share to report.")
		return tw.Flush()
	}
	fmt.Fprintf(tw, "\nUnattributed access into sensitive segments: %d of %d cross-segment flows (%s)\n", u.Flows, u.TotalFlows, percent(u.Share))
	fmt.Fprintln(tw, "SEGMENT\tUNATTRIBUTED\tTOTAL\tSHARE\tPORTS\tTOP SOURCES")
	for _, b := range u.BySegment {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", b.Segment, b.Flows, b.TotalFlows, percent(b.Share), dash(counts(b.Ports)), dash(counts(b.Sources)))
	}
	return tw.Flush()
}

func percent(f float64) string { return strconv.FormatFloat(100*f, 'f', 2, 64) + "%" }

func counts(cs []Count) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s (%d)", c.Value, c.Flows))
	}
	return strings.Join(parts, " ")
}
