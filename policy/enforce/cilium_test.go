package enforce

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// TestCilium pins the export and decodes every document strictly into
// the CRD mirror types.
func TestCilium(t *testing.T) {
	p := loadTestPolicy(t)
	text, notes, err := CiliumYAML(p)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "policy.cilium.yaml", text)
	want, _ := CiliumPolicies(p)
	var got []CiliumNetworkPolicy
	for _, doc := range splitYAMLDocuments([]byte(text)) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var c CiliumNetworkPolicy
		if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
			t.Fatalf("document does not decode strictly: %v\n%s", err, doc)
		}
		got = append(got, c)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("decoded export (-got +want):\n%s", diff)
	}
	wantNotes := []string{
		"rule staged-no-mysql (line 32) is staged: not exported",
		"rule admins-ssh (line 50): identities alice cannot be enforced by Cilium at L3/L4; exported for every source",
		"rule dns-out (line 59): destination external has no namespace; not exported (write an egress policy)",
	}
	if diff := cmp.Diff(notes, wantNotes); diff != "" {
		t.Errorf("notes (-got +want):\n%s", diff)
	}
}
