package access_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/ingest/access"
	"github.com/flowaudit/flowaudit/schemas"
)

func sshdLine(n int) string {
	return fmt.Sprintf("Accepted password for u%02d from 10.0.0.%d port %d ssh2\n", n, n, 1000+n)
}

func appendTo(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func createFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func wantUsers(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("u%02d", i))
	}
	return out
}

// TestTailRotationAndRestart: every line exactly once and in order
// through a rename rotation while running (with the old file written to
// after the rename), a restart, a rotation while stopped, a copytruncate
// and another restart.
func TestTailRotationAndRestart(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	cfg := access.DefaultConfiguration()
	cfg.SyslogListen = nil
	cfg.HTTPListen = ""
	cfg.TailPollInterval = 20 * time.Millisecond
	cfg.Files = []access.FileConfiguration{{Path: path, Format: "sshd", Host: "web-1"}}

	// Lines written before the first start are read from the start.
	f := createFile(t, path)
	for i := 1; i <= 5; i++ {
		appendTo(t, f, sshdLine(i))
	}
	appendTo(t, f, "Server listening on 0.0.0.0 port 22.\n") // ignored
	h.start(cfg)
	h.wait(5, 0)

	// An unterminated line is not consumed until its LF arrives, which
	// the writer adds to the old file after the rename.
	line6 := sshdLine(6)
	appendTo(t, f, line6[:10])
	h.settle()
	if len(h.events) != 5 {
		t.Fatalf("a partial line was consumed: users %v", users(h.events))
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendTo(t, f, line6[10:]+sshdLine(7))
	f2 := createFile(t, path)
	appendTo(t, f2, sshdLine(8)+"junk that sshd never wrote\n"+sshdLine(9))
	h.wait(9, 1)

	// Restart, rotating while stopped: the rest of the old file is found
	// by its inode.
	h.stop()
	appendTo(t, f2, sshdLine(10))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	f3 := createFile(t, path)
	appendTo(t, f3, sshdLine(11))
	h.start(cfg)
	h.wait(11, 1)

	// copytruncate: the file shrinks under the same inode.
	appendTo(t, f3, sshdLine(12)+sshdLine(13))
	h.wait(13, 1)
	copyFile(t, path, path+".2")
	if err := f3.Truncate(0); err != nil {
		t.Fatal(err)
	}
	appendTo(t, f3, sshdLine(14))
	h.wait(14, 1)

	// A plain restart resumes after the last acknowledged line.
	h.stop()
	h.start(cfg)
	appendTo(t, f3, sshdLine(15))
	h.wait(15, 1)
	h.settle()

	if diff := cmp.Diff(users(h.events), wantUsers(1, 15)); diff != "" {
		t.Fatalf("users (-got +want), each exactly once and in order:\n%s", diff)
	}
	ev := h.events[6]
	if ev.Time != ev.Received {
		t.Errorf("u07: Time %d != Received %d for a line without a time", ev.Time, ev.Received)
	}
	want := schemas.AccessEvent{
		Source: "sshd", Host: "web-1", User: "u07", SrcAddr: addr("10.0.0.7"), SrcPort: 1007,
		Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess, AuthMethod: "password",
		Listener: "file://" + path, // a local file: no peer, trusted
	}
	ev.Time = 0
	if diff := cmp.Diff(checkReceived(t, []schemas.AccessEvent{ev})[0], want); diff != "" {
		t.Errorf("u07 (-got +want):\n%s", diff)
	}
	if len(h.dead) != 1 || string(h.dead[0].Payload) != "junk that sshd never wrote" || h.dead[0].Source != "file://"+path {
		t.Errorf("dead letters = %v, want the junk line from file://%s", h.dead, path)
	}
}

// TestTailSyslogFile tails a file as syslog daemons write it: each line's
// tag picks the parser.
func TestTailSyslogFile(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "syslog")
	cfg := access.DefaultConfiguration()
	cfg.SyslogListen = nil
	cfg.HTTPListen = ""
	cfg.TailPollInterval = 20 * time.Millisecond
	cfg.Files = []access.FileConfiguration{{Path: path, Format: "syslog"}}
	f := createFile(t, path)
	appendTo(t, f, "Jan  2 03:04:05 bastion sshd[42]: Accepted password for alice from 10.1.2.3 port 52222 ssh2\n"+
		"2024-01-02T03:04:06.5+01:00 web nginx: 203.0.113.5 - bob [02/Jan/2024:03:04:06 +0100] \"GET /admin HTTP/1.1\" 403 153 \"-\" \"curl/8.0\"\n")
	h.start(cfg)
	h.wait(2, 0)
	type row struct {
		Source, Host, User string
		Outcome            schemas.Outcome
	}
	var got []row
	for _, ev := range h.events {
		got = append(got, row{ev.Source, ev.Host, ev.User, ev.Outcome})
	}
	want := []row{{"sshd", "bastion", "alice", schemas.OutcomeSuccess}, {"nginx", "web", "bob", schemas.OutcomeDenied}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
}
