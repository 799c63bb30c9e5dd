package policy

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

const matchPolicy = `
segments:
  - name: web
    cidrs: [10.1.0.0/16, "2001:db8:1::/48"]
  - name: db
    cidrs: [10.2.0.0/16, "2001:db8:2::/48"]
    tags: [pci-cde, sensitive]
  - name: db-admin          # nested inside db: longest prefix wins
    cidrs: [10.2.9.0/24, "2001:db8:2:9::/64"]
  - name: jump
    cidrs: [10.3.0.0/24]
  - name: mon
    cidrs: [10.4.0.0/24]
inventory:
  - cidr: 10.2.0.10/32
    workload: orders-db
    owner: payments
    service_account: svc-orders
  - cidr: 10.2.0.0/24       # nested inventory: the /32 wins for .10
    workload: db-pool
    owner: dba
  - cidr: 10.200.0.1/32     # in no segment
    workload: partner-gw
  - cidr: "2001:db8:1::5/128"
    workload: web-v6
    service_account: svc-web
rules:
  - name: web-to-db-postgres
    from: [web]
    to: [db]
    ports: ["5432/tcp"]
  - name: jump-ssh
    from: [jump]
    to: [db, web]
    ports: ["22/tcp"]
    identities: [alice, svc-bastion]
  - name: dns-out
    from: [web, db]
    to: [external]
    ports: ["53/udp", "53/tcp"]
  - name: mon-ping
    from: [mon]
    to: [db]
    ports: [icmp, icmpv6]
default: deny
`

