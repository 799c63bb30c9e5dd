package audit

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// Drift is how policy and traffic moved over a window (`audit drift`):
// every policy version applied in it with what it opened and closed, the
// service edges first seen since the last version, and the violations per
// day.
type Drift struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Current is the version in force at To ("" when none was applied).
	Current string `json:"current"`
	// Versions are the applications that changed the version in force,
	// oldest first; re-applications of the version in force (restarts,
	// other enrichers) are counted in Applications.
	Versions []DriftVersion `json:"versions"`
	// NewEdgesSince is the last version's loaded time (the window's start
	// when no version was applied in it); NewEdges the service edges
	// first seen from its hour on, sorted by first hour, client segment,
	// server segment, proto, port, identity.
	NewEdgesSince time.Time   `json:"new_edges_since"`
	NewEdges      []DriftEdge `json:"new_edges"`
	// Violations per day (server days), oldest first; days without
	// violations are absent.
	Violations []DriftDay `json:"violations"`
}

// DriftVersion is one policy version that came into force.
type DriftVersion struct {
	Version  string    `json:"version"`
	LoadedAt time.Time `json:"loaded_at"`
	Host     string    `json:"host"`
	Path     string    `json:"path"`
	Summary  string    `json:"summary"`
	// Previous is the version it replaced ("" for the first ever applied:
	// then nothing is compared).
	Previous     string `json:"previous"`
	Applications int    `json:"applications"`
	Opened       int    `json:"opened"`
	Closed       int    `json:"closed"`
	// Changes is DiffPolicies(previous, this); Error says why it could not
	// be computed (a stored file that no longer parses).
	Changes []DiffChange `json:"changes"`
	Error   string       `json:"error,omitempty"`
}

