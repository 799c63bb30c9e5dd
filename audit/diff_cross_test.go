package audit

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

// randomPolicy draws a small policy with overlapping segments, labelled
// inventory, selectors, identities, deny, staged and intra: rules rules.
func randomPolicy(r *rand.Rand) string {
	var b strings.Builder
	b.WriteString("segments:\n")
	segs := []string{"a", "b", "c"}
	cidrs := []string{"10.1.0.0/16", "10.2.0.0/16", "10.1.5.0/24"}
	perm := r.Perm(3)
	for i, s := range segs {
		fmt.Fprintf(&b, "  - name: %s\n    cidrs: [%s]\n", s, cidrs[perm[i]])
		if r.IntN(3) == 0 {
			b.WriteString("    intra: rules\n")
		}
	}
	b.WriteString("inventory:\n")
	for i, c := range []string{"10.1.0.10/32", "10.2.0.10/32", "10.1.5.7/32"} {
		fmt.Fprintf(&b, "  - cidr: %s\n    workload: w%d\n    labels: {app: x%d}\n", c, i, r.IntN(2))
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "    service_account: sa%d\n", r.IntN(2))
		}
	}
	b.WriteString("rules:\n")
	ends := []string{"a", "b", "c", "external", "{segment: a, labels: {app: x1}}", "{labels: {app: x0}}"}
	ports := []string{`"22/tcp"`, `"20-30/tcp"`, `"53/udp"`, "tcp", "any", "icmp", `"25/tcp"`}
	ids := []string{"alice", "bob", "sa0", "sa1"}
	n := 1 + r.IntN(5)
	for i := range n {
		fmt.Fprintf(&b, "  - name: r%d\n    from: [%s]\n    to: [%s]\n    ports: [%s]\n", i, ends[r.IntN(len(ends))], ends[r.IntN(len(ends))], ports[r.IntN(len(ports))])
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "    identities: [%s]\n", ids[r.IntN(len(ids))])
		}
		if r.IntN(3) == 0 {
			b.WriteString("    action: deny\n")
		}
		if r.IntN(5) == 0 {
			b.WriteString("    mode: staged\n")
		}
	}
	if r.IntN(4) == 0 {
		b.WriteString("default: allow\n")
	} else {
		b.WriteString("default: deny\n")
	}
	return b.String()
}

// TestDiffCellsMatchBruteForce: the per-pair grid gives exactly the cells
// deciding every cell of the global grid does, on 150 random policy pairs (enforced and staged).
func TestDiffCellsMatchBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for range 150 {
		op, err1 := policy.Parse([]byte(randomPolicy(r)), "old.yaml")
		np, err2 := policy.Parse([]byte(randomPolicy(r)), "new.yaml")
		if err1 != nil || err2 != nil {
			continue
		}
		om, err1 := policy.Compile(op)
		nm, err2 := policy.Compile(np)
		if err1 != nil || err2 != nil {
			continue
		}
		atoms := diffAtoms(om, nm)
		protos, ranges := diffPorts(op, np)
		idents := diffIdentities(op, np)
		for _, staged := range []bool{false, true} {
			got := diffCells(om, nm, atoms, protos, ranges, idents, staged)
			want := map[diffCell]diffOutcome{}
			for si := range atoms {
				for di := range atoms {
					for pi, pr := range protos {
						for ri, rg := range ranges[pi] {
							for ii, id := range idents {
								k := func(src, dst *policy.Endpoint) policy.FlowKey {
									return policy.FlowKey{Src: src, Dst: dst, DstPort: rg[0], SrcPort: 40000, Proto: pr.num, SrcIdentity: id, ServiceSide: schemas.ServiceDst}
								}
								ko, kn := k(atoms[si].old, atoms[di].old), k(atoms[si].new, atoms[di].new)
								var bv, av policy.Verdict
								var br, ar string
								if staged {
									bv, br = om.DecideStaged(&ko)
									av, ar = nm.DecideStaged(&kn)
								} else {
									bv, br = om.Decide(&ko)
									av, ar = nm.Decide(&kn)
								}
								if open(bv) == open(av) {
									continue
								}
								o := diffOutcome{change: Added, before: bv, after: av, beforeRule: br, afterRule: ar}
								if open(bv) {
									o.change = Removed
								}
								want[diffCell{si, di, pi, ri, ii}] = o
							}
						}
					}
				}
			}
			if d := cmp.Diff(got, want, cmp.AllowUnexported(diffCell{}, diffOutcome{})); d != "" {
				t.Fatalf("cells differ (-got +want):\n%s\nold:\n%s\nnew:\n%s", d, policyText(op), policyText(np))
			}
			checked++
		}
	}
	if checked < 250 {
		t.Fatalf("only %d random policy pairs were valid", checked)
	}
	t.Logf("%d random policy pairs: per-pair grid = global grid", checked)
}

func policyText(p *policy.Policy) string { return fmt.Sprintf("%+v", p.Rules) }
