package audit

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/policy"
)

const diffBase = `
segments:
  - name: web
    cidrs: [10.1.0.0/16, "2001:db8:1::/64"]
  - name: app
    cidrs: [10.3.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
    tags: [sensitive]
inventory:
  - cidr: 10.2.0.10/32
    workload: orders-db
    labels: {app: orders}
  - cidr: 10.3.0.10/32
    workload: checkout
    service_account: svc-checkout
rules:
  - name: internet-to-web
    from: [external]
    to: [web]
    ports: ["443/tcp", "80/tcp"]
  - name: web-to-app
    from: [web]
    to: [app]
    ports: ["8080/tcp"]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: ["5432/tcp"]
  - name: admin-ssh
    from: [external]
    to: [web, app, db]
    ports: ["22/tcp"]
    identities: [alice]
default: deny
`

func parsePolicy(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(text), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func diffOf(t *testing.T, old, new string) *PolicyDiff {
	t.Helper()
	d, err := DiffPolicies(parsePolicy(t, old), parsePolicy(t, new))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// brief renders a change as one comparable line.
func brief(c DiffChange) string {
	src, dst := c.SrcSegment, c.DstSegment
	if c.SrcWorkload != "" || len(c.SrcCIDRs) > 0 {
		src += "/" + c.SrcWorkload + "[" + strings.Join(c.SrcCIDRs, ",") + "]"
	}
	if c.DstWorkload != "" || len(c.DstCIDRs) > 0 {
		dst += "/" + c.DstWorkload + "[" + strings.Join(c.DstCIDRs, ",") + "]"
	}
	return c.Change + " " + src + " -> " + dst + " " + c.Ports + " " + c.Identity + " " +
		strings.Join(c.BeforeRules, ",") + " => " + strings.Join(c.AfterRules, ",")
}

func briefs(cs []DiffChange) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, brief(c))
	}
	return out
}

func TestDiffPolicies(t *testing.T) {
	reordered := strings.Replace(strings.Replace(diffBase, "  - name: internet-to-web\n    from: [external]\n    to: [web]\n    ports: [\"443/tcp\", \"80/tcp\"]\n", "", 1),
		"default: deny", "  - name: internet-to-web\n    from: [external]\n    to: [web]\n    ports: [\"443/tcp\", \"80/tcp\"]\ndefault: deny", 1)
	if reordered == diffBase {
		t.Fatal("reorder edit did not apply")
	}
	denyFirst := strings.Replace(diffBase, "rules:\n", "rules:\n  - name: no-app-to-db-5432\n    from: [app]\n    to: [db]\n    ports: [\"5432/tcp\"]\n    action: deny\n", 1)
	denyLast := strings.Replace(diffBase, "default: deny", "  - name: no-app-to-db-5432\n    from: [app]\n    to: [db]\n    ports: [\"5432/tcp\"]\n    action: deny\ndefault: deny", 1)
	for _, tc := range []struct {
		name     string
		old, new string
		want     []string
	}{
		{"self", diffBase, diffBase, []string{}},
		{"reordered allow-only", diffBase, reordered, []string{}},
		{"one port added", diffBase, strings.Replace(diffBase, `["5432/tcp"]`, `["5432/tcp", "6432/tcp"]`, 1),
			[]string{"added app -> db 6432/tcp * - => app-to-db"}},
		{"one port removed", strings.Replace(diffBase, `["5432/tcp"]`, `["5432/tcp", "6432/tcp"]`, 1), diffBase,
			[]string{"removed app -> db 6432/tcp * app-to-db => -"}},
		{"range widened", diffBase, strings.Replace(diffBase, `["8080/tcp"]`, `["8080-8090/tcp"]`, 1),
			[]string{"added web -> app 8081-8090/tcp * - => web-to-app"}},
		{"deny after allow changes nothing", diffBase, denyLast, []string{}},
		{"deny moved ahead of the allow closes", denyLast, denyFirst,
			[]string{"removed app -> db 5432/tcp * app-to-db => no-app-to-db-5432"}},
		{"identity added", diffBase, strings.Replace(diffBase, "identities: [alice]", "identities: [alice, bob]", 1),
			[]string{
				"added external -> app 22/tcp bob - => admin-ssh",
				"added external -> db 22/tcp bob - => admin-ssh",
				"added external -> web 22/tcp bob - => admin-ssh",
			}},
		{"selector narrows the destination", diffBase,
			strings.Replace(diffBase, "    to: [db]\n", "    to: [{segment: db, labels: {app: orders}}]\n", 1),
			[]string{"removed app -> db/[10.2.0.0/16] 5432/tcp * app-to-db => -"}},
		{"a rule for any port", diffBase, strings.Replace(diffBase, "default: deny", "  - name: web-any\n    from: [web]\n    to: [db]\n    ports: [any]\ndefault: deny", 1),
			[]string{"added web -> db any * - => web-any"}},
		{"default allow", diffBase, strings.Replace(diffBase, "default: deny", "default: allow", 1), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := diffOf(t, tc.old, tc.new)
			got := briefs(d.Changes)
			if tc.want == nil {
				if len(got) == 0 {
					t.Error("no changes, want some")
				}
				for _, c := range d.Changes {
					if c.Change != Added {
						t.Errorf("default allow removed %s", brief(c))
					}
				}
				return
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("changes (-got +want):\n%s", diff)
			}
			if d.Summary.Added+d.Summary.Removed != len(d.Changes) {
				t.Errorf("summary %+v for %d changes", d.Summary, len(d.Changes))
			}
		})
	}
}