// DriftEdge is a service edge first seen since the last version.
type DriftEdge struct {
	ClientSegment string    `json:"src_segment"`
	ServerSegment string    `json:"dst_segment"`
	Port          uint16    `json:"dst_port"`
	Proto         string    `json:"proto"`
	Identity      string    `json:"src_identity"`
	Verdicts      []string  `json:"verdicts"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
	Flows         uint64    `json:"flows"`
	Bytes         uint64    `json:"bytes"`
}

// DriftDay is the violations of one day.
type DriftDay struct {
	Day   string `json:"day"` // YYYY-MM-DD
	Flows uint64 `json:"flows"`
	Edges uint64 `json:"edges"`
}

// VersionChange is one policy version that replaced another in a
// sequence of applications, with the decoded diff.
type VersionChange struct {
	Prev, Next   *query.PolicyApplication // Prev nil for the first version
	Applications int                      // applications of Next while in force
	Diff         *PolicyDiff              // nil with Prev nil or Err
	Err          error
}

// VersionChanges walks apps (sorted by loaded time, PolicyApplications)
// and returns each application that changed the version in force, with
// the semantic diff against the one before.
func VersionChanges(apps []query.PolicyApplication) []VersionChange {
	var out []VersionChange
	var cur *query.PolicyApplication
	for i := range apps {
		a := &apps[i]
		if cur != nil && a.Version == cur.Version {
			out[len(out)-1].Applications++
			continue
		}
		c := VersionChange{Prev: cur, Next: a, Applications: 1}
		if cur != nil {
			c.Diff, c.Err = diffContents(cur, a)
		}
		out = append(out, c)
		cur = a
	}
	return out
}

func diffContents(old, new *query.PolicyApplication) (*PolicyDiff, error) {
	op, err := policy.Parse(old.Content, "version "+short(old.Version))
	if err != nil {
		return nil, err
	}
	np, err := policy.Parse(new.Content, "version "+short(new.Version))
	if err != nil {
		return nil, err
	}
	return DiffPolicies(op, np)
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

// DriftOf assembles a Drift over w from every policy application before
// w.To (PolicyApplications), the edges first seen since the last version
// (EdgesFirstSeen over [NewEdgesSince(apps, w), w.To)) and the
// violations per day of w.
func DriftOf(w query.Window, apps []query.PolicyApplication, edges []query.EdgeSighting, days []query.DailyViolations) *Drift {
	d := &Drift{From: w.From, To: w.To, Versions: []DriftVersion{}, NewEdges: []DriftEdge{}, Violations: []DriftDay{},
		NewEdgesSince: NewEdgesSince(apps, w)}
	for _, c := range VersionChanges(apps) {
		d.Current = c.Next.Version
		if c.Next.LoadedAt.Before(w.From) {
			continue
		}
		v := DriftVersion{Version: c.Next.Version, LoadedAt: c.Next.LoadedAt, Host: c.Next.Host, Path: c.Next.Path,
			Summary: c.Next.Summary, Applications: c.Applications, Changes: []DiffChange{}}
		if c.Prev != nil {
			v.Previous = c.Prev.Version
		}
		switch {
		case c.Err != nil:
			v.Error = c.Err.Error()
		case c.Diff != nil:
			v.Changes, v.Opened, v.Closed = c.Diff.Changes, c.Diff.Summary.Added, c.Diff.Summary.Removed
		}
		d.Versions = append(d.Versions, v)
	}
	for _, e := range edges {
		d.NewEdges = append(d.NewEdges, DriftEdge{ClientSegment: e.ClientSegment, ServerSegment: e.ServerSegment,
			Port: e.Port, Proto: protoName(e.Proto), Identity: e.Identity, Verdicts: e.Verdicts,
			FirstSeen: e.FirstHour, LastSeen: e.LastSeen, Flows: e.Flows, Bytes: e.Bytes})
	}
	for _, v := range days {
		d.Violations = append(d.Violations, DriftDay{Day: v.Day.Format("2006-01-02"), Flows: v.Flows, Edges: v.Edges})
	}
	return d
}

// NewEdgesSince is the start of the "new edges" of a drift: the loaded
// time of the last version change in w, else w.From.
func NewEdgesSince(apps []query.PolicyApplication, w query.Window) time.Time {
	since := w.From
	for _, c := range VersionChanges(apps) {
		if !c.Next.LoadedAt.Before(w.From) && c.Next.LoadedAt.Before(w.To) {
			since = c.Next.LoadedAt
		}
	}
	return since
}

// WriteDriftTable writes d as readable sections: versions with their
// changes, new edges, violations per day.
func WriteDriftTable(w io.Writer, d *Drift) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Policy drift %s to %s: %d versions applied, in force: %s\n", ts(d.From), ts(d.To), len(d.Versions), dash(short(d.Current)))
	for _, v := range d.Versions {
		fmt.Fprintf(tw, "\n%s  version %s (%s) on %s, replacing %s: %d opened, %d closed\n", ts(v.LoadedAt), short(v.Version),
			dash(v.Summary), dash(v.Host), dash(short(v.Previous)), v.Opened, v.Closed)
		if v.Error != "" {
			fmt.Fprintf(tw, "  not compared: %s\n", v.Error)
		}
		writeDiffRows(tw, v.Changes)
	}
	fmt.Fprintf(tw, "\nService edges first seen since %s: %d\n", ts(d.NewEdgesSince), len(d.NewEdges))
	if len(d.NewEdges) > 0 {
		fmt.Fprintln(tw, "FROM\tTO\tPORT\tIDENTITY\tVERDICTS\tFIRST SEEN\tLAST SEEN\tFLOWS")
		for _, e := range d.NewEdges {
			fmt.Fprintf(tw, "%s\t%s\t%d/%s\t%s\t%s\t%s\t%s\t%d\n", e.ClientSegment, e.ServerSegment, e.Port, e.Proto,
				dash(e.Identity), joinComma(e.Verdicts), ts(e.FirstSeen), ts(e.LastSeen), e.Flows)
		}
	}
	fmt.Fprintf(tw, "\nViolations per day: %d days\n", len(d.Violations))
	if len(d.Violations) > 0 {
		fmt.Fprintln(tw, "DAY\tFLOWS\tEDGES")
		for _, v := range d.Violations {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", v.Day, v.Flows, v.Edges)
		}
	}
	return tw.Flush()
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return dash(out)
}