func mustMatcher(t testing.TB, src string) *Matcher {
	t.Helper()
	p, err := Parse([]byte(src), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func addr(s string) schemas.Addr {
	return schemas.AddrFromNetip(netip.MustParseAddr(s))
}

func TestLookup(t *testing.T) {
	m := mustMatcher(t, matchPolicy)
	type ep struct{ Segment, Workload, Owner, ServiceAccount string }
	for _, tc := range []struct {
		addr string
		want ep
		tags []string
	}{
		{"10.1.2.3", ep{Segment: "web"}, nil},
		{"10.2.0.10", ep{"db", "orders-db", "payments", "svc-orders"}, []string{"pci-cde", "sensitive"}},
		{"10.2.0.11", ep{"db", "db-pool", "dba", ""}, []string{"pci-cde", "sensitive"}},
		{"10.2.1.1", ep{Segment: "db"}, []string{"pci-cde", "sensitive"}},
		{"10.2.9.1", ep{Segment: "db-admin"}, nil},
		{"10.2.9.255", ep{Segment: "db-admin"}, nil},
		{"10.2.10.0", ep{Segment: "db"}, []string{"pci-cde", "sensitive"}},
		{"10.2.255.255", ep{Segment: "db"}, []string{"pci-cde", "sensitive"}},
		{"10.3.0.0", ep{Segment: "jump"}, nil},
		{"10.3.1.0", ep{Segment: External}, nil},
		{"10.200.0.1", ep{Segment: External, Workload: "partner-gw"}, nil},
		{"0.0.0.0", ep{Segment: External}, nil},
		{"255.255.255.255", ep{Segment: External}, nil},
		{"2001:db8:1::5", ep{"web", "web-v6", "", "svc-web"}, nil},
		{"2001:db8:1:ffff:ffff:ffff:ffff:ffff", ep{Segment: "web"}, nil},
		{"2001:db8:2:9::1", ep{Segment: "db-admin"}, nil},
		{"2001:db8:2:a::1", ep{Segment: "db"}, []string{"pci-cde", "sensitive"}},
		{"2001:db8:3::1", ep{Segment: External}, nil},
		{"::ffff:10.1.0.1", ep{Segment: "web"}, nil}, // mapped form is IPv4
		{"::1", ep{Segment: External}, nil},
	} {
		e := m.Lookup(addr(tc.addr))
		got := ep{e.Segment, e.Workload, e.Owner, e.ServiceAccount}
		if diff := cmp.Diff(got, tc.want); diff != "" {
			t.Errorf("Lookup(%s) (-got +want):\n%s", tc.addr, diff)
		}
		if diff := cmp.Diff(e.Tags, tc.tags); diff != "" {
			t.Errorf("Lookup(%s).Tags (-got +want):\n%s", tc.addr, diff)
		}
	}
	if e := m.Lookup(schemas.Addr{}); e.Segment != External {
		t.Errorf("Lookup(zero).Segment = %q", e.Segment)
	}
}

func TestDecide(t *testing.T) {
	deny := mustMatcher(t, matchPolicy)
	p, err := Parse([]byte(matchPolicy), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p.Default = DefaultAllow
	allowAll, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	type flow struct {
		src, dst         string
		srcPort, dstPort uint16
		proto            uint8
		srcID, dstID     string
	}
	for _, tc := range []struct {
		name    string
		m       *Matcher
		f       flow
		verdict Verdict
		rule    string
	}{
		{"web to db postgres", deny, flow{"10.1.0.5", "10.2.0.10", 51000, 5432, 6, "", ""}, VerdictAllowed, "web-to-db-postgres"},
		{"web to db postgres v6", deny, flow{"2001:db8:1::5", "2001:db8:2::1", 51000, 5432, 6, "", ""}, VerdictAllowed, "web-to-db-postgres"},
		{"web to db postgres over udp", deny, flow{"10.1.0.5", "10.2.0.10", 51000, 5432, 17, "", ""}, VerdictViolation, ""},
		{"web to db ssh", deny, flow{"10.1.0.5", "10.2.0.10", 51000, 22, 6, "", ""}, VerdictViolation, ""},
		{"web to web", deny, flow{"10.1.0.5", "10.1.7.7", 51000, 22, 6, "", ""}, VerdictIntraSegment, ""},
		{"external to external", deny, flow{"192.0.2.1", "198.51.100.1", 51000, 22, 6, "", ""}, VerdictIntraSegment, ""},
		{"external to db", deny, flow{"192.0.2.1", "10.2.0.10", 51000, 5432, 6, "", ""}, VerdictViolation, ""},
		{"web to nested db-admin", deny, flow{"10.1.0.5", "10.2.9.1", 51000, 5432, 6, "", ""}, VerdictViolation, ""},
		{"web to external dns", deny, flow{"10.1.0.5", "192.0.2.53", 40000, 53, 17, "", ""}, VerdictAllowed, "dns-out"},
		{"reply db to web", deny, flow{"10.2.0.10", "10.1.0.5", 5432, 51000, 6, "", ""}, VerdictAllowed, "web-to-db-postgres"},
		{"reply db to web on 1024", deny, flow{"10.2.0.10", "10.1.0.5", 5432, 1024, 6, "", ""}, VerdictAllowed, "web-to-db-postgres"},
		{"reply db to web not ephemeral", deny, flow{"10.2.0.10", "10.1.0.5", 5432, 80, 6, "", ""}, VerdictViolation, ""},
		{"reply from wrong port", deny, flow{"10.2.0.10", "10.1.0.5", 5433, 51000, 6, "", ""}, VerdictViolation, ""},
		{"reply external dns", deny, flow{"192.0.2.53", "10.2.0.1", 53, 40000, 17, "", ""}, VerdictAllowed, "dns-out"},
		{"db opens to web", deny, flow{"10.2.0.10", "10.1.0.5", 40000, 5432, 6, "", ""}, VerdictViolation, ""},
		{"jump ssh no identity", deny, flow{"10.3.0.1", "10.2.0.10", 50000, 22, 6, "", ""}, VerdictViolation, ""},
		{"jump ssh alice", deny, flow{"10.3.0.1", "10.2.0.10", 50000, 22, 6, "alice", ""}, VerdictAllowed, "jump-ssh"},
		{"jump ssh bob", deny, flow{"10.3.0.1", "10.1.0.1", 50000, 22, 6, "bob", ""}, VerdictViolation, ""},
		{"jump ssh service account", deny, flow{"10.3.0.1", "10.1.0.1", 50000, 22, 6, "svc-bastion", ""}, VerdictAllowed, "jump-ssh"},
		{"jump ssh reply to alice", deny, flow{"10.2.0.10", "10.3.0.1", 22, 50000, 6, "", "alice"}, VerdictAllowed, "jump-ssh"},
		{"jump ssh reply to bob", deny, flow{"10.2.0.10", "10.3.0.1", 22, 50000, 6, "", "bob"}, VerdictViolation, ""},
		{"mon ping", deny, flow{"10.4.0.1", "10.2.0.1", 0, 0x0800, 1, "", ""}, VerdictAllowed, "mon-ping"},
		{"mon ping echo reply", deny, flow{"10.2.0.1", "10.4.0.1", 0, 0x0000, 1, "", ""}, VerdictAllowed, "mon-ping"},
		{"db pings mon", deny, flow{"10.2.0.1", "10.4.0.1", 0, 0x0800, 1, "", ""}, VerdictViolation, ""},
		{"mon ping6 echo reply", deny, flow{"2001:db8:2::1", "10.4.0.1", 0, 0x8100, 58, "", ""}, VerdictAllowed, "mon-ping"},
		{"no source address", deny, flow{"", "10.2.0.1", 1, 5432, 6, "", ""}, VerdictUnknown, ""},
		{"no destination address", deny, flow{"10.1.0.1", "", 1, 5432, 6, "", ""}, VerdictUnknown, ""},
		{"default allow", allowAll, flow{"10.1.0.5", "10.2.0.10", 51000, 22, 6, "", ""}, VerdictAllowed, DefaultRule},
		{"default allow keeps rule names", allowAll, flow{"10.1.0.5", "10.2.0.10", 51000, 5432, 6, "", ""}, VerdictAllowed, "web-to-db-postgres"},
		{"default allow intra", allowAll, flow{"10.1.0.5", "10.1.0.6", 51000, 22, 6, "", ""}, VerdictIntraSegment, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var src, dst schemas.Addr
			if tc.f.src != "" {
				src = addr(tc.f.src)
			}
			if tc.f.dst != "" {
				dst = addr(tc.f.dst)
			}
			k := FlowKey{Src: tc.m.Lookup(src), Dst: tc.m.Lookup(dst), SrcPort: tc.f.srcPort, DstPort: tc.f.dstPort,
				Proto: tc.f.proto, SrcIdentity: tc.f.srcID, DstIdentity: tc.f.dstID}
			v, rule := tc.m.Decide(&k)
			if v != tc.verdict || rule != tc.rule {
				t.Errorf("Decide = %s %q, want %s %q", v, rule, tc.verdict, tc.rule)
			}
		})
	}
	if v, _ := deny.Decide(nil); v != VerdictUnknown {
		t.Errorf("Decide(nil) = %s", v)
	}
	if v, _ := deny.Decide(&FlowKey{}); v != VerdictUnknown {
		t.Errorf("Decide(empty key) = %s", v)
	}
}

func TestVerdictString(t *testing.T) {
	got := []string{VerdictUnknown.String(), VerdictAllowed.String(), VerdictViolation.String(), VerdictIntraSegment.String(), Verdict(9).String()}
	if diff := cmp.Diff(got, []string{"unknown", "allowed", "violation", "intra_segment", "unknown"}); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

// TestRangeTableMatchesBart cross-checks the flattened range table with
// bart on random nested prefixes, at prefix edges and random addresses.
func TestRangeTableMatchesBart(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		var pfxs []netip.Prefix
		var vals []uint32
		seen := map[netip.Prefix]bool{}
		for len(pfxs) < 300 {
			var pfx netip.Prefix
			if r.IntN(2) == 0 {
				a := [4]byte{byte(r.IntN(4)), byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))}
				if r.IntN(3) == 0 {
					a[0] = 255
				}
				pfx = netip.PrefixFrom(netip.AddrFrom4(a), r.IntN(33)).Masked()
			} else {
				var a [16]byte
				a[0] = byte(r.IntN(3)) * 0x7f
				a[1], a[7], a[15] = byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))
				pfx = netip.PrefixFrom(netip.AddrFrom16(a), r.IntN(129)).Masked()
			}
			if seen[pfx] {
				continue
			}
			seen[pfx] = true
			pfxs = append(pfxs, pfx)
			vals = append(vals, uint32(len(vals)+1))
		}
		rt := newRangeTable(pfxs, vals, 0)
		bt := newBartTable(pfxs, vals, 0)
		check := func(a schemas.Addr) {
			if got, want := rt.lookup(&a), bt.lookup(&a); got != want {
				t.Fatalf("round %d: lookup(%s) = %d, bart says %d", round, a, got, want)
			}
		}
		for _, p := range pfxs {
			first, last := prefixRange(p)
			for _, u := range []u128{first, last} {
				var a schemas.Addr
				for i := 0; i < 8; i++ {
					a[i] = byte(u.hi >> (56 - 8*i))
					a[8+i] = byte(u.lo >> (56 - 8*i))
				}
				check(a)
				for _, d := range []int{-1, 1} {
					b := a
					b[15] += byte(d)
					check(b)
				}
			}
		}
		for i := 0; i < 2000; i++ {
			var a schemas.Addr
			if r.IntN(2) == 0 {
				a = schemas.AddrFrom4([4]byte{byte(r.IntN(4)), byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
			} else {
				a[0], a[1], a[7], a[15] = byte(r.IntN(3))*0x7f, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))
			}
			check(a)
		}
	}
	// Whole-space prefixes and the last address.
	pfxs := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"), netip.MustParsePrefix("255.255.255.255/32"), netip.MustParsePrefix("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")}
	rt := newRangeTable(pfxs, []uint32{1, 2, 3, 4}, 0)
	for _, tc := range []struct {
		a    string
		want uint32
	}{{"0.0.0.0", 1}, {"255.255.255.254", 1}, {"255.255.255.255", 3}, {"::", 2}, {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 2}, {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 4}} {
		a := addr(tc.a)
		if got := rt.lookup(&a); got != tc.want {
			t.Errorf("lookup(%s) = %d, want %d", tc.a, got, tc.want)
		}
	}
}
