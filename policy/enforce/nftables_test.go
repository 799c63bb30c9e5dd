package enforce

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/policy"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func loadTestPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Load(filepath.Join("testdata", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Compile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(got, string(want)); diff != "" {
		t.Errorf("%s mismatch (-got +want); run go test -update if intended:\n%s", name, diff)
	}
}

// TestNftables pins the ruleset and, where nft is installed, has the
// real nft parse and check it (nft -c: no kernel change).
func TestNftables(t *testing.T) {
	p := loadTestPolicy(t)
	got, notes := Nftables(p, "testdata/policy.yaml")
	golden(t, "policy.nft", got)
	wantNotes := []string{
		"rule staged-no-mysql (line 32) is staged: not exported",
		"rule admins-ssh (line 50): identities alice cannot be enforced by nftables; exported for every source",
	}
	if diff := cmp.Diff(notes, wantNotes); diff != "" {
		t.Errorf("notes (-got +want):\n%s", diff)
	}
	again, _ := Nftables(p, "testdata/policy.yaml")
	if again != got {
		t.Error("second export differs")
	}
	for _, def := range []string{policy.DefaultDeny, policy.DefaultAllow} {
		q := *p
		q.Default = def
		text, _ := Nftables(&q, "testdata/policy.yaml")
		nftCheck(t, text)
	}
}

// nftCheck runs nft -c -f on text when nft is installed and usable here
// (it needs CAP_NET_ADMIN even to check).
func nftCheck(t *testing.T, text string) {
	t.Helper()
	nft, err := exec.LookPath("nft")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nft", "/sbin/nft"} {
			if _, err := os.Stat(p); err == nil {
				nft = p
			}
		}
	}
	if nft == "" {
		t.Log("nft not installed: ruleset not checked by nftables")
		return
	}
	if os.Geteuid() != 0 {
		t.Log("not root: nft -c needs CAP_NET_ADMIN; ruleset not checked by nftables")
		return
	}
	path := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nft, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Errorf("nft -c -f: %v\n%s", err, out)
	}
}
