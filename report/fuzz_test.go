package report

import (
	"path"
	"strings"
	"testing"
)

// FuzzParseManifest: a manifest is outside input to report verify (a
// pack can come from anywhere); no input panics, and every entry it
// accepts is a clean relative path inside the pack with a 64-digit hash.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  evidence/a.csv\n"))
	f.Add([]byte("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855  ../etc/passwd\n"))
	f.Add([]byte("zz  /abs\n\nnot a line"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _ := ParseManifest(data)
		for _, e := range entries {
			if len(e.SHA256) != 64 || strings.ToLower(e.SHA256) != e.SHA256 {
				t.Fatalf("hash %q accepted", e.SHA256)
			}
			if path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || strings.HasPrefix(e.Path, "../") || e.Path == ".." {
				t.Fatalf("path %q accepted", e.Path)
			}
		}
	})
}
