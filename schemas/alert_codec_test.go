package schemas

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/schemas/pb"
)

func testAlert() *Alert {
	return &Alert{
		ID: "4f2a9c0d", Time: 1_700_000_300_000_000_000, Kind: AlertAddressScan, Severity: SeverityHigh,
		SrcAddr: AddrFromNetip(netip.MustParseAddr("10.1.0.5")), DstAddr: AddrFromNetip(netip.MustParseAddr("2001:db8::1")),
		SrcSegment: "web", DstSegment: "db", SrcIdentity: "alice", DstPort: 5432, Proto: 6,
		FirstSeen: 1_700_000_000_000_000_000, LastSeen: 1_700_000_299_000_000_000, Count: 31, Bytes: 12345,
		Summary: "10.1.0.5 reached 31 hosts in db on 5432/tcp", Evidence: `{"hosts":31}`, Update: true,
	}
}

func TestAlertRoundTrip(t *testing.T) {
	in := testAlert()
	var got Alert
	if err := UnmarshalAlert(AppendAlert(nil, in), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&got, in); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	var msg pb.Alert
	if err := proto.Unmarshal(AppendAlert(nil, in), &msg); err != nil {
		t.Fatal(err)
	}
	if msg.GetKind() != AlertAddressScan || msg.GetSeverity() != pb.Severity_SEVERITY_HIGH || !msg.GetUpdate() || msg.GetCount() != 31 {
		t.Errorf("generated view = %v", &msg)
	}
}

func TestSeverity(t *testing.T) {
	for v := SeverityLow; v <= SeverityCritical; v++ {
		if got, ok := ParseSeverity(v.String()); !ok || got != v {
			t.Errorf("ParseSeverity(%q) = %v, %v", v.String(), got, ok)
		}
	}
	if _, ok := ParseSeverity("urgent"); ok {
		t.Error("ParseSeverity(urgent) accepted")
	}
}

func FuzzUnmarshalAlert(f *testing.F) {
	f.Add(AppendAlert(nil, testAlert()))
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Alert
		if UnmarshalAlert(data, &a) != nil {
			return
		}
		var again Alert
		if err := UnmarshalAlert(AppendAlert(nil, &a), &again); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&again, &a); diff != "" {
			t.Fatalf("(-got +want):\n%s", diff)
		}
	})
}
