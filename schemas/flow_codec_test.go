package schemas

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/schemas/pb"
)

func testBatch() *FlowBatch {
	return &FlowBatch{
		TimeReceived:   1_700_000_000_123_456_789,
		Exporter:       AddrFromNetip(netip.MustParseAddr("192.0.2.1")),
		ExporterPort:   2055,
		Type:           FlowTypeIPFIX,
		ObservationID:  7,
		SequenceNumber: 4_000_000_000,
		Flows: []Flow{
			{
				TimeStart: 1_700_000_000_000_000_000, TimeEnd: 1_700_000_001_000_000_000,
				SrcAddr: AddrFromNetip(netip.MustParseAddr("10.1.2.3")),
				DstAddr: AddrFromNetip(netip.MustParseAddr("2001:db8::5")),
				NextHop: AddrFromNetip(netip.MustParseAddr("10.0.0.1")),
				Bytes:   1 << 40, Packets: 12345, SamplingRate: 1000, InIf: 3, OutIf: 70000,
				SrcAS: 64512, DstAS: 4200000000, SrcPort: 51234, DstPort: 443, EtherType: 0x86dd,
				Proto: 6, TCPFlags: 0x1b, IPTos: 0xb8, Direction: 1,
				Verdict: VerdictAllowed, SrcSegment: "web", DstSegment: "db", SrcWorkload: "shop-web", DstWorkload: "orders-db",
				SrcIdentity: "alice", DstIdentity: "svc-orders", Rule: "web-to-db-postgres", SrcCountry: "AU", DstCountry: "DE",
				StagedVerdict: VerdictViolation, StagedRule: "deny-web-db", ServiceSide: ServiceDst, ServicePort: 443,
				SrcIdentitySource: "openvpn", DstIdentitySource: "inventory", SrcDevice: "02:00:5e:10:00:01 laptop-7", DstDevice: "prod/db-0",
				FwAction:     FwActionDenied,
				SrcAddrXlate: AddrFromNetip(netip.MustParseAddr("198.51.100.7")),
				DstAddrXlate: AddrFromNetip(netip.MustParseAddr("2001:db8::77")),
				SrcPortXlate: 61000, DstPortXlate: 8443,
			},
			{}, // an all-zero flow must survive the round trip too
			{SrcAddr: AddrFromNetip(netip.MustParseAddr("10.9.9.9")), Bytes: 40, Packets: 1, Proto: 17},
		},
	}
}

func TestFlowBatchRoundTrip(t *testing.T) {
	in := testBatch()
	buf := AppendFlowBatch(nil, in)
	var got FlowBatch
	if err := UnmarshalFlowBatch(buf, &got); err != nil {
		t.Fatalf("UnmarshalFlowBatch: %v", err)
	}
	if diff := cmp.Diff(&got, in); diff != "" {
		t.Errorf("round trip (-got +want):\n%s", diff)
	}
}

