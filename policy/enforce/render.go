package enforce

import (
	"bytes"
	"sort"

	"gopkg.in/yaml.v3"

	"github.com/flowaudit/flowaudit/policy"
)

// PolicyYAML renders p as a flowaudit policy file that Parse reads back
// as p (segments, inventory, rules in order, default).
func PolicyYAML(p *policy.Policy, header string) (string, error) {
	type segment struct {
		Name  string   `yaml:"name"`
		CIDRs []string `yaml:"cidrs,flow"`
		Tags  []string `yaml:"tags,omitempty,flow"`
		Intra string   `yaml:"intra,omitempty"`
	}
	type entry struct {
		CIDR           string            `yaml:"cidr"`
		Workload       string            `yaml:"workload,omitempty"`
		Owner          string            `yaml:"owner,omitempty"`
		ServiceAccount string            `yaml:"service_account,omitempty"`
		Labels         map[string]string `yaml:"labels,omitempty,flow"`
	}
	type rule struct {
		Name       string   `yaml:"name"`
		From       []any    `yaml:"from,flow"`
		To         []any    `yaml:"to,flow"`
		Ports      []string `yaml:"ports,flow"`
		Identities []string `yaml:"identities,omitempty,flow"`
		Action     string   `yaml:"action,omitempty"`
		Mode       string   `yaml:"mode,omitempty"`
		Owner      string   `yaml:"owner,omitempty"`
		Justif     string   `yaml:"justification,omitempty"`
		ReviewBy   string   `yaml:"review_by,omitempty"`
	}
	type file struct {
		Segments  []segment `yaml:"segments"`
		Inventory []entry   `yaml:"inventory,omitempty"`
		Rules     []rule    `yaml:"rules"`
		Default   string    `yaml:"default"`
	}
	type selector struct {
		Segment string            `yaml:"segment,omitempty"`
		Labels  map[string]string `yaml:"labels,omitempty,flow"`
	}
	f := file{Default: p.Default, Rules: []rule{}}
	if f.Default == "" {
		f.Default = policy.DefaultDeny
	}
	for _, s := range p.Segments {
		seg := segment{Name: s.Name, Tags: s.Tags, Intra: s.Intra}
		for _, c := range s.CIDRs {
			seg.CIDRs = append(seg.CIDRs, c.String())
		}
		f.Segments = append(f.Segments, seg)
	}
	for _, e := range p.Inventory {
		f.Inventory = append(f.Inventory, entry{e.CIDR.String(), e.Workload, e.Owner, e.ServiceAccount, e.Labels})
	}
	ends := func(names []string, sels []policy.Selector) []any {
		var out []any
		for _, n := range names {
			out = append(out, n)
		}
		for _, s := range sels {
			out = append(out, selector{s.Segment, s.Labels})
		}
		return out
	}
	for _, r := range p.Rules {
		out := rule{Name: r.Name, From: ends(r.From, r.FromSelectors), To: ends(r.To, r.ToSelectors), Identities: r.Identities,
			Action: r.Action, Mode: r.Mode, Owner: r.Owner, Justif: r.Justification}
		for _, ps := range r.Ports {
			out.Ports = append(out.Ports, ps.String())
		}
		sort.Strings(out.Ports)
		if !r.ReviewBy.IsZero() {
			out.ReviewBy = r.ReviewBy.Format("2006-01-02")
		}
		f.Rules = append(f.Rules, out)
	}
	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&f); err != nil {
		return "", err
	}
	return b.String(), nil
}
