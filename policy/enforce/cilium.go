package enforce

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/flowaudit/flowaudit/policy"
)

// Minimal Go types mirroring the cilium.io/v2 CiliumNetworkPolicy CRD
// schema (the fields the export writes), so that the export needs no
// dependency on Cilium's module.
type (
	// CiliumNetworkPolicy is a cilium.io/v2 CiliumNetworkPolicy.
	CiliumNetworkPolicy struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Metadata   CiliumObjectMeta `json:"metadata"`
		Spec       CiliumRule       `json:"spec"`
	}
	// CiliumObjectMeta is the part of metav1.ObjectMeta the export sets.
	CiliumObjectMeta struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels,omitempty"`
	}
	// CiliumRule is the CRD's spec (api.Rule).
	CiliumRule struct {
		EndpointSelector CiliumSelector      `json:"endpointSelector"`
		Ingress          []CiliumIngressRule `json:"ingress,omitempty"`
		IngressDeny      []CiliumIngressRule `json:"ingressDeny,omitempty"`
		Description      string              `json:"description,omitempty"`
	}
	// CiliumSelector is an endpoint selector (matchLabels only).
	CiliumSelector struct {
		MatchLabels map[string]string `json:"matchLabels,omitempty"`
	}
	// CiliumIngressRule is api.IngressRule / api.IngressDenyRule.
	CiliumIngressRule struct {
		FromEndpoints []CiliumSelector `json:"fromEndpoints,omitempty"`
		FromCIDRSet   []CiliumCIDRRule `json:"fromCIDRSet,omitempty"`
		FromEntities  []string         `json:"fromEntities,omitempty"`
		ToPorts       []CiliumPortRule `json:"toPorts,omitempty"`
		ICMPs         []CiliumICMPRule `json:"icmps,omitempty"`
	}
	// CiliumCIDRRule is api.CIDRRule.
	CiliumCIDRRule struct {
		CIDR   string   `json:"cidr"`
		Except []string `json:"except,omitempty"`
	}
	// CiliumPortRule is api.PortRule.
	CiliumPortRule struct {
		Ports []CiliumPortProtocol `json:"ports"`
	}
	// CiliumPortProtocol is api.PortProtocol.
	CiliumPortProtocol struct {
		Port     string `json:"port"`
		EndPort  int32  `json:"endPort,omitempty"`
		Protocol string `json:"protocol"`
	}
	// CiliumICMPRule is api.ICMPRule.
	CiliumICMPRule struct {
		Fields []CiliumICMPField `json:"fields"`
	}
	// CiliumICMPField is api.ICMPField.
	CiliumICMPField struct {
		Family string `json:"family"`
		Type   int    `json:"type"`
	}
)

// ciliumNamespace is Cilium's label for an endpoint's namespace.
const ciliumNamespace = "k8s:io.kubernetes.pod.namespace"

