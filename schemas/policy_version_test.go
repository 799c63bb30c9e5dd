package schemas

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPolicyVersionRoundTrip(t *testing.T) {
	content := []byte("segments: []\n")
	in := PolicyVersion{Version: PolicyVersionOf(content), LoadedAt: 1_700_000_000_123_000_000, Path: "/etc/flowaudit/policy.yaml",
		Content: content, Host: "enrich-1", Summary: "0 segments, 0 CIDRs, 0 inventory entries, 0 rules, default deny"}
	if want := "480ba2cf8a7fc331df6db7cc13f43eca68f160061bcf68e0ffa7a26a5503bd9b"; in.Version != want { // sha256sum of the content
		t.Fatalf("version %q, want %q", in.Version, want)
	}
	data, err := MarshalPolicyVersion(&in)
	if err != nil {
		t.Fatal(err)
	}
	var got PolicyVersion
	if err := UnmarshalPolicyVersion(data, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, in); diff != "" {
		t.Errorf("round trip (-got +want):\n%s", diff)
	}
	for _, bad := range [][]byte{{0xff}, {}} {
		if err := UnmarshalPolicyVersion(bad, &got); !errors.Is(err, ErrMalformed) {
			t.Errorf("UnmarshalPolicyVersion(%x) = %v, want ErrMalformed", bad, err)
		}
	}
}
