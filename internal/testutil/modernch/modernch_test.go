package modernch

import (
	"strings"
	"testing"
)

func TestEngineVersion(t *testing.T) {
	e := Open(t)
	out, err := e.Query("SELECT version()", "TSV")
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(out)); !strings.HasPrefix(v, "26.") {
		t.Fatalf("version() = %q, want 26.x", v)
	}
}
