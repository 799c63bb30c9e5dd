package parser

import (
	"sort"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// parseK8sPods parses `kubectl get pods -A -o json` output (a v1 List or
// PodList; a single Pod too): one binding per pod IP (status.podIPs, else
// status.podIP) of source k8s_pods with User the pod's service account as
// Kubernetes names it ("system:serviceaccount:NAMESPACE:NAME", "default"
// when spec.serviceAccountName is empty), Device "NAMESPACE/POD", Labels
// the pod's labels ("key=value" sorted, comma-separated), SessionID the
// pod's UID and Time status.startTime (else metadata.creationTimestamp).
// Pods on the host network (their IP is the node's), pods without an IP
// and pods in phase Succeeded or Failed bind nothing.
func parseK8sPods(data []byte, meta *Meta) ([]schemas.AccessEvent, error) {
	type pod struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name              string            `json:"name"`
			Namespace         string            `json:"namespace"`
			UID               string            `json:"uid"`
			Labels            map[string]string `json:"labels"`
			CreationTimestamp string            `json:"creationTimestamp"`
		} `json:"metadata"`
		Spec struct {
			ServiceAccountName string `json:"serviceAccountName"`
			HostNetwork        bool   `json:"hostNetwork"`
		} `json:"spec"`
		Status struct {
			Phase     string                `json:"phase"`
			PodIP     string                `json:"podIP"`
			PodIPs    []struct{ IP string } `json:"podIPs"`
			StartTime string                `json:"startTime"`
		} `json:"status"`
	}
	var doc struct {
		pod
		Items []pod `json:"items"`
	}
	if err := decodeObject(data, &doc); err != nil {
		return nil, &ParseError{Format: FormatK8sPods, Reason: ReasonBadJSON, Err: err}
	}
	items := doc.Items
	switch doc.Kind {
	case "List", "PodList":
	case "Pod":
		items = []pod{doc.pod}
	default:
		return nil, parseErr(FormatK8sPods, ReasonNoMatch, "kind %q is not List, PodList or Pod (kubectl get pods -A -o json)", doc.Kind)
	}
	var out []schemas.AccessEvent
	for i := range items {
		p := &items[i]
		if p.Spec.HostNetwork || p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" {
			continue
		}
		ips := make([]string, 0, 2)
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		if len(ips) == 0 && p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
		if p.Metadata.Name == "" || p.Metadata.Namespace == "" {
			return nil, parseErr(FormatK8sPods, ReasonMissingField, "item %d: no metadata.name or metadata.namespace", i)
		}
		sa := p.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		keys := make([]string, 0, len(p.Metadata.Labels))
		for k := range p.Metadata.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var labels strings.Builder
		for j, k := range keys {
			if j > 0 {
				labels.WriteByte(',')
			}
			labels.WriteString(k + "=" + p.Metadata.Labels[k])
		}
		start := meta.Received
		for _, ts := range []string{p.Status.StartTime, p.Metadata.CreationTimestamp} {
			if ts == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339, ts)
			if err != nil {
				return nil, parseErr(FormatK8sPods, ReasonBadTime, "pod %s/%s: bad time %q", p.Metadata.Namespace, p.Metadata.Name, ts)
			}
			start = t
			break
		}
		for _, ip := range ips {
			a, ok := parseAddr(ip)
			if !ok {
				return nil, parseErr(FormatK8sPods, ReasonBadAddress, "pod %s/%s: bad IP %q", p.Metadata.Namespace, p.Metadata.Name, ip)
			}
			ev := snapshotEvent(string(FormatK8sPods), meta)
			ev.Time = unixNano(start)
			ev.SrcAddr = a
			ev.User = "system:serviceaccount:" + p.Metadata.Namespace + ":" + sa
			ev.Device = p.Metadata.Namespace + "/" + p.Metadata.Name
			ev.Labels = labels.String()
			ev.SessionID = p.Metadata.UID
			ev.AuthMethod = "serviceaccount"
			out = append(out, ev)
		}
	}
	return out, nil
}
