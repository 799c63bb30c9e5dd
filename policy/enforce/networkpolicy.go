package enforce

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/flowaudit/flowaudit/policy"
)

// NamespaceLabel is the label Kubernetes sets on every namespace with its
// name; exported policies select namespaces (segments) by it.
const NamespaceLabel = "kubernetes.io/metadata.name"

// NetworkPolicies renders p as Kubernetes networking.k8s.io/v1
// NetworkPolicies, one namespace per segment:
//
//   - under "default: deny", default-deny-ingress and default-deny-egress
//     in every namespace;
//   - per segment with intra: allow (the default), allow-intra: ingress
//     and egress within the namespace;
//   - per enforced allow rule and destination end, an ingress policy in
//     the destination namespace (pods by the end's labels) from the
//     source ends (namespaceSelector, podSelector; External as an ipBlock
//     of everything outside the segments), and per source end an egress
//     policy in the source namespace to the destination ends; External
//     has no namespace, so only the other side is written.
//
// NetworkPolicies only allow, and only TCP, UDP and SCTP ports: deny
// rules, staged rules, identities and ICMP port specs are left out and
// listed in the notes.
func NetworkPolicies(p *policy.Policy) ([]netv1.NetworkPolicy, []string) {
	var out []netv1.NetworkPolicy
	var notes []string
	meta := func(name, ns string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: k8sName(name), Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": "flowaudit"}}
	}
	typeMeta := metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}
	for _, s := range p.Segments {
		if p.Default != policy.DefaultAllow {
			out = append(out, netv1.NetworkPolicy{TypeMeta: typeMeta, ObjectMeta: meta("default-deny", s.Name),
				Spec: netv1.NetworkPolicySpec{PolicyTypes: []netv1.PolicyType{netv1.PolicyTypeIngress, netv1.PolicyTypeEgress}}})
		}
		if s.Intra != policy.IntraRules {
			same := []netv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
			out = append(out, netv1.NetworkPolicy{TypeMeta: typeMeta, ObjectMeta: meta("allow-intra", s.Name),
				Spec: netv1.NetworkPolicySpec{
					PolicyTypes: []netv1.PolicyType{netv1.PolicyTypeIngress, netv1.PolicyTypeEgress},
					Ingress:     []netv1.NetworkPolicyIngressRule{{From: same}},
					Egress:      []netv1.NetworkPolicyEgressRule{{To: same}},
				}})
		}
	}
	r := newRegions(p)
	external := externalBlocks(r)
	for _, rule := range p.Rules {
		switch {
		case rule.Staged():
			notes = append(notes, fmt.Sprintf("rule %s (line %d) is staged: not exported", rule.Name, rule.Line))
			continue
		case rule.Deny():
			notes = append(notes, fmt.Sprintf("rule %s (line %d) denies: NetworkPolicies only allow; not exported", rule.Name, rule.Line))
			continue
		}
		if len(rule.Identities) > 0 {
			notes = append(notes, fmt.Sprintf("rule %s (line %d): identities %s cannot be enforced by a NetworkPolicy; exported for every source",
				rule.Name, rule.Line, strings.Join(rule.Identities, ", ")))
		}
		ports, dropped := k8sPorts(rule.Ports)
		if dropped != "" {
			notes = append(notes, fmt.Sprintf("rule %s (line %d): %s not expressible in a NetworkPolicy; left out", rule.Name, rule.Line, dropped))
			if len(ports) == 0 {
				continue
			}
		}
		from, to := k8sEnds(rule.From, rule.FromSelectors), k8sEnds(rule.To, rule.ToSelectors)
		peer := func(e k8sEnd, local string) netv1.NetworkPolicyPeer {
			if e.external {
				return netv1.NetworkPolicyPeer{IPBlock: nil}
			}
			var pod *metav1.LabelSelector
			if len(e.labels) > 0 {
				pod = &metav1.LabelSelector{MatchLabels: e.labels}
			}
			if e.segment == local && e.segment != "" {
				if pod == nil {
					pod = &metav1.LabelSelector{}
				}
				return netv1.NetworkPolicyPeer{PodSelector: pod}
			}
			var ns *metav1.LabelSelector
			if e.segment == "" {
				ns = &metav1.LabelSelector{}
			} else {
				ns = &metav1.LabelSelector{MatchLabels: map[string]string{NamespaceLabel: e.segment}}
			}
			return netv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: pod}
		}
		peers := func(ends []k8sEnd, local string) []netv1.NetworkPolicyPeer {
			var out []netv1.NetworkPolicyPeer
			for _, e := range ends {
				if e.external {
					out = append(out, external...)
					continue
				}
				out = append(out, peer(e, local))
			}
			return out
		}
		for i, e := range to {
			if e.external || e.segment == "" {
				if e.segment == "" && !e.external {
					notes = append(notes, fmt.Sprintf("rule %s (line %d): a destination selector without a segment is exported for no namespace", rule.Name, rule.Line))
				}
				continue
			}
			out = append(out, netv1.NetworkPolicy{TypeMeta: typeMeta, ObjectMeta: meta(fmt.Sprintf("%s-in-%d", rule.Name, i), e.segment),
				Spec: netv1.NetworkPolicySpec{
					PodSelector: selectorOf(e.labels),
					PolicyTypes: []netv1.PolicyType{netv1.PolicyTypeIngress},
					Ingress:     []netv1.NetworkPolicyIngressRule{{From: peers(from, e.segment), Ports: ports}},
				}})
		}
		for i, e := range from {
			if e.external || e.segment == "" {
				continue
			}
			out = append(out, netv1.NetworkPolicy{TypeMeta: typeMeta, ObjectMeta: meta(fmt.Sprintf("%s-out-%d", rule.Name, i), e.segment),
				Spec: netv1.NetworkPolicySpec{
					PodSelector: selectorOf(e.labels),
					PolicyTypes: []netv1.PolicyType{netv1.PolicyTypeEgress},
					Egress:      []netv1.NetworkPolicyEgressRule{{To: peers(to, e.segment), Ports: ports}},
				}})
		}
	}
	return out, notes
}

