package enforce

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/policy"
)

// TestNetworkPolicyGolden pins the export of the feature policy and checks
// it decodes strictly into the k8s.io/api types.
func TestNetworkPolicyGolden(t *testing.T) {
	p := loadTestPolicy(t)
	text, notes, err := NetworkPolicyYAML(p)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "policy.networkpolicy.yaml", text)
	nps, err := DecodeNetworkPolicies([]byte(text), "export")
	if err != nil {
		t.Fatalf("export does not decode strictly: %v", err)
	}
	want, _ := NetworkPolicies(p)
	if len(nps) != len(want) {
		t.Errorf("decoded %d policies, exported %d", len(nps), len(want))
	}
	wantNotes := []string{
		"rule no-ssh-to-db (line 27) denies: NetworkPolicies only allow; not exported",
		"rule staged-no-mysql (line 32) is staged: not exported",
		"rule admins-ssh (line 50): identities alice cannot be enforced by a NetworkPolicy; exported for every source",
		"rule ping-db (line 55): icmp, icmpv6 not expressible in a NetworkPolicy; left out",
	}
	if diff := cmp.Diff(notes, wantNotes); diff != "" {
		t.Errorf("notes (-got +want):\n%s", diff)
	}
}

// TestNetworkPolicyRoundTrip: the scenario policy exported as
// NetworkPolicies and imported back (over the same segments and
// inventory) decides every TCP and UDP flow of the labelled scenario as
// the original does. ICMP is left out: NetworkPolicies cannot express it
// (the export says so in its notes).
func TestNetworkPolicyRoundTrip(t *testing.T) {
	orig, err := policy.Load(filepath.Join("..", "..", "deploy", "scenario-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text, _, err := NetworkPolicyYAML(orig)
	if err != nil {
		t.Fatal(err)
	}
	nps, err := DecodeNetworkPolicies([]byte(text), "export")
	if err != nil {
		t.Fatal(err)
	}
	imported, notes := ImportNetworkPolicies(orig, nps)
	if len(notes) > 0 {
		t.Errorf("import notes: %q", notes)
	}
	// The imported policy renders as a valid policy file.
	rendered, err := PolicyYAML(imported, "")
	if err != nil {
		t.Fatal(err)
	}
	back, err := policy.Parse([]byte(rendered), "imported.yaml")
	if err != nil {
		t.Fatalf("imported policy does not parse: %v\n%s", err, rendered)
	}
	m1, err := policy.Compile(orig)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := policy.Compile(back)
	if err != nil {
		t.Fatal(err)
	}
	sc := simulate.NewScenario(simulate.ScenarioConfig{Seed: 1, Start: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)})
	type key struct {
		src, dst      string
		port          uint16
		proto         uint8
		before, after string
	}
	diffs := map[key]int{}
	n := 0
	for _, ev := range sc.Events {
		for i := range ev.Flows {
			f := &ev.Flows[i]
			if f.Proto != 6 && f.Proto != 17 {
				continue
			}
			n++
			q := policy.ServiceQuery{SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto, TCPFlags: f.TCPFlags}
			side, _ := policy.DecideServiceSide(&q)
			decide := func(m *policy.Matcher) policy.Verdict {
				k := policy.FlowKey{Src: m.Lookup(f.SrcAddr), Dst: m.Lookup(f.DstAddr), SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto, ServiceSide: side}
				v, _ := m.Decide(&k)
				return v
			}
			if v1, v2 := decide(m1), decide(m2); v1 != v2 {
				s, d := m1.Lookup(f.SrcAddr), m1.Lookup(f.DstAddr)
				diffs[key{s.Segment, d.Segment, f.DstPort, f.Proto, v1.String(), v2.String()}]++
			}
		}
	}
	if n < 1000 {
		t.Fatalf("only %d TCP/UDP flows in the scenario", n)
	}
	if diff := cmp.Diff(diffs, map[key]int{}, cmp.AllowUnexported(key{})); diff != "" {
		t.Errorf("decisions that differ after export -> import over %d flows (-got +want):\n%s", n, diff)
	}
}

// FuzzDecodeNetworkPolicies: outside YAML never panics the decoder or the
// import, and what imports compiles.
func FuzzDecodeNetworkPolicies(f *testing.F) {
	p, err := policy.Load(filepath.Join("testdata", "policy.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	text, _, _ := NetworkPolicyYAML(p)
	f.Add([]byte(text))
	f.Add([]byte("kind: NetworkPolicyList\nitems: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		nps, err := DecodeNetworkPolicies(data, "fuzz")
		if err != nil {
			return
		}
		imported, _ := ImportNetworkPolicies(p, nps)
		if _, err := policy.Compile(imported); err != nil {
			t.Fatalf("imported policy does not compile: %v", err)
		}
	})
}
