package schemas

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/schemas/pb"
)

func testAccessEvent() *AccessEvent {
	return &AccessEvent{
		Time: 1_700_000_000_000_000_000, Received: 1_700_000_000_500_000_000,
		Source: "sshd", Host: "web-1", User: "alice",
		SrcAddr: AddrFromNetip(netip.MustParseAddr("2001:db8::7")), SrcPort: 51515,
		DstAddr: AddrFromNetip(netip.MustParseAddr("10.1.0.5")), DstPort: 22, DstHost: "web-1.example",
		Resource: "/", Action: ActionLogin, Outcome: OutcomeDenied, SessionID: "s-1",
		AuthMethod: "publickey", Status: -1, UserAgent: "OpenSSH_9.2",
		ForwardedFor: "2001:db8::7, 10.0.0.1",
		PeerAddr:     AddrFromNetip(netip.MustParseAddr("192.0.2.9")), Listener: "udp://0.0.0.0:5514", Untrusted: true,
		Binding: BindingStop, Device: "02:00:5e:10:00:01", DeviceName: "laptop-7", Expires: 1_700_000_360_000_000_000,
		OuterAddr: AddrFromNetip(netip.MustParseAddr("198.51.100.7")), Labels: "app=web,tier=front",
	}
}

func TestAccessEventRoundTrip(t *testing.T) {
	in := testAccessEvent()
	var got AccessEvent
	if err := UnmarshalAccessEvent(AppendAccessEvent(nil, in), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&got, in); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

func TestAccessEventWireCompatible(t *testing.T) {
	in := testAccessEvent()
	var msg pb.AccessEvent
	if err := proto.Unmarshal(AppendAccessEvent(nil, in), &msg); err != nil {
		t.Fatal(err)
	}
	if msg.GetUser() != "alice" || msg.GetStatus() != -1 || msg.GetOutcome() != pb.Outcome_OUTCOME_DENIED || msg.GetDstPort() != 22 ||
		msg.GetForwardedFor() != "2001:db8::7, 10.0.0.1" ||
		!msg.GetUntrusted() || msg.GetListener() != "udp://0.0.0.0:5514" || len(msg.GetPeerAddr()) != 16 ||
		msg.GetBinding() != pb.Binding_BINDING_STOP || msg.GetDevice() != "02:00:5e:10:00:01" || msg.GetDeviceName() != "laptop-7" ||
		msg.GetExpires() != 1_700_000_360_000_000_000 || len(msg.GetOuterAddr()) != 16 || msg.GetLabels() != "app=web,tier=front" {
		t.Errorf("generated view = %v", &msg)
	}
	wire, err := proto.Marshal(&msg)
	if err != nil {
		t.Fatal(err)
	}
	var back AccessEvent
	if err := UnmarshalAccessEvent(wire, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&back, in); diff != "" {
		t.Errorf("generated -> hand-written (-got +want):\n%s", diff)
	}
}

func FuzzUnmarshalAccessEvent(f *testing.F) {
	f.Add(AppendAccessEvent(nil, testAccessEvent()))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e AccessEvent
		if UnmarshalAccessEvent(data, &e) != nil {
			return
		}
		var again AccessEvent
		if err := UnmarshalAccessEvent(AppendAccessEvent(nil, &e), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := cmp.Diff(&again, &e); diff != "" {
			t.Fatalf("(-got +want):\n%s", diff)
		}
	})
}