// NetworkPolicyYAML renders NetworkPolicies as one YAML stream.
func NetworkPolicyYAML(p *policy.Policy) (string, []string, error) {
	nps, notes := NetworkPolicies(p)
	var b bytes.Buffer
	for i := range nps {
		data, err := yaml.Marshal(&nps[i])
		if err != nil {
			return "", nil, err
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return b.String(), notes, nil
}

type k8sEnd struct {
	segment  string // "" for any namespace
	labels   map[string]string
	external bool
}

func k8sEnds(names []string, sels []policy.Selector) []k8sEnd {
	var out []k8sEnd
	for _, n := range names {
		out = append(out, k8sEnd{segment: n, external: n == policy.External})
	}
	for _, s := range sels {
		out = append(out, k8sEnd{segment: s.Segment, labels: s.Labels, external: s.Segment == policy.External})
	}
	return out
}

func selectorOf(labels map[string]string) metav1.LabelSelector {
	if len(labels) == 0 {
		return metav1.LabelSelector{}
	}
	return metav1.LabelSelector{MatchLabels: labels}
}

// externalBlocks are ipBlocks of everything outside the segments, one per
// family.
func externalBlocks(r *regions) []netv1.NetworkPolicyPeer {
	v4, v6 := split(r.all)
	block := func(all string, except []netip.Prefix) netv1.NetworkPolicyPeer {
		ex := make([]string, len(except))
		for i, p := range except {
			ex[i] = p.String()
		}
		return netv1.NetworkPolicyPeer{IPBlock: &netv1.IPBlock{CIDR: all, Except: ex}}
	}
	return []netv1.NetworkPolicyPeer{block("0.0.0.0/0", v4), block("::/0", v6)}
}

// k8sPorts translates port specs; what NetworkPolicies cannot express
// (ICMP, other protocols) is named in dropped.
func k8sPorts(specs []policy.PortSpec) (ports []netv1.NetworkPolicyPort, dropped string) {
	var bad []string
	for _, ps := range specs {
		var proto corev1.Protocol
		switch ps.Proto {
		case policy.ProtoAny:
			return nil, "" // every port of every protocol: no ports list
		case policy.ProtoTCP:
			proto = corev1.ProtocolTCP
		case policy.ProtoUDP:
			proto = corev1.ProtocolUDP
		default:
			bad = append(bad, ps.String())
			continue
		}
		np := netv1.NetworkPolicyPort{Protocol: &proto}
		if !(ps.Lo == 0 && ps.Hi == 65535) {
			port := intstr.FromInt32(int32(ps.Lo))
			np.Port = &port
			if ps.Hi != ps.Lo {
				end := int32(ps.Hi)
				np.EndPort = &end
			}
		}
		ports = append(ports, np)
	}
	return ports, strings.Join(bad, ", ")
}

// k8sName makes a DNS-1123 name (lower case, digits, '-', at most 63).
func k8sName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-")
	}
	if out == "" {
		out = "rule"
	}
	return out
}

