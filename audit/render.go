package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flowaudit/flowaudit/policy"
)

// WriteJSON writes v as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteRecommendationTable writes rec as readable tables: the rules, then
// the held edges.
func WriteRecommendationTable(w io.Writer, rec *Recommendation) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Recommended rules (%s granularity, window %s to %s): %d\n", rec.Granularity, ts(rec.From), ts(rec.To), len(rec.Rules))
	fmt.Fprintln(tw, "RULE\tFROM\tTO\tPORTS\tIDENTITIES\tSTATUS\tFLOWS\tBYTES\tFIRST SEEN\tLAST SEEN\tTOP SOURCES")
	for _, r := range rec.Rules {
		from, to := strings.Join(r.From, ","), strings.Join(r.To, ",")
		if r.FromWorkload != "" {
			from += "/" + r.FromWorkload
		}
		if r.ToWorkload != "" {
			to += "/" + r.ToWorkload
		}
		ports := strings.Join(r.Ports, ",")
		if r.Generalized {
			ports += " (generalized)"
		}
		var srcs []string
		for i, s := range r.Evidence.TopSources {
			if i == 3 {
				break
			}
			srcs = append(srcs, fmt.Sprintf("%s (%d)", s.Value, s.Flows))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", r.Name, from, to, ports,
			dash(strings.Join(r.Identities, ",")), r.Status, r.Evidence.Flows, r.Evidence.Bytes,
			ts(r.Evidence.FirstSeen), ts(r.Evidence.LastSeen), dash(strings.Join(srcs, " ")))
	}
	if len(rec.Held) > 0 {
		fmt.Fprintf(tw, "\nHeld for review (behind an alert, not turned into rules): %d\n", len(rec.Held))
		fmt.Fprintln(tw, "FROM\tTO\tPORT\tKINDS\tFLOWS\tSOURCES\tCOVERED BY\tALERTS")
		for _, h := range rec.Held {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", h.From, h.To, h.Port, strings.Join(h.Kinds, ","), h.Flows,
				strings.Join(h.Sources, ","), dash(h.CoveredBy), strings.Join(h.Alerts, ","))
		}
	}
	if rec.Skipped > 0 {
		fmt.Fprintf(tw, "\n%d flows of protocols a rule cannot name were skipped\n", rec.Skipped)
	}
	return tw.Flush()
}

// WriteSimulationTable writes sim as a summary line and a table of the
// changes.
func WriteSimulationTable(w io.Writer, sim *Simulation) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := sim.Summary
	fmt.Fprintf(tw, "Simulation over %s to %s: %d flows newly blocked, %d newly allowed, %d unchanged, %d uncertain\n",
		ts(sim.From), ts(sim.To), s.NewlyBlocked, s.NewlyAllowed, s.Unchanged, s.Uncertain)
	if len(sim.Changes) == 0 {
		return tw.Flush()
	}
	fmt.Fprintln(tw, "OUTCOME\tSRC SEGMENT\tDST SEGMENT\tPORT\tIDENTITY\tBEFORE\tAFTER\tFLOWS\tEXAMPLES")
	for _, c := range sim.Changes {
		before, after := c.Before, c.After
		if c.BeforeRule != "" {
			before += " (" + c.BeforeRule + ")"
		}
		if c.AfterRule != "" {
			after += " (" + c.AfterRule + ")"
		}
		outcome := c.Outcome
		if c.Reason != "" {
			outcome += ": " + c.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", outcome, c.SrcSegment, c.DstSegment,
			portProto(c.DstPort, c.Proto), dash(c.SrcIdentity), before, after, c.Flows, strings.Join(c.Examples, ", "))
	}
	return tw.Flush()
}

func portProto(port uint16, proto uint8) string {
	name, hasPorts, ok := protoSpec(proto)
	switch {
	case !ok:
		return fmt.Sprintf("%d/%d", port, proto)
	case !hasPorts:
		return name
	}
	return fmt.Sprintf("%d/%s", port, name)
}

// Policy file shape, for writing (the loader is policy.Parse).
type yamlPolicy struct {
	Segments  []yamlSegment   `yaml:"segments"`
	Inventory []yamlInventory `yaml:"inventory,omitempty"`
	Rules     []yamlRule      `yaml:"rules"`
	Default   string          `yaml:"default"`
}

