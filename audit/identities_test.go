package audit

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/query"
)

const identityPolicy = `
segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: app
    cidrs: [10.3.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
    tags: [pci-cde]
inventory:
  - cidr: 10.3.0.0/16
    workload: app-tier
    service_account: svc-app
  - cidr: 10.2.0.10/32
    workload: orders-db
rules:
  - name: dba-ssh
    from: [external, web]
    to: [db]
    ports: ["22/tcp"]
    identities: [alice, bob]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: ["5432/tcp"]
    identities: [svc-app, svc-batch]
  - name: web-to-app
    from: [web]
    to: [app]
    ports: ["8080/tcp"]
  - name: staged-only
    mode: staged
    from: [web]
    to: [db]
    ports: ["5432/tcp"]
    identities: [carol]
default: deny
`

func iedge(id, c, s string, port uint16, verdict, rule string, flows uint64, at time.Duration) query.IdentityEdge {
	return query.IdentityEdge{Identity: id, Client: ip(c), Server: ip(s), Port: port, Proto: 6, Verdict: verdict, Rule: rule,
		Flows: flows, Bytes: flows * 10, FirstSeen: t0.Add(at), LastSeen: t0.Add(at + time.Minute)}
}

func TestReviewIdentities(t *testing.T) {
	m := compile(t, identityPolicy)
	edges := []query.IdentityEdge{
		iedge("", "192.0.2.66", "10.2.0.12", 22, "violation", "", 5, 0),         // unattributed into db
		iedge("", "10.1.0.5", "10.3.0.7", 8080, "allowed", "web-to-app", 50, 0), // unattributed, not sensitive
		// mallory: web -> app -> db; one identity row per destination and port
		iedge("mallory", "10.1.2.50", "10.3.2.50", 8080, "allowed", "web-to-app", 3, time.Hour),
		iedge("mallory", "10.3.2.50", "10.2.0.10", 5432, "allowed", "app-to-db", 3, 2*time.Hour), // via svc-app
		iedge("mallory", "10.3.2.50", "10.2.0.10", 5432, "violation", "", 1, 3*time.Hour),
		iedge("svc-app", "10.3.0.1", "10.2.0.11", 5432, "allowed", "app-to-db", 95, 0),
		iedge("svc-app", "10.3.0.2", "10.2.0.12", 5432, "allowed", "app-to-db", 5, 0),
	}
	sessions := []query.AccessSession{
		// alice through a gateway to orders-db (no exporter on that path)
		{User: "alice", Source: "gateway", Host: "bastion", SrcAddr: ip("198.51.100.7"), DstHost: "orders-db", DstPort: 22,
			Events: 2, From: t0, To: t0.Add(time.Hour)},
		// mallory's ssh login on a host no address or workload resolves
		{User: "mallory", Source: "sshd", Host: "web-1", SrcAddr: ip("10.1.2.50"), Events: 1, From: t0.Add(time.Hour), To: t0.Add(time.Hour)},
	}
	rev := ReviewIdentities(edges, sessions, m, IdentityOptions{Window: win})

	type row struct {
		ID, Seg, WL, Port, Verdict, Rule, Source string
		Flows, Events, Viol                      uint64
		Src                                      string
		Sensitive                                bool
	}
	var got []row
	for _, r := range rev.Identities {
		got = append(got, row{r.Identity, r.DstSegment, r.DstWorkload, portProto(r.DstPort, r.Proto), r.Verdict, strings.Join(r.Rules, ","),
			r.Source, r.Flows, r.AccessEvents, r.ViolationFlows, strings.Join(r.SrcSegments, ","), r.Sensitive})
	}
	want := []row{
		{"alice", "db", "orders-db", "22/tcp", "allowed", "dba-ssh", SourceAccess, 0, 2, 0, "external", true},
		{"mallory", "", "web-1", "22/tcp", "unknown", "", SourceAccess, 0, 1, 0, "web", false},
		{"mallory", "app", "app-tier", "8080/tcp", "allowed", "web-to-app", SourceFlow, 3, 0, 0, "web", false},
		{"mallory", "db", "orders-db", "5432/tcp", "violation", "app-to-db", SourceFlow, 4, 0, 1, "app", true},
		{"svc-app", "db", "", "5432/tcp", "allowed", "app-to-db", SourceFlow, 100, 0, 0, "app", true},
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("rows (-got +want):\n%s", d)
	}

	var profiles []string
	for _, p := range rev.Profiles {
		profiles = append(profiles, p.Identity+" "+p.Kind+" "+strings.Join(p.Segments, ",")+" "+strings.Join(p.Rules, ",")+
			" dormant="+strings.Join(p.Dormant, ","))
	}
	wantP := []string{
		"alice user db,external dba-ssh dormant=",
		"bob user   dormant=dba-ssh",
		"mallory user app,db,web app-to-db,web-to-app dormant=",
		"svc-app service_account app,db app-to-db dormant=",
		"svc-batch user   dormant=app-to-db",
	}
	if d := cmp.Diff(profiles, wantP); d != "" {
		t.Errorf("profiles (-got +want):\n%s", d)
	}

	// Dormant: bob (dba-ssh) and svc-batch (app-to-db); svc-app used
	// app-to-db (mallory's flows from its address count for it); carol's
	// rule is staged (decides no stored rule) and deny rules entitle no one.
	var dormant []string
	for _, d := range rev.Dormant {
		dormant = append(dormant, d.Identity+"|"+d.Rule+"|"+strings.Join(d.From, ",")+"|"+strings.Join(d.To, ",")+"|"+strings.Join(d.Ports, ","))
	}
	if d := cmp.Diff(dormant, []string{"bob|dba-ssh|external,web|db|22/tcp", "svc-batch|app-to-db|app|db|5432/tcp"}); d != "" {
		t.Errorf("dormant (-got +want):\n%s", d)
	}

	u := rev.Unattributed
	if u.Flows != 5 || u.TotalFlows != 5+4+100 || len(u.BySegment) != 1 || u.BySegment[0].Sources[0].Value != "192.0.2.66" {
		t.Errorf("unattributed = %+v, want 5 of 109 flows into db from 192.0.2.66", u)
	}
	if s := rev.Summary; s.Identities != 5 || s.Users != 4 || s.ServiceAccounts != 1 || s.Rows != 5 || s.SensitiveRows != 3 || s.ViolationRows != 1 || s.Dormant != 2 {
		t.Errorf("summary = %+v", s)
	}

	// CSV: one row per identity × destination × port, review columns empty.
	var buf bytes.Buffer
	if err := WriteIdentityCSV(&buf, rev); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+len(want) {
		t.Fatalf("CSV has %d records, want header + %d", len(recs), len(want))
	}
	for _, r := range recs[1:] {
		if n := len(r); r[n-3] != "" || r[n-2] != "" || r[n-1] != "" {
			t.Errorf("review columns not empty: %v", r)
		}
	}
	if d := cmp.Diff(recs[0][len(recs[0])-3:], []string{"reviewer", "acknowledged", "review_notes"}); d != "" {
		t.Error(d)
	}

	// The table names every identity and the unattributed share.
	buf.Reset()
	if err := WriteIdentityTable(&buf, rev); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"mallory", "app,db,web", "Dormant entitlements", "svc-batch", "5 of 109 cross-segment flows (4.59%)"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, buf.String())
		}
	}

	// One identity only.
	one := ReviewIdentities(edges, sessions, m, IdentityOptions{Window: win, Identity: "mallory"})
	if len(one.Identities) != 3 || len(one.Profiles) != 1 || len(one.Dormant) != 0 {
		t.Errorf("--identity mallory: %d rows, %d profiles, %d dormant; want 3, 1, 0", len(one.Identities), len(one.Profiles), len(one.Dormant))
	}
}

