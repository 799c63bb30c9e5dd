package access_test

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/ingest/access"
	"github.com/flowaudit/flowaudit/schemas"
)

// TestTailRADIUSDetail: a FreeRADIUS detail file is read record by record;
// a record still being written waits for its blank line.
func TestTailRADIUSDetail(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(t.TempDir(), "detail-20261202")
	cfg := access.DefaultConfiguration()
	cfg.SyslogListen, cfg.HTTPListen = nil, ""
	cfg.TailPollInterval = 20 * time.Millisecond
	cfg.Files = []access.FileConfiguration{{Path: path, Format: "radius", Host: "radius-1"}}
	f := createFile(t, path)
	start := "Wed Dec  2 01:00:00 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"alice\"\n\tFramed-IP-Address = 10.20.0.5\n\tCalling-Station-Id = \"02-00-5E-10-00-01\"\n\tAcct-Session-Id = \"s1\"\n\tTimestamp = 1796173200\n\n"
	appendTo(t, f, start)
	h.start(cfg)
	h.wait(1, 0)
	stop := "Wed Dec  2 02:00:00 2026\n\tAcct-Status-Type = Stop\n\tUser-Name = \"alice\"\n\tFramed-IP-Address = 10.20.0.5\n\tAcct-Session-Id = \"s1\"\n\tTimestamp = 1796176800\n\n"
	appendTo(t, f, stop[:40])
	h.settle()
	if len(h.events) != 1 {
		t.Fatalf("a partial record was consumed: %d events", len(h.events))
	}
	appendTo(t, f, stop[40:])
	h.wait(2, 0)
	a, b := h.events[0], h.events[1]
	if a.User != "alice" || a.SrcAddr != addr("10.20.0.5") || a.Binding != schemas.BindingStart || a.Device != "02:00:5e:10:00:01" || a.Time != 1796173200e9 || a.Host != "radius-1" {
		t.Errorf("start = %+v", a)
	}
	if b.Binding != schemas.BindingStop || b.SessionID != "s1" || b.Time != 1796176800e9 {
		t.Errorf("stop = %+v", b)
	}
}

// TestSnapshotFile: a rewritten snapshot file produces starts for new
// bindings, updates for changed ones and stops for removed ones; a
// malformed version changes nothing and is dead-lettered.
func TestSnapshotFile(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "dnsmasq.leases")
	cfg := access.DefaultConfiguration()
	cfg.SyslogListen, cfg.HTTPListen = nil, ""
	cfg.TailPollInterval = 20 * time.Millisecond
	cfg.Files = []access.FileConfiguration{{Path: path, Format: "dhcp_leases"}}
	write := func(s string, mtime time.Time) { t.Helper(); replaceFile(t, path, s, mtime) }
	t0 := time.Unix(1796173200, 0)
	write("1796176800 02:00:5e:10:00:01 10.0.0.5 laptop-7 *\n1796176800 02:00:5e:10:00:02 10.0.0.6 * *\n", t0)
	h.start(cfg)
	h.wait(2, 0)
	// Renew .5 (new expiry), release .6, add .7.
	write("1796180400 02:00:5e:10:00:01 10.0.0.5 laptop-7 *\n1796176800 02:00:5e:10:00:03 10.0.0.7 cam *\n", t0.Add(10*time.Minute))
	h.wait(5, 0)
	write("garbage\n", t0.Add(20*time.Minute))
	h.wait(5, 1)
	got := map[string]schemas.AccessEvent{}
	for _, ev := range h.events[2:] {
		got[ev.SrcAddr.String()+" "+ev.Binding.String()] = ev
	}
	if ev, ok := got["10.0.0.5 update"]; !ok || ev.Expires != 1796180400e9 || ev.DeviceName != "laptop-7" {
		t.Errorf("renewal = %+v (events %v)", ev, got)
	}
	if ev, ok := got["10.0.0.6 stop"]; !ok || ev.Time != uint64(t0.Add(10*time.Minute).UnixNano()) || ev.Device != "02:00:5e:10:00:02" {
		t.Errorf("release = %+v", ev)
	}
	if ev, ok := got["10.0.0.7 start"]; !ok || ev.Device != "02:00:5e:10:00:03" || ev.Source != "dhcp" {
		t.Errorf("new lease = %+v", ev)
	}
}

