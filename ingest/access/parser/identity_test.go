package parser

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowaudit/flowaudit/schemas"
)

// TestGoldenRecords parses a FreeRADIUS detail file record by record, as
// the file tailer frames it (NextRecord).
func TestGoldenRecords(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "radius_detail.log"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := New(FormatRADIUS)
	var results []goldenResult
	for n := 1; len(data) > 0; n++ {
		rec, adv, ok := NextRecord(FormatRADIUS, data, true)
		if !ok || adv == 0 {
			t.Fatalf("record %d: no progress", n)
		}
		data = data[adv:]
		r := goldenResult{Line: n, Input: string(rec)}
		var ev schemas.AccessEvent
		if err := p.Parse(rec, testMeta, &ev); err != nil {
			r.Error = errorLabel(t, FormatRADIUS, err)
		} else {
			checkEvent(t, &ev, testMeta)
			r.Event = toGolden(&ev)
		}
		results = append(results, r)
	}
	compareGolden(t, "radius_detail.golden.json", results)
}

func TestNextRecord(t *testing.T) {
	detail := "Wed Dec  2 01:00:00 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"a\"\n\nConnect: [b] (ip 10.0.0.1)\n"
	rec, adv, ok := NextRecord(FormatRADIUS, []byte(detail), false)
	if !ok || string(rec) != "Wed Dec  2 01:00:00 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"a\"\n" || adv != len(rec)+1 {
		t.Fatalf("detail record = %q %d %v", rec, adv, ok)
	}
	rec, _, ok = NextRecord(FormatRADIUS, []byte(detail[adv:]), false)
	if !ok || string(rec) != "Connect: [b] (ip 10.0.0.1)" {
		t.Fatalf("linelog record = %q %v", rec, ok)
	}
	// A detail record still being written is not complete.
	if _, _, ok := NextRecord(FormatRADIUS, []byte(detail[:30]), false); ok {
		t.Fatal("incomplete detail record returned")
	}
	if rec, _, ok := NextRecord(FormatSSHD, []byte("a\nb"), false); !ok || string(rec) != "a" {
		t.Fatalf("line record = %q", rec)
	}
}

// TestGoldenSnapshots parses every snapshot format's sample files.
func TestGoldenSnapshots(t *testing.T) {
	for _, tc := range []struct {
		input  string
		format Format
	}{
		{"openvpn-status-v1.txt", FormatOpenVPNStatus},
		{"openvpn-status-v2.txt", FormatOpenVPNStatus},
		{"openvpn-status-v3.txt", FormatOpenVPNStatus},
		{"dnsmasq.leases", FormatDHCPLeases},
		{"dhcpd.leases", FormatDHCPLeases},
		{"kea-leases4.csv", FormatDHCPLeases},
		{"pods.json", FormatK8sPods},
	} {
		t.Run(tc.input, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.input))
			if err != nil {
				t.Fatal(err)
			}
			evs, err := ParseSnapshot(tc.format, data, testMeta)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]*goldenEvent, len(evs))
			for i := range evs {
				checkEvent(t, &evs[i], testMeta)
				if evs[i].Binding != schemas.BindingStart || evs[i].SrcAddr == (schemas.Addr{}) {
					t.Errorf("event %d: binding %v addr %v", i, evs[i].Binding, evs[i].SrcAddr)
				}
				got[i] = toGolden(&evs[i])
			}
			compareGolden(t, strings.ReplaceAll(tc.input, ".", "_")+".golden.json", got)
		})
	}
}

