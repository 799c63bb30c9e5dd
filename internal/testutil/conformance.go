package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvConformance names the conformance corpus folder explicitly, for
// checkouts that do not sit beside it (a git worktree elsewhere, a copy
// in /tmp). It overrides the default location.
const EnvConformance = "FLOWAUDIT_CONFORMANCE"

// ConformanceDir returns the folder sub of the conformance corpus
// (captures and log samples with another project's expected decodings),
// which lives outside the repository: ../shared/conformance relative to the
// repository root, or $FLOWAUDIT_CONFORMANCE. The test is skipped when the
// folder is absent (it lives outside the repository, which never holds a
// copy of it), even in CI: the corpus is reference data, not a tool the
// project installs.
func ConformanceDir(t testing.TB, sub string) string {
	t.Helper()
	base := os.Getenv(EnvConformance)
	if base == "" {
		root, err := repoRoot()
		if err != nil {
			t.Skipf("conformance corpus: %v", err)
		}
		base = filepath.Join(root, "..", "shared", "conformance")
	}
	dir := filepath.Join(base, sub)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Skipf("conformance corpus %s absent (set %s to its folder to run this test)", dir, EnvConformance)
	}
	return dir
}

// repoRoot returns the nearest folder at or above the working directory
// (a test's package folder) that holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