type yamlSegment struct {
	Name  string   `yaml:"name"`
	CIDRs []string `yaml:"cidrs"`
	Tags  []string `yaml:"tags,omitempty"`
}

type yamlInventory struct {
	CIDR           string            `yaml:"cidr"`
	Workload       string            `yaml:"workload,omitempty"`
	Owner          string            `yaml:"owner,omitempty"`
	ServiceAccount string            `yaml:"service_account,omitempty"`
	Labels         map[string]string `yaml:"labels,omitempty"`
}

type yamlRule struct {
	Name       string   `yaml:"name"`
	From       []string `yaml:"from"`
	To         []string `yaml:"to"`
	Ports      []string `yaml:"ports"`
	Identities []string `yaml:"identities,omitempty"`
}

// WritePolicy writes the recommended policy (RecommendedPolicy) as a
// policy file: base's segments and inventory, rec's rules, each with its
// evidence in a comment, and the held edges in a closing comment. It is
// valid input for `flowaudit policy validate` and `audit simulate`.
func WritePolicy(w io.Writer, base *policy.Policy, rec *Recommendation) error {
	for _, r := range rec.Rules {
		if r.FromWorkload != "" || r.ToWorkload != "" {
			return fmt.Errorf("audit: rule %s names workloads, which the policy file cannot express yet; use --granularity segment or --format json", r.Name)
		}
	}
	doc := yamlPolicy{Default: policy.DefaultDeny, Rules: []yamlRule{}}
	for _, s := range base.Segments {
		ys := yamlSegment{Name: s.Name, Tags: s.Tags}
		for _, c := range s.CIDRs {
			ys.CIDRs = append(ys.CIDRs, c.String())
		}
		doc.Segments = append(doc.Segments, ys)
	}
	for _, e := range base.Inventory {
		doc.Inventory = append(doc.Inventory, yamlInventory{CIDR: e.CIDR.String(), Workload: e.Workload, Owner: e.Owner,
			ServiceAccount: e.ServiceAccount, Labels: e.Labels})
	}
	for _, r := range rec.Rules {
		doc.Rules = append(doc.Rules, yamlRule{Name: r.Name, From: r.From, To: r.To, Ports: r.Ports, Identities: r.Identities})
	}
	var root yaml.Node
	if err := root.Encode(doc); err != nil {
		return err
	}
	flowStyle(&root)
	root.HeadComment = fmt.Sprintf("Recommended by flowaudit audit recommend from traffic %s to %s:\n%d rules, %d edges held for review.",
		ts(rec.From), ts(rec.To), len(rec.Rules), len(rec.Held))
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "rules" {
			continue
		}
		items := root.Content[i+1].Content
		for j, r := range rec.Rules {
			ev := r.Evidence
			c := fmt.Sprintf("%s: %d flows, %d bytes, %s to %s", r.Status, ev.Flows, ev.Bytes, ts(ev.FirstSeen), ts(ev.LastSeen))
			if r.Generalized {
				c += "; generalized from many ports"
			}
			if ev.Uncovered > 0 {
				c += fmt.Sprintf("; %d flows without the identity stay uncovered", ev.Uncovered)
			}
			items[j].HeadComment = c
		}
	}
	if len(rec.Held) > 0 {
		var b strings.Builder
		b.WriteString("Held for review (behind alerts; not allowed by a rule of their own):")
		for _, h := range rec.Held {
			fmt.Fprintf(&b, "\n  %s -> %s %s from %s: %d flows; %s %s", h.From, h.To, h.Port, strings.Join(h.Sources, ","),
				h.Flows, strings.Join(h.Kinds, ","), strings.Join(h.Alerts, ","))
			if h.CoveredBy != "" {
				fmt.Fprintf(&b, " (also matched by %s)", h.CoveredBy)
			}
		}
		root.FootComment = b.String()
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return err
	}
	return enc.Close()
}

// flowStyle writes sequences of scalars on one line, as people write
// cidrs and ports.
func flowStyle(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode {
		scalars := true
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				scalars = false
			}
		}
		if scalars {
			n.Style = yaml.FlowStyle
		}
	}
	for _, c := range n.Content {
		flowStyle(c)
	}
}
