package report

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// PDFCheck renders doc with pdftoppm (at least one page image) and
// returns its text by pdftotext with whitespace folded to single spaces.
// poppler-utils is required under FLOWAUDIT_REQUIRE_CLICKHOUSE=1 (CI).
func PDFCheck(t *testing.T, doc []byte) string {
	t.Helper()
	for _, tool := range []string{"pdftoppm", "pdftotext"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("FLOWAUDIT_REQUIRE_CLICKHOUSE") == "1" {
				t.Fatalf("%s not found: install poppler-utils (.ci/run does)", tool)
			}
			t.Skipf("%s not found: install poppler-utils", tool)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "report.pdf")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("pdftoppm", "-r", "30", "-png", path, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v\n%s", err, out)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "page*.png"))
	if len(pages) < 3 {
		t.Errorf("pdftoppm made %d pages", len(pages))
	}
	out, err := exec.Command("pdftotext", "-layout", path, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	return strings.Join(strings.Fields(string(out)), " ")
}
