package policy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDesignExample(t *testing.T) {
	p, err := Load("testdata/design_example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{
		Segments: []Segment{
			{Name: "web", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8:1::/48")}, Line: 2},
			{Name: "db", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}, Tags: []string{"pci-cde", "sensitive"}, Line: 4},
		},
		Inventory: []InventoryEntry{
			{CIDR: netip.MustParsePrefix("10.2.0.10/32"), Workload: "orders-db", Owner: "payments", ServiceAccount: "svc-orders", Line: 8},
		},
		Rules: []Rule{
			{Name: "web-to-db-postgres", From: []string{"web"}, To: []string{"db"}, Ports: []PortSpec{{Lo: 5432, Hi: 5432, Proto: ProtoTCP}}, Line: 13},
		},
		Default: DefaultDeny,
	}
	if diff := cmp.Diff(p, want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Load (-got +want):\n%s", diff)
	}
	if _, err := Compile(p); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	got, err := Validate("testdata/design_example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := "2 segments, 3 CIDRs, 1 inventory entry, 1 rule, default deny"; got != want {
		t.Errorf("Validate = %q, want %q", got, want)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("default: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Validate(path)
	if err == nil || err.Error() != path+`:1: default: "maybe" is not deny or allow` {
		t.Errorf("Validate(bad) = %v", err)
	}
	if _, err := Validate(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Validate(missing) succeeded")
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "---\n"} {
		p, err := Parse([]byte(in), "p.yaml")
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if diff := cmp.Diff(p, &Policy{Default: DefaultDeny}); diff != "" {
			t.Errorf("Parse(%q) (-got +want):\n%s", in, diff)
		}
	}
}

func TestParseForms(t *testing.T) {
	in := `
segments:
  - name: hosts
    cidrs: [10.9.0.1, "::ffff:10.8.0.0/112", 2001:db8::/32]
inventory:
  - cidr: 10.9.0.1
    labels: {env: prod, app: api}
rules:
  - name: all
    from: [external]
    to: [hosts]
    ports: [any, tcp, icmp, icmpv6, 53/udp, 8000-8100/TCP]
    identities: [alice, svc-x]
default: allow
`
	p, err := Parse([]byte(in), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gotCIDRs := []string{}
	for _, c := range p.Segments[0].CIDRs {
		gotCIDRs = append(gotCIDRs, c.String())
	}
	if diff := cmp.Diff(gotCIDRs, []string{"10.9.0.1/32", "10.8.0.0/16", "2001:db8::/32"}); diff != "" {
		t.Errorf("cidrs (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(p.Inventory[0].Labels, map[string]string{"env": "prod", "app": "api"}); diff != "" {
		t.Errorf("labels (-got +want):\n%s", diff)
	}
	wantPorts := []PortSpec{{0, 65535, ProtoAny}, {0, 65535, ProtoTCP}, {0, 65535, ProtoICMP}, {0, 65535, ProtoICMPv6}, {53, 53, ProtoUDP}, {8000, 8100, ProtoTCP}}
	if diff := cmp.Diff(p.Rules[0].Ports, wantPorts); diff != "" {
		t.Errorf("ports (-got +want):\n%s", diff)
	}
	var written []string
	for _, ps := range p.Rules[0].Ports {
		written = append(written, ps.String())
	}
	if diff := cmp.Diff(written, []string{"any", "tcp", "icmp", "icmpv6", "53/udp", "8000-8100/tcp"}); diff != "" {
		t.Errorf("PortSpec.String (-got +want):\n%s", diff)
	}
	if p.Default != DefaultAllow {
		t.Errorf("default = %q", p.Default)
	}
}

func TestParseErrors(t *testing.T) {
	base := `segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
`
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "bad port",
			in: base + `rules:
  - name: r0
    from: [web]
    to: [db]
    ports: ["5432/tcp"]
  - name: r1
    from: [web]
    to: [db]
    ports: ["54x/tcp", "5432"]
`,
			want: []string{
				`p.yaml:14: rules[1].ports[0]: "54x/tcp" is not PORT[-PORT]/PROTO (e.g. 5432/tcp)`,
				`p.yaml:14: rules[1].ports[1]: "5432" has no protocol; write "5432/tcp" or "5432/udp"`,
			},
		},
		{
			name: "model fields",
			in: base + `    intra: sometimes
rules:
  - name: r0
    from: [web, {segment: dbx, labels: {app: orders}}, {}]
    to: [{labels: {"": x}}]
    ports: ["5432/tcp"]
    action: reject
    mode: shadow
    review_by: 31/05/2027
`,
			want: []string{
				`p.yaml:6: segments[1].intra: "sometimes" is not allow or rules`,
				`p.yaml:9: rules[0].from[2]: a selector needs a segment, labels or both (e.g. {segment: db, labels: {app: orders}})`,
				`p.yaml:10: rules[0].to[0].labels: label names must not be empty`,
				`p.yaml:10: rules[0].to[0]: a selector needs a segment, labels or both (e.g. {segment: db, labels: {app: orders}})`,
				`p.yaml:12: rules[0].action: "reject" is not allow or deny`,
				`p.yaml:13: rules[0].mode: "shadow" is not enforced or staged`,
				`p.yaml:14: rules[0].review_by: "31/05/2027" is not a date YYYY-MM-DD (e.g. 2027-05-31)`,
				`p.yaml:9: rules[0].from[1].segment: unknown segment "dbx" (known: db, web, external)`,
			},
		},
		{
			name: "duplicate segment",
			in: base + `  - name: web
    cidrs: [10.3.0.0/16]
`,
			want: []string{`p.yaml:6: segments[2].name: "web" is declared twice (first at line 2)`},
		},
		{
			name: "unknown segment in rule",
			in: base + `rules:
  - name: r0
    from: [web, dbx]
    to:
      - external
      - nowhere
    ports: [any]
`,
			want: []string{
				`p.yaml:8: rules[0].from[1]: unknown segment "dbx" (known: db, web, external)`,
				`p.yaml:11: rules[0].to[1]: unknown segment "nowhere" (known: db, web, external)`,
			},
		},
		{
			name: "bad cidrs",
			in: `segments:
  - name: web
    cidrs:
      - 10.1.2.3/16
      - 10.1.0.0/33
      - "2001:db8::1/32"
      - banana
`,
			want: []string{
				`p.yaml:4: segments[0].cidrs[0]: "10.1.2.3/16" has host bits set; did you mean 10.1.0.0/16?`,
				`p.yaml:5: segments[0].cidrs[1]: "10.1.0.0/33" is not a CIDR (e.g. 10.1.0.0/16 or 2001:db8::/48)`,
				`p.yaml:6: segments[0].cidrs[2]: "2001:db8::1/32" has host bits set; did you mean 2001:db8::/32?`,
				`p.yaml:7: segments[0].cidrs[3]: "banana" is not a CIDR (e.g. 10.1.0.0/16 or 2001:db8::/48)`,
			},
		},
		{
			name: "reserved external",
			in: `segments:
  - name: external
    cidrs: [0.0.0.0/0]
`,
			want: []string{`p.yaml:2: segments[0].name: "external" is reserved for addresses outside every segment; rules may use it without declaring it`},
		},
		{
			name: "default",
			in:   base + "default: permit\n",
			want: []string{`p.yaml:6: default: "permit" is not deny or allow`},
		},
		{
			name: "unknown keys",
			in: base + `rulez: []
inventory:
  - cidr: 10.1.0.5/32
    team: x
`,
			want: []string{
				`p.yaml:6: rulez: unknown key (expected one of segments, inventory, rules, default)`,
				`p.yaml:9: inventory[0].team: unknown key (expected one of cidr, workload, owner, service_account, labels)`,
			},
		},
		{
			name: "prefix in two segments",
			in: base + `  - name: app
    cidrs: [10.4.0.0/16, 10.1.0.0/16, 10.4.0.0/16]
`,
			want: []string{
				`p.yaml:7: segments[2].cidrs[1]: 10.1.0.0/16 is already in segment "web" (line 3); a prefix belongs to one segment only`,
				`p.yaml:7: segments[2].cidrs[2]: 10.4.0.0/16 is listed twice (first at line 7)`,
			},
		},
		{
			name: "missing fields",
			in: `segments:
  - tags: [x]
inventory:
  - workload: w
  - cidr: 10.0.0.1/32
  - cidr: 10.0.0.1
rules:
  - name: r
    from: []
  - name: r
    from: [external]
    to: [external]
    ports: ["1-0/tcp"]
`,
			want: []string{
				`p.yaml:2: segments[0].name: is required`,
				`p.yaml:2: segments[0].cidrs: is required`,
				`p.yaml:4: inventory[0].cidr: is required`,
				`p.yaml:9: rules[0].from: at least one segment is required`,
				`p.yaml:8: rules[0].to: is required`,
				`p.yaml:8: rules[0].ports: is required (use ["any"] to allow all traffic)`,
				`p.yaml:13: rules[1].ports[0]: "1-0/tcp" is not PORT[-PORT]/PROTO (e.g. 5432/tcp)`,
				`p.yaml:6: inventory[2].cidr: 10.0.0.1/32 is already described at line 5`,
				`p.yaml:10: rules[1].name: "r" is declared twice (first at line 8)`,
			},
		},
		{
			name: "wrong shapes",
			in: `segments: web
rules:
  - [a]
default: [deny]
`,
			want: []string{
				`p.yaml:1: segments: expected a list`,
				`p.yaml:3: rules[0]: expected a mapping`,
				`p.yaml:4: default: expected a single value`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), "p.yaml")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v holds no *FieldError", err)
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tc.want); diff != "" {
				t.Errorf("Parse errors (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseYAMLSyntaxError(t *testing.T) {
	_, err := Parse([]byte("segments: [\n"), "p.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), "p.yaml: yaml: line") {
		t.Errorf("Parse = %v, want a p.yaml: yaml: line … error", err)
	}
}

func TestPortSpec(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		port  uint16
		proto uint8
		want  bool
	}{
		{"5432/tcp", 5432, ProtoTCP, true},
		{"5432/tcp", 5432, ProtoUDP, false},
		{"5432/tcp", 5433, ProtoTCP, false},
		{"8000-8100/tcp", 8050, ProtoTCP, true},
		{"8000-8100/tcp", 8101, ProtoTCP, false},
		{"any", 1, 47, true},
		{"icmp", 0x0800, ProtoICMP, true},
		{"icmp", 0, ProtoICMPv6, false},
	} {
		ps, err := ParsePortSpec(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := ps.Matches(tc.port, tc.proto); got != tc.want {
			t.Errorf("%s.Matches(%d, %d) = %v, want %v", tc.spec, tc.port, tc.proto, got, tc.want)
		}
	}
	for _, bad := range []string{"", "/tcp", "x/tcp", "65536/tcp", "-1/tcp", "+1/tcp", "1-/tcp", "5-4/tcp", "80/sctp", "80"} {
		if _, err := ParsePortSpec(bad); err == nil {
			t.Errorf("ParsePortSpec(%q) succeeded", bad)
		}
	}
}

// FuzzParsePolicy checks Parse never panics and that whatever it accepts
// compiles, and the compiled matcher answers.
func FuzzParsePolicy(f *testing.F) {
	if data, err := os.ReadFile("testdata/design_example.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("segments:\n  - name: a\n    cidrs: [10.0.0.0/8, \"::/0\"]\nrules:\n  - name: r\n    from: [a]\n    to: [external]\n    ports: [any]\ndefault: allow\n"))
	f.Add([]byte("inventory:\n  - cidr: 10.0.0.1\n    labels: {a: b}\n"))
	f.Add([]byte("segments: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		m, err := Compile(p)
		if err != nil {
			t.Fatalf("Parse accepted a policy Compile rejects: %v\n%s", err, data)
		}
		for _, s := range p.Segments {
			for _, c := range s.CIDRs {
				var a [16]byte = c.Addr().As16()
				if c.Addr().Is4() {
					a[10], a[11] = 0xff, 0xff
				}
				ep := m.Lookup(a)
				k := FlowKey{Src: ep, Dst: m.Lookup([16]byte{15: 1}), DstPort: 80, Proto: 6}
				m.Decide(&k)
			}
		}
	})
}