func TestIdentityProfilePortsAndUnknownPorts(t *testing.T) {
	m := compile(t, identityPolicy)
	edges := []query.IdentityEdge{
		iedge("svc-app", "10.3.0.1", "10.1.0.1", 8002, "violation", "", 1, 0),
		iedge("svc-app", "10.3.0.1", "10.1.0.1", 8000, "violation", "", 1, 0),
		iedge("svc-app", "10.3.0.1", "10.1.0.1", 8001, "violation", "", 1, 0),
		iedge("svc-app", "10.3.0.1", "10.2.0.1", 5432, "allowed", "app-to-db", 1, 0),
		{Identity: "svc-app", Client: ip("10.3.0.1"), Server: ip("10.2.0.1"), Proto: 1, Verdict: "allowed", Flows: 1},
	}
	// A web request names no port: no verdict, no service in the profile.
	sessions := []query.AccessSession{{User: "svc-app", Source: "nginx", Host: "web-1", SrcAddr: ip("10.3.0.1"), DstAddr: ip("10.2.0.1"), Events: 1}}
	rev := ReviewIdentities(edges, sessions, m, IdentityOptions{Window: win})
	var ports []string
	for _, p := range rev.Profiles {
		if p.Identity == "svc-app" {
			ports = p.Ports
		}
	}
	if d := cmp.Diff(ports, []string{"icmp", "5432/tcp", "8000-8002/tcp"}); d != "" {
		t.Errorf("ports (-got +want):\n%s", d)
	}
	for _, r := range rev.Identities {
		if r.Source == SourceAccess && (r.Verdict != "unknown" || r.DstPort != 0) {
			t.Errorf("access row without a port: %+v, want verdict unknown", r)
		}
	}
}