// TestSnapshotErrors: a malformed file fails as a whole, naming the line.
func TestSnapshotErrors(t *testing.T) {
	for _, tc := range []struct {
		format Format
		data   string
		want   string
	}{
		{FormatOpenVPNStatus, "OpenVPN CLIENT LIST\nCommon Name,Real Address\nalice,1.2.3.4:5\n", "line 3"},
		{FormatOpenVPNStatus, "garbage\n", "line 1"},
		{FormatDHCPLeases, "1764666000 02:00:5e:10:00:01 10.0.0.999 x *\n", "line 1"},
		{FormatDHCPLeases, "lease 10.0.0.1 {\n  starts 3 2026/13/02 01:00:00;\n}\n", "bad"},
		{FormatK8sPods, `{"kind":"Service"}`, "kind"},
		{FormatK8sPods, `{"kind":"List","items":[{"metadata":{"name":"a","namespace":"b"},"status":{"podIP":"x"}}]}`, "bad IP"},
		{FormatSSHD, "", "not a snapshot format"},
	} {
		_, err := ParseSnapshot(tc.format, []byte(tc.data), testMeta)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: error %v, want %q", tc.format, tc.data, err, tc.want)
		}
		var pe *ParseError
		if err != nil && tc.format != FormatSSHD && !errors.As(err, &pe) {
			t.Errorf("%s: %T is not a *ParseError", tc.format, err)
		}
	}
}

func fuzzIdentityLines(f *testing.F, format Format, files ...string) {
	seedLines(f, files...)
	p, _ := New(format)
	f.Fuzz(func(t *testing.T, line []byte) {
		ev := checkParseResult(t, format, p, line)
		if ev == nil {
			return
		}
		if ev.Binding > schemas.BindingStop {
			t.Fatalf("binding %d", ev.Binding)
		}
		if ev.Binding == schemas.BindingStart && ev.SrcAddr == (schemas.Addr{}) && format != FormatRADIUS {
			t.Fatalf("%s start without an address", format)
		}
	})
}

func FuzzParseOpenVPN(f *testing.F)  { fuzzIdentityLines(f, FormatOpenVPN, "openvpn.log") }
func FuzzParseRADIUS(f *testing.F)   { fuzzIdentityLines(f, FormatRADIUS, "radius.log") }
func FuzzParseKerberos(f *testing.F) { fuzzIdentityLines(f, FormatKerberos, "kerberos.log") }
func FuzzParseWindows(f *testing.F)  { fuzzIdentityLines(f, FormatWindows, "windows.jsonl") }
func FuzzParseDHCP(f *testing.F)     { fuzzIdentityLines(f, FormatDHCP, "dhcp.log") }

func fuzzSnapshot(f *testing.F, format Format, files ...string) {
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := ParseSnapshot(format, data, testMeta)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Format != format || !knownReasons[pe.Reason] {
				t.Fatalf("error %v (%T)", err, err)
			}
			return
		}
		for i := range evs {
			checkEvent(t, &evs[i], testMeta)
			if evs[i].SrcAddr == (schemas.Addr{}) || evs[i].Binding != schemas.BindingStart {
				t.Fatalf("event %+v", evs[i])
			}
		}
	})
}

func FuzzParseOpenVPNStatus(f *testing.F) {
	fuzzSnapshot(f, FormatOpenVPNStatus, "openvpn-status-v1.txt", "openvpn-status-v2.txt", "openvpn-status-v3.txt")
}
func FuzzParseDHCPLeases(f *testing.F) {
	fuzzSnapshot(f, FormatDHCPLeases, "dnsmasq.leases", "dhcpd.leases", "kea-leases4.csv")
}
func FuzzParseK8sPods(f *testing.F) { fuzzSnapshot(f, FormatK8sPods, "pods.json") }

func FuzzNextRecord(f *testing.F) {
	f.Add([]byte("Wed Dec  2 01:00:00 2026\n\tA = b\n\nx\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, final bool) {
		for len(data) > 0 {
			rec, adv, ok := NextRecord(FormatRADIUS, data, final)
			if !ok {
				return
			}
			if adv <= 0 || adv > len(data) || len(rec) > adv {
				t.Fatalf("advance %d of %d, record %d", adv, len(data), len(rec))
			}
			data = data[adv:]
		}
	})
}