// CiliumPolicies renders p as CiliumNetworkPolicies, one per enforced
// rule and destination end (a segment is a namespace): ingress from the
// source ends (endpoints by namespace and labels; External as a CIDR set
// of everything outside the segments), allow rules as ingress and deny
// rules as ingressDeny (Cilium lets a deny win whatever the order, the
// notes say so when a deny follows an allow), ICMP as echo-request
// ICMP rules. Staged rules and identities are left out, with a note.
// Intra-segment traffic is allowed per namespace unless intra: rules.
func CiliumPolicies(p *policy.Policy) ([]CiliumNetworkPolicy, []string) {
	var out []CiliumNetworkPolicy
	var notes []string
	r := newRegions(p)
	v4, v6 := split(r.all)
	var externals []CiliumCIDRRule
	for _, fam := range []struct {
		all    string
		except []string
	}{{"0.0.0.0/0", prefixStrings(v4)}, {"::/0", prefixStrings(v6)}} {
		externals = append(externals, CiliumCIDRRule{CIDR: fam.all, Except: fam.except})
	}
	mk := func(name, ns string, sel map[string]string) CiliumNetworkPolicy {
		return CiliumNetworkPolicy{APIVersion: "cilium.io/v2", Kind: "CiliumNetworkPolicy",
			Metadata: CiliumObjectMeta{Name: k8sName(name), Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": "flowaudit"}},
			Spec:     CiliumRule{EndpointSelector: CiliumSelector{MatchLabels: sel}}}
	}
	for _, s := range p.Segments {
		if s.Intra == policy.IntraRules {
			continue
		}
		c := mk("allow-intra", s.Name, nil)
		c.Spec.Ingress = []CiliumIngressRule{{FromEndpoints: []CiliumSelector{{MatchLabels: map[string]string{ciliumNamespace: s.Name}}}}}
		out = append(out, c)
	}
	seenAllow := false
	for _, rule := range p.Rules {
		if rule.Staged() {
			notes = append(notes, fmt.Sprintf("rule %s (line %d) is staged: not exported", rule.Name, rule.Line))
			continue
		}
		if len(rule.Identities) > 0 {
			notes = append(notes, fmt.Sprintf("rule %s (line %d): identities %s cannot be enforced by Cilium at L3/L4; exported for every source",
				rule.Name, rule.Line, strings.Join(rule.Identities, ", ")))
		}
		if rule.Deny() && seenAllow {
			notes = append(notes, fmt.Sprintf("rule %s (line %d) denies after an allow: in Cilium a deny wins whatever the order", rule.Name, rule.Line))
		}
		seenAllow = seenAllow || !rule.Deny()
		var ir CiliumIngressRule
		for _, e := range k8sEnds(rule.From, rule.FromSelectors) {
			switch {
			case e.external:
				ir.FromCIDRSet = append(ir.FromCIDRSet, externals...)
			default:
				labels := map[string]string{}
				for k, v := range e.labels {
					labels["k8s:"+k] = v
				}
				if e.segment != "" {
					labels[ciliumNamespace] = e.segment
				}
				ir.FromEndpoints = append(ir.FromEndpoints, CiliumSelector{MatchLabels: labels})
			}
		}
		anyPort := false
		for _, ps := range rule.Ports {
			anyPort = anyPort || ps.Proto == policy.ProtoAny
		}
		for _, ps := range rule.Ports {
			if anyPort {
				break // every protocol and port: no L4 restriction
			}
			switch ps.Proto {
			case policy.ProtoICMP:
				ir.ICMPs = append(ir.ICMPs, CiliumICMPRule{Fields: []CiliumICMPField{{Family: "IPv4", Type: 8}}})
			case policy.ProtoICMPv6:
				ir.ICMPs = append(ir.ICMPs, CiliumICMPRule{Fields: []CiliumICMPField{{Family: "IPv6", Type: 128}}})
			case policy.ProtoTCP, policy.ProtoUDP:
				pp := CiliumPortProtocol{Port: strconv.Itoa(int(ps.Lo)), Protocol: map[uint8]string{6: "TCP", 17: "UDP"}[ps.Proto]}
				if ps.Lo == 0 && ps.Hi == 65535 {
					pp.Port = "0"
				} else if ps.Hi != ps.Lo {
					pp.EndPort = int32(ps.Hi)
				}
				ir.ToPorts = append(ir.ToPorts, CiliumPortRule{Ports: []CiliumPortProtocol{pp}})
			}
		}
		for i, e := range k8sEnds(rule.To, rule.ToSelectors) {
			if e.external || e.segment == "" {
				notes = append(notes, fmt.Sprintf("rule %s (line %d): destination %s has no namespace; not exported (write an egress policy)", rule.Name, rule.Line, endName(e)))
				continue
			}
			var sel map[string]string
			if len(e.labels) > 0 {
				sel = map[string]string{}
				for k, v := range e.labels {
					sel["k8s:"+k] = v
				}
			}
			c := mk(fmt.Sprintf("%s-%d", rule.Name, i), e.segment, sel)
			c.Spec.Description = rule.Justification
			if rule.Deny() {
				c.Spec.IngressDeny = []CiliumIngressRule{ir}
			} else {
				c.Spec.Ingress = []CiliumIngressRule{ir}
			}
			out = append(out, c)
		}
	}
	return out, notes
}

func endName(e k8sEnd) string {
	if e.external {
		return policy.External
	}
	return "any segment"
}

func prefixStrings[P fmt.Stringer](ps []P) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// CiliumYAML renders CiliumPolicies as one YAML stream.
func CiliumYAML(p *policy.Policy) (string, []string, error) {
	cs, notes := CiliumPolicies(p)
	var b bytes.Buffer
	for i := range cs {
		data, err := yaml.Marshal(&cs[i])
		if err != nil {
			return "", nil, err
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return b.String(), notes, nil
}