func TestDiffSensitiveAndStaged(t *testing.T) {
	staged := strings.Replace(diffBase, "default: deny", "  - name: web-db-staged\n    from: [web]\n    to: [db]\n    ports: [\"5432/tcp\"]\n    mode: staged\ndefault: deny", 1)
	d := diffOf(t, diffBase, staged)
	if len(d.Changes) != 0 {
		t.Errorf("enforced changes %v, want none", briefs(d.Changes))
	}
	want := []string{"added web -> db 5432/tcp * - => web-db-staged"}
	if diff := cmp.Diff(briefs(d.Staged), want); diff != "" {
		t.Errorf("staged changes (-got +want):\n%s", diff)
	}
	if !d.Staged[0].DstSensitive || d.Summary.StagedAdded != 1 {
		t.Errorf("staged change %+v summary %+v: want sensitive destination, 1 staged added", d.Staged[0], d.Summary)
	}
}

func TestDiffSegmentMove(t *testing.T) {
	// 10.3.9.0/24 leaves app for web: it loses app-to-db and gains
	// what web has.
	moved := strings.Replace(diffBase, "cidrs: [10.1.0.0/16, \"2001:db8:1::/64\"]", "cidrs: [10.1.0.0/16, \"2001:db8:1::/64\", 10.3.9.0/24]", 1)
	d := diffOf(t, diffBase, moved)
	// What stays open (alice's ssh, web-to-app on 8080 which replaces
	// intra-segment app traffic) is no change.
	want := []string{
		"added external -> web/[10.3.9.0/24] 80/tcp * - => internet-to-web",
		"added external -> web/[10.3.9.0/24] 443/tcp * - => internet-to-web",
		"added web/[10.1.0.0/16,2001:db8:1::/64] -> web/[10.3.9.0/24] other * - => -",
		"added web/[10.1.0.0/16,2001:db8:1::/64] -> web/[10.3.9.0/24] 0-8079/tcp * - => -",
		"added web/[10.1.0.0/16,2001:db8:1::/64] -> web/[10.3.9.0/24] 8081-65535/tcp * - => -",
		"added web/[10.3.9.0/24] -> web/[10.1.0.0/16,2001:db8:1::/64] any * - => -",
		"removed app/[10.3.0.0/16] -> app/[10.3.9.0/24] any * - => -",
		"removed app/[10.3.9.0/24] -> app/[10.3.0.0/16] other * - => -",
		"removed app/[10.3.9.0/24] -> app/[10.3.0.0/16] 0-8079/tcp * - => -",
		"removed app/[10.3.9.0/24] -> app/[10.3.0.0/16] 8081-65535/tcp * - => -",
		"removed app/[10.3.9.0/24] -> app/checkout[10.3.0.10/32] other * - => -",
		"removed app/[10.3.9.0/24] -> app/checkout[10.3.0.10/32] 0-8079/tcp * - => -",
		"removed app/[10.3.9.0/24] -> app/checkout[10.3.0.10/32] 8081-65535/tcp * - => -",
		"removed app/[10.3.9.0/24] -> db 5432/tcp * app-to-db => -",
		"removed app/checkout[10.3.0.10/32] -> app/[10.3.9.0/24] any * - => -",
	}
	if diff := cmp.Diff(briefs(d.Changes), want); diff != "" {
		t.Errorf("changes (-got +want):\n%s", diff)
	}
}