// TestFlowBatchWireCompatible checks the hand-written codec against the
// protoc-generated types, both ways, so other languages reading the topic
// with flow.proto see the same values.
func TestFlowBatchWireCompatible(t *testing.T) {
	in := testBatch()
	var msg pb.FlowBatch
	if err := proto.Unmarshal(AppendFlowBatch(nil, in), &msg); err != nil {
		t.Fatalf("generated Unmarshal: %v", err)
	}
	if got, want := len(msg.Flows), len(in.Flows); got != want {
		t.Fatalf("flows = %d, want %d", got, want)
	}
	f := msg.Flows[0]
	if got, want := f.GetBytes(), in.Flows[0].Bytes; got != want {
		t.Errorf("bytes = %d, want %d", got, want)
	}
	if got, want := AddrFromSlice(f.GetDstAddr()), in.Flows[0].DstAddr; got != want {
		t.Errorf("dst_addr = %v, want %v", got, want)
	}
	if f.GetSrcIdentity() != "alice" || f.GetVerdict() != pb.Verdict_VERDICT_ALLOWED || f.GetRule() != "web-to-db-postgres" {
		t.Errorf("enrichment fields = %q %v %q", f.GetSrcIdentity(), f.GetVerdict(), f.GetRule())
	}
	if f.GetFwAction() != pb.FwAction_FW_ACTION_DENIED || AddrFromSlice(f.GetSrcAddrXlate()) != in.Flows[0].SrcAddrXlate ||
		AddrFromSlice(f.GetDstAddrXlate()) != in.Flows[0].DstAddrXlate || f.GetSrcPortXlate() != 61000 || f.GetDstPortXlate() != 8443 {
		t.Errorf("fw_action and xlate fields = %v %x %x %d %d", f.GetFwAction(), f.GetSrcAddrXlate(), f.GetDstAddrXlate(), f.GetSrcPortXlate(), f.GetDstPortXlate())
	}
	if f.GetStagedVerdict() != pb.Verdict_VERDICT_VIOLATION || f.GetStagedRule() != "deny-web-db" || f.GetServiceSide() != 1 || f.GetServicePort() != 443 {
		t.Errorf("staged and service fields = %v %q %d %d", f.GetStagedVerdict(), f.GetStagedRule(), f.GetServiceSide(), f.GetServicePort())
	}
	if f.GetSrcIdentitySource() != "openvpn" || f.GetDstIdentitySource() != "inventory" || f.GetSrcDevice() != "02:00:5e:10:00:01 laptop-7" || f.GetDstDevice() != "prod/db-0" {
		t.Errorf("identity source fields = %q %q %q %q", f.GetSrcIdentitySource(), f.GetDstIdentitySource(), f.GetSrcDevice(), f.GetDstDevice())
	}
	if got, want := msg.GetType(), pb.FlowType_FLOW_TYPE_IPFIX; got != want {
		t.Errorf("type = %v, want %v", got, want)
	}
	wire, err := proto.Marshal(&msg)
	if err != nil {
		t.Fatalf("generated Marshal: %v", err)
	}
	var back FlowBatch
	if err := UnmarshalFlowBatch(wire, &back); err != nil {
		t.Fatalf("UnmarshalFlowBatch(generated): %v", err)
	}
	if diff := cmp.Diff(&back, in); diff != "" {
		t.Errorf("generated -> hand-written (-got +want):\n%s", diff)
	}
}

func TestUnmarshalFlowBatchMalformed(t *testing.T) {
	full := AppendFlowBatch(nil, testBatch())
	for _, n := range []int{1, 5, 20, len(full) - 1} {
		var b FlowBatch
		if err := UnmarshalFlowBatch(full[:n], &b); err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
}

func FuzzUnmarshalFlowBatch(f *testing.F) {
	f.Add(AppendFlowBatch(nil, testBatch()))
	f.Add([]byte{0x3a, 0x02, 0x08})
	var d FlowDecoder // one decoder across inputs, as a stage uses it
	f.Fuzz(func(t *testing.T, data []byte) {
		var b, viaDecoder FlowBatch
		err := UnmarshalFlowBatch(data, &b)
		derr := d.Unmarshal(data, &viaDecoder)
		if (err == nil) != (derr == nil) {
			t.Fatalf("UnmarshalFlowBatch error %v, FlowDecoder error %v", err, derr)
		}
		if err != nil {
			return
		}
		if diff := cmp.Diff(&viaDecoder, &b, cmp.Comparer(func(x, y []Flow) bool { return cmp.Equal(append([]Flow{}, x...), append([]Flow{}, y...)) })); diff != "" {
			t.Fatalf("FlowDecoder (-decoder +UnmarshalFlowBatch):\n%s", diff)
		}
		// Whatever decoded must re-encode and decode to the same value.
		var again FlowBatch
		if err := UnmarshalFlowBatch(AppendFlowBatch(nil, &b), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := cmp.Diff(&again, &b, cmp.Comparer(func(x, y []Flow) bool { return cmp.Equal(append([]Flow{}, x...), append([]Flow{}, y...)) })); diff != "" {
			t.Fatalf("re-encode mismatch (-got +want):\n%s", diff)
		}
	})
}

func BenchmarkAppendFlowBatch(b *testing.B) {
	in := testBatch()
	in.Flows = make([]Flow, 30)
	for i := range in.Flows {
		in.Flows[i] = testBatch().Flows[0]
	}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFlowBatch(buf[:0], in)
	}
	b.ReportMetric(float64(b.N*len(in.Flows))/b.Elapsed().Seconds(), "flows/s")
}

func BenchmarkUnmarshalFlowBatch(b *testing.B) {
	in := testBatch()
	in.Flows = make([]Flow, 30)
	for i := range in.Flows {
		in.Flows[i] = testBatch().Flows[0]
	}
	buf := AppendFlowBatch(nil, in)
	var out FlowBatch
	b.ReportAllocs()
	for b.Loop() {
		if err := UnmarshalFlowBatch(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(in.Flows))/b.Elapsed().Seconds(), "flows/s")
}
