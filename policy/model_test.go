package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

const modelPolicy = `
segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: app
    cidrs: [10.3.0.0/16]
    intra: rules
  - name: db
    cidrs: [10.2.0.0/16]
inventory:
  - cidr: 10.2.0.10/32
    workload: orders-db
    labels: {app: orders, tier: db}
  - cidr: 10.2.0.20/32
    workload: billing-db
    labels: {app: billing, tier: db}
  - cidr: 10.3.0.5/32
    workload: orders
    labels: {app: orders}
  - cidr: 10.3.0.6/32
    workload: cache
    labels: {app: cache}
rules:
  - name: no-ssh-to-db
    from: [web, app]
    to: [db]
    ports: ["22/tcp"]
    action: deny
    owner: secops
    justification: "SSH to databases only from the bastion"
    review_by: 2027-05-31
  - name: staged-no-web-mysql
    from: [web]
    to: [db]
    ports: ["3306/tcp"]
    action: deny
    mode: staged
  - name: web-any-db
    from: [web]
    to: [db]
    ports: [tcp]
  - name: orders-reads-its-db
    from: [{segment: app, labels: {app: orders}}]
    to: [{segment: db, labels: {app: orders}}]
    ports: ["5432/tcp"]
  - name: orders-uses-cache
    from: [{labels: {app: orders}}]
    to: [{segment: app, labels: {app: cache}}]
    ports: ["6379/tcp"]
  - name: staged-app-billing
    from: [app]
    to: [{segment: db, labels: {app: billing}}]
    ports: ["5432/tcp"]
    mode: staged
default: deny
`