// TestSnapshotRestart: after a restart a snapshot file is compared with
// the bindings produced before it (saved under data_dir): an unchanged
// file produces nothing again, and a lease released while the collector
// was down is stopped.
func TestSnapshotRestart(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(t.TempDir(), "dnsmasq.leases")
	cfg := access.DefaultConfiguration()
	cfg.SyslogListen, cfg.HTTPListen = nil, ""
	cfg.TailPollInterval = 20 * time.Millisecond
	cfg.Files = []access.FileConfiguration{{Path: path, Format: "dhcp_leases"}}
	write := func(s string, mtime time.Time) { t.Helper(); replaceFile(t, path, s, mtime) }
	t0 := time.Unix(1796173200, 0)
	write("1796176800 02:00:5e:10:00:01 10.0.0.5 laptop-7 *\n1796176800 02:00:5e:10:00:02 10.0.0.6 * *\n", t0)
	h.start(cfg)
	h.wait(2, 0)
	h.stop()
	h.start(cfg) // the same file: nothing to produce
	h.settle()
	if len(h.events) != 2 {
		t.Fatalf("after a restart with the file unchanged: %d events, want 2", len(h.events))
	}
	h.stop()
	// .6 released while the collector is down.
	write("1796176800 02:00:5e:10:00:01 10.0.0.5 laptop-7 *\n", t0.Add(10*time.Minute))
	h.start(cfg)
	h.wait(3, 0)
	h.settle()
	if len(h.events) != 3 {
		t.Fatalf("%d events, want 3: %+v", len(h.events), h.events[2:])
	}
	if ev := h.events[2]; ev.SrcAddr != addr("10.0.0.6") || ev.Binding != schemas.BindingStop || ev.Time != uint64(t0.Add(10*time.Minute).UnixNano()) {
		t.Errorf("after the restart: %+v, want the stop of 10.0.0.6", ev)
	}
}

// TestSnapshotStdin: `kubectl get pods -A -o json` piped to a files entry
// with path "-": each List is a version (new pods start, gone ones stop),
// and a watch stream's Pods and events replace one pod at a time.
func TestSnapshotStdin(t *testing.T) {
	h := newHarness(t)
	r, w := io.Pipe()
	t.Cleanup(func() { w.Close() })
	h.stdin = r
	cfg := access.DefaultConfiguration()
	cfg.SyslogListen, cfg.HTTPListen = nil, ""
	cfg.Files = []access.FileConfiguration{{Path: "-", Format: "k8s_pods"}}
	pod := func(name, uid, ip, labels string) string {
		return `{"kind":"Pod","metadata":{"name":"` + name + `","namespace":"prod","uid":"` + uid + `","labels":{` + labels + `}},` +
			`"spec":{"serviceAccountName":"web"},"status":{"phase":"Running","podIP":"` + ip + `","startTime":"2026-12-02T01:00:00Z"}}`
	}
	send := func(doc string) {
		t.Helper()
		if _, err := io.WriteString(w, doc+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	h.start(cfg)
	send(`{"kind":"List","items":[` + pod("web-1", "u1", "10.244.1.1", `"app":"web"`) + `,` + pod("web-2", "u2", "10.244.1.2", `"app":"web"`) + `]}`)
	h.wait(2, 0)
	send(pod("web-1", "u1", "10.244.1.1", `"app":"web","canary":"true"`))                        // --watch: labels changed
	send(`{"type":"DELETED","object":` + pod("web-2", "u2", "10.244.1.2", `"app":"web"`) + `}`)  // --output-watch-events
	send(`{"type":"ADDED","object":` + pod("web-3", "u3", "fd00:244:1::3", `"app":"web"`) + `}`) // IPv6
	send(`{"kind":"List","items":[` + pod("web-3", "u3", "fd00:244:1::3", `"app":"web"`) + `]}`) // web-1 gone
	send(`{"kind":"Deployment"}`)                                                                // dead-lettered
	h.wait(6, 1)
	h.settle()
	var got []string
	for _, ev := range h.events {
		got = append(got, fmt.Sprintf("%s %s %s %s %q", ev.Binding, ev.SrcAddr, ev.Device, ev.User, ev.Labels))
	}
	want := []string{
		`start 10.244.1.1 prod/web-1 system:serviceaccount:prod:web "app=web"`,
		`start 10.244.1.2 prod/web-2 system:serviceaccount:prod:web "app=web"`,
		`update 10.244.1.1 prod/web-1 system:serviceaccount:prod:web "app=web,canary=true"`,
		`stop 10.244.1.2 prod/web-2 system:serviceaccount:prod:web "app=web"`,
		`start fd00:244:1::3 prod/web-3 system:serviceaccount:prod:web "app=web"`,
		`stop 10.244.1.1 prod/web-1 system:serviceaccount:prod:web "app=web,canary=true"`,
	}
	sort.Strings(got[:2])
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if n := len(h.dead); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
}
