package audit

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowaudit/flowaudit/policy"
)

// bigPolicy is nseg segments and nrules+extra rules between them, one
// port each.
func bigPolicy(nseg, nrules, extra int) string {
	var b strings.Builder
	b.WriteString("segments:\n")
	for i := 0; i < nseg; i++ {
		fmt.Fprintf(&b, "  - name: s%d\n    cidrs: [10.%d.%d.0/24]\n", i, i/200, i%200)
	}
	b.WriteString("rules:\n")
	for i := 0; i < nrules+extra; i++ {
		fmt.Fprintf(&b, "  - name: r%d\n    from: [s%d]\n    to: [s%d]\n    ports: [\"%d/tcp\"]\n", i, i%nseg, (i*7+1)%nseg, 1000+i)
	}
	b.WriteString("default: deny\n")
	return b.String()
}

// BenchmarkDiffPolicies compares two policies of 200 segments and 1,000
// rules that differ by one rule.
func BenchmarkDiffPolicies(b *testing.B) {
	old, err := policy.Parse([]byte(bigPolicy(200, 1000, 0)), "old.yaml")
	if err != nil {
		b.Fatal(err)
	}
	new, err := policy.Parse([]byte(bigPolicy(200, 1000, 1)), "new.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		d, err := DiffPolicies(old, new)
		if err != nil || len(d.Changes) != 1 {
			b.Fatalf("%v, %d changes; want 1", err, len(d.Changes))
		}
	}
}