func TestModelDecide(t *testing.T) {
	m := mustMatcher(t, modelPolicy)
	if !m.HasStaged() {
		t.Error("HasStaged() = false")
	}
	ep := func(s string) *Endpoint { return m.Lookup(schemas.AddrFromNetip(netip.MustParseAddr(s))) }
	type decision struct {
		Verdict, Rule, StagedVerdict, StagedRule string
	}
	for _, tc := range []struct {
		name     string
		src, dst string
		sp, dp   uint16
		side     schemas.ServiceSide
		want     decision
	}{
		{"deny first: ssh web to db", "10.1.0.1", "10.2.0.10", 50000, 22, schemas.ServiceDst,
			decision{"violation", "no-ssh-to-db", "violation", "no-ssh-to-db"}},
		{"later allow still applies to other ports", "10.1.0.1", "10.2.0.10", 50000, 5432, schemas.ServiceDst,
			decision{"allowed", "web-any-db", "allowed", "web-any-db"}},
		{"selector to selector", "10.3.0.5", "10.2.0.10", 50000, 5432, schemas.ServiceDst,
			decision{"allowed", "orders-reads-its-db", "allowed", "orders-reads-its-db"}},
		{"selector: wrong destination workload", "10.3.0.5", "10.2.0.20", 50000, 5432, schemas.ServiceDst,
			decision{"violation", "", "allowed", "staged-app-billing"}},
		{"selector: wrong source workload", "10.3.0.6", "10.2.0.10", 50000, 5432, schemas.ServiceDst,
			decision{"violation", "", "violation", ""}},
		{"selector: no inventory entry", "10.3.0.99", "10.2.0.10", 50000, 5432, schemas.ServiceDst,
			decision{"violation", "", "violation", ""}},
		{"intra: rules, allowed by a selector rule from any segment", "10.3.0.5", "10.3.0.6", 50000, 6379, schemas.ServiceDst,
			decision{"allowed", "orders-uses-cache", "allowed", "orders-uses-cache"}},
		{"intra: rules, no rule", "10.3.0.6", "10.3.0.5", 50000, 8080, schemas.ServiceDst,
			decision{"violation", "", "violation", ""}},
		{"intra: allow by default", "10.1.0.1", "10.1.0.2", 50000, 8080, schemas.ServiceDst,
			decision{"intra_segment", "", "intra_segment", ""}},
		{"staged deny on an allowed edge", "10.1.0.1", "10.2.0.10", 50000, 3306, schemas.ServiceDst,
			decision{"allowed", "web-any-db", "violation", "staged-no-web-mysql"}},
		{"reply of an allowed connection", "10.2.0.10", "10.1.0.1", 5432, 50000, schemas.ServiceSrc,
			decision{"allowed", "web-any-db", "allowed", "web-any-db"}},
		{"reply of a staged-denied connection", "10.2.0.10", "10.1.0.1", 3306, 50000, schemas.ServiceSrc,
			decision{"allowed", "web-any-db", "violation", "staged-no-web-mysql"}},
		{"reply of a denied connection", "10.2.0.10", "10.1.0.1", 22, 50000, schemas.ServiceSrc,
			decision{"violation", "no-ssh-to-db", "violation", "no-ssh-to-db"}},
		{"a new connection from a service port is no reply", "10.2.0.10", "10.1.0.1", 5432, 50000, schemas.ServiceDst,
			decision{"violation", "", "violation", ""}},
		{"unknown side: reply heuristic", "10.2.0.10", "10.1.0.1", 5432, 50000, schemas.ServiceUnknown,
			decision{"allowed", "web-any-db", "allowed", "web-any-db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := FlowKey{Src: ep(tc.src), Dst: ep(tc.dst), SrcPort: tc.sp, DstPort: tc.dp, Proto: 6, ServiceSide: tc.side}
			v, r := m.Decide(&k)
			sv, sr := m.DecideStaged(&k)
			if diff := cmp.Diff(decision{v.String(), r, sv.String(), sr}, tc.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// TestModelBoundLabels: a label selector also matches an end whose bound
// workload (FlowKey.SrcLabels/DstLabels, a Kubernetes pod's labels)
// carries its labels, in its segment, in both directions.
func TestModelBoundLabels(t *testing.T) {
	m := mustMatcher(t, modelPolicy)
	ep := func(s string) *Endpoint { return m.Lookup(schemas.AddrFromNetip(netip.MustParseAddr(s))) }
	for _, tc := range []struct {
		name                 string
		src, dst             string
		srcLabels, dstLabels string
		sp, dp               uint16
		side                 schemas.ServiceSide
		want                 string
	}{
		{"pod labels match the selector", "10.3.0.99", "10.2.0.10", "app=orders,pod-template-hash=6d4", "", 50000, 5432, schemas.ServiceDst, "allowed orders-reads-its-db"},
		{"pod without the label", "10.3.0.99", "10.2.0.10", "app=ordersx,tier=web", "", 50000, 5432, schemas.ServiceDst, "violation "},
		{"no labels, no inventory entry", "10.3.0.99", "10.2.0.10", "", "", 50000, 5432, schemas.ServiceDst, "violation "},
		{"labels of both ends", "10.3.0.98", "10.3.0.99", "app=orders", "app=cache,x=y", 50000, 6379, schemas.ServiceDst, "allowed orders-uses-cache"},
		{"the selector's segment still applies", "10.1.0.7", "10.2.0.10", "app=orders", "", 50000, 5432, schemas.ServiceDst, "allowed web-any-db"},
		{"a reply: the labels follow their ends", "10.2.0.10", "10.3.0.99", "", "app=orders", 5432, 50000, schemas.ServiceSrc, "allowed orders-reads-its-db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := FlowKey{Src: ep(tc.src), Dst: ep(tc.dst), SrcPort: tc.sp, DstPort: tc.dp, Proto: 6, ServiceSide: tc.side,
				SrcLabels: tc.srcLabels, DstLabels: tc.dstLabels}
			v, r := m.Decide(&k)
			if got := v.String() + " " + r; got != tc.want {
				t.Errorf("Decide = %q, want %q", got, tc.want)
			}
		})
	}
	k := FlowKey{Src: ep("10.3.0.99"), Dst: ep("10.2.0.10"), DstPort: 5432, Proto: 6, ServiceSide: schemas.ServiceDst, SrcLabels: "app=orders"}
	if n := testing.AllocsPerRun(100, func() { m.Decide(&k) }); n != 0 {
		t.Errorf("Decide with labels allocates %v times", n)
	}
}

// TestAllowOnlyOrderFree: an allow-only policy decides every flow the
// same in any rule order (first match wins, and any allow is the same).
func TestAllowOnlyOrderFree(t *testing.T) {
	p, err := Parse([]byte(matchPolicy), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	rev := *p
	rev.Rules = nil
	for i := len(p.Rules) - 1; i >= 0; i-- {
		rev.Rules = append(rev.Rules, p.Rules[i])
	}
	back, err := Compile(&rev)
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{"10.1.0.1", "10.2.0.10", "10.2.9.1", "10.3.0.1", "10.4.0.1", "192.0.2.1", "2001:db8:1::5"}
	for _, a := range addrs {
		for _, b := range addrs {
			for _, port := range []uint16{22, 53, 5432, 8080} {
				for _, side := range []schemas.ServiceSide{schemas.ServiceUnknown, schemas.ServiceDst, schemas.ServiceSrc} {
					mk := func(m *Matcher) FlowKey {
						return FlowKey{Src: m.Lookup(schemas.AddrFromNetip(netip.MustParseAddr(a))), Dst: m.Lookup(schemas.AddrFromNetip(netip.MustParseAddr(b))),
							SrcPort: 50000, DstPort: port, Proto: 6, SrcIdentity: "alice", ServiceSide: side}
					}
					k1, k2 := mk(fwd), mk(back)
					v1, _ := fwd.Decide(&k1)
					v2, _ := back.Decide(&k2)
					if v1 != v2 {
						t.Errorf("%s -> %s:%d side %v: %v in file order, %v reversed", a, b, port, side, v1, v2)
					}
				}
			}
		}
	}
}

func TestParseModel(t *testing.T) {
	p, err := Parse([]byte(modelPolicy), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rules[0]
	if !r.Deny() || r.Staged() || r.Owner != "secops" || r.Justification != "SSH to databases only from the bastion" ||
		!r.ReviewBy.Equal(time.Date(2027, 5, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("rules[0] = %+v", r)
	}
	if diff := cmp.Diff(p.Rules[4].FromSelectors, []Selector{{Labels: map[string]string{"app": "orders"}}}); diff != "" {
		t.Errorf("rules[4].from (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(p.Rules[3].ToSelectors, []Selector{{Segment: "db", Labels: map[string]string{"app": "orders"}}}); diff != "" {
		t.Errorf("rules[3].to (-got +want):\n%s", diff)
	}
	if p.Segments[1].Intra != IntraRules || p.Segments[0].Intra != "" {
		t.Errorf("intra = %q, %q", p.Segments[0].Intra, p.Segments[1].Intra)
	}
	if !p.Rules[1].Staged() || !p.Rules[1].Deny() {
		t.Errorf("rules[1] = %+v", p.Rules[1])
	}
}