// ImportNetworkPolicies turns NetworkPolicies back into a flowaudit
// policy over base's segments (namespaces) and inventory (pods, with
// their labels): base's rules are replaced. Per namespace:
//
//   - an ingress policy's pods (podSelector) are a destination end, each
//     ingress rule's peers the source ends (namespaceSelector by
//     kubernetes.io/metadata.name, or every namespace; podSelector labels;
//     an ipBlock is External), its ports the rule's ports (none: any);
//   - egress rules to ipBlocks become rules to External; egress rules to
//     pods are taken as mirrored by the other namespace's ingress;
//   - a namespace no ingress policy selects accepts everything (a rule
//     from every segment and External), one no egress policy selects may
//     reach External on any port;
//   - an allow of the whole namespace from itself becomes intra: allow,
//     other namespaces get intra: rules (NetworkPolicies judge traffic
//     inside a namespace too).
//
// What has no flowaudit form (matchExpressions, named ports, ipBlocks
// other than "everything outside") is approximated and listed in the
// notes. The result is sorted and deterministic.
func ImportNetworkPolicies(base *policy.Policy, nps []netv1.NetworkPolicy) (*policy.Policy, []string) {
	out := &policy.Policy{Segments: append([]policy.Segment(nil), base.Segments...), Inventory: base.Inventory, Default: policy.DefaultDeny}
	var notes []string
	known := map[string]bool{}
	for _, s := range out.Segments {
		known[s.Name] = true
	}
	sort.SliceStable(nps, func(i, j int) bool {
		if nps[i].Namespace != nps[j].Namespace {
			return nps[i].Namespace < nps[j].Namespace
		}
		return nps[i].Name < nps[j].Name
	})
	ingressIsolated, egressIsolated, intraAllowed := map[string]bool{}, map[string]bool{}, map[string]bool{}
	labelsOf := func(sel *metav1.LabelSelector, where string) map[string]string {
		if sel == nil {
			return nil
		}
		if len(sel.MatchExpressions) > 0 {
			notes = append(notes, where+": matchExpressions are not imported (only matchLabels)")
		}
		if len(sel.MatchLabels) == 0 {
			return nil
		}
		return sel.MatchLabels
	}
	segOf := func(sel *metav1.LabelSelector, where string) (string, bool) {
		if sel == nil || len(sel.MatchLabels) == 0 {
			return "", true // every namespace
		}
		ns, ok := sel.MatchLabels[NamespaceLabel]
		if !ok || len(sel.MatchLabels) > 1 {
			notes = append(notes, where+": namespaces selected by labels other than "+NamespaceLabel+" are not imported")
			return "", false
		}
		if !known[ns] {
			notes = append(notes, where+": namespace "+ns+" is no segment of the inventory; skipped")
			return "", false
		}
		return ns, true
	}
	type end struct {
		seg    string
		labels map[string]string
		any    bool // every namespace
	}
	addEnd := func(names *[]string, sels *[]policy.Selector, e end) {
		switch {
		case e.any && len(e.labels) == 0:
			for _, s := range out.Segments {
				*names = append(*names, s.Name)
			}
		case e.any:
			*sels = append(*sels, policy.Selector{Labels: e.labels})
		case len(e.labels) == 0:
			*names = append(*names, e.seg)
		default:
			*sels = append(*sels, policy.Selector{Segment: e.seg, Labels: e.labels})
		}
	}
	ports := func(np []netv1.NetworkPolicyPort, where string) []policy.PortSpec {
		if len(np) == 0 {
			return []policy.PortSpec{{Lo: 0, Hi: 65535}}
		}
		var out []policy.PortSpec
		for _, p := range np {
			proto := policy.ProtoTCP
			if p.Protocol != nil {
				switch *p.Protocol {
				case corev1.ProtocolUDP:
					proto = policy.ProtoUDP
				case corev1.ProtocolSCTP:
					proto = 132
				}
			}
			ps := policy.PortSpec{Lo: 0, Hi: 65535, Proto: proto}
			if p.Port != nil {
				if p.Port.Type == intstr.String {
					notes = append(notes, where+": named port "+p.Port.StrVal+" is not imported")
					continue
				}
				ps.Lo, ps.Hi = uint16(p.Port.IntVal), uint16(p.Port.IntVal)
				if p.EndPort != nil {
					ps.Hi = uint16(*p.EndPort)
				}
			}
			out = append(out, ps)
		}
		return out
	}
	for _, np := range nps {
		ns := np.Namespace
		where := "networkpolicy " + ns + "/" + np.Name
		if !known[ns] {
			notes = append(notes, where+": namespace "+ns+" is no segment of the inventory; skipped")
			continue
		}
		types := np.Spec.PolicyTypes
		hasType := func(t netv1.PolicyType) bool {
			for _, x := range types {
				if x == t {
					return true
				}
			}
			return len(types) == 0 && (t == netv1.PolicyTypeIngress || len(np.Spec.Egress) > 0)
		}
		target := end{seg: ns, labels: labelsOf(&np.Spec.PodSelector, where)}
		if hasType(netv1.PolicyTypeIngress) {
			if len(target.labels) == 0 {
				ingressIsolated[ns] = true
			} else {
				notes = append(notes, where+": pods of "+ns+" that no ingress policy selects are open in Kubernetes; the import treats the namespace as isolated")
				ingressIsolated[ns] = true
			}
			for ri, ir := range np.Spec.Ingress {
				rw := fmt.Sprintf("%s ingress[%d]", where, ri)
				rule := policy.Rule{Name: fmt.Sprintf("%s-%s-in-%d", ns, np.Name, ri), Ports: ports(ir.Ports, rw)}
				addEnd(&rule.To, &rule.ToSelectors, target)
				if len(ir.From) == 0 {
					addEnd(&rule.From, &rule.FromSelectors, end{any: true})
					rule.From = append(rule.From, policy.External)
				}
				for _, peer := range ir.From {
					switch {
					case peer.IPBlock != nil:
						if !isEverything(peer.IPBlock.CIDR) {
							notes = append(notes, rw+": ipBlock "+peer.IPBlock.CIDR+" imported as external")
						}
						rule.From = append(rule.From, policy.External)
					case peer.NamespaceSelector == nil:
						pl := labelsOf(peer.PodSelector, rw)
						if len(pl) == 0 && len(target.labels) == 0 && len(ir.Ports) == 0 {
							intraAllowed[ns] = true
						}
						addEnd(&rule.From, &rule.FromSelectors, end{seg: ns, labels: pl})
					default:
						seg, ok := segOf(peer.NamespaceSelector, rw)
						if !ok {
							continue
						}
						addEnd(&rule.From, &rule.FromSelectors, end{seg: seg, any: seg == "", labels: labelsOf(peer.PodSelector, rw)})
					}
				}
				if len(rule.From) > 0 || len(rule.FromSelectors) > 0 {
					rule.From = dedup(rule.From)
					out.Rules = append(out.Rules, rule)
				}
			}
		}
		if hasType(netv1.PolicyTypeEgress) {
			egressIsolated[ns] = true
			for ri, er := range np.Spec.Egress {
				rw := fmt.Sprintf("%s egress[%d]", where, ri)
				blocks := 0
				for _, peer := range er.To {
					if peer.IPBlock != nil {
						blocks++
					}
				}
				if blocks == 0 && len(er.To) > 0 {
					continue // in-cluster: governed by the peers' ingress policies
				}
				rule := policy.Rule{Name: fmt.Sprintf("%s-%s-out-%d", ns, np.Name, ri), To: []string{policy.External}, Ports: ports(er.Ports, rw)}
				addEnd(&rule.From, &rule.FromSelectors, target)
				out.Rules = append(out.Rules, rule)
			}
		}
	}
	for i := range out.Segments {
		s := &out.Segments[i]
		s.Intra = policy.IntraRules
		if intraAllowed[s.Name] || !ingressIsolated[s.Name] {
			s.Intra = ""
		}
		if !ingressIsolated[s.Name] {
			rule := policy.Rule{Name: "open-" + s.Name, To: []string{s.Name}, Ports: []policy.PortSpec{{Lo: 0, Hi: 65535}}}
			for _, o := range out.Segments {
				rule.From = append(rule.From, o.Name)
			}
			rule.From = append(rule.From, policy.External)
			out.Rules = append(out.Rules, rule)
		}
		if !egressIsolated[s.Name] {
			out.Rules = append(out.Rules, policy.Rule{Name: "open-" + s.Name + "-out", From: []string{s.Name}, To: []string{policy.External},
				Ports: []policy.PortSpec{{Lo: 0, Hi: 65535}}})
		}
	}
	return out, notes
}

func isEverything(cidr string) bool { return cidr == "0.0.0.0/0" || cidr == "::/0" }

func dedup(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// DecodeNetworkPolicies reads NetworkPolicies from a YAML stream
// (documents separated by ---; NetworkPolicyList items too), strictly:
// unknown fields are errors naming the document.
func DecodeNetworkPolicies(data []byte, name string) ([]netv1.NetworkPolicy, error) {
	var out []netv1.NetworkPolicy
	for i, doc := range splitYAMLDocuments(data) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
		}
		switch tm.Kind {
		case "NetworkPolicy":
			var np netv1.NetworkPolicy
			if err := yaml.UnmarshalStrict([]byte(doc), &np); err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
			}
			out = append(out, np)
		case "NetworkPolicyList":
			var l netv1.NetworkPolicyList
			if err := yaml.UnmarshalStrict([]byte(doc), &l); err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
			}
			out = append(out, l.Items...)
		default:
			return nil, fmt.Errorf("%s: document %d: kind %q is not NetworkPolicy or NetworkPolicyList", name, i+1, tm.Kind)
		}
	}
	return out, nil
}

func splitYAMLDocuments(data []byte) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.TrimRight(line, " \r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}
