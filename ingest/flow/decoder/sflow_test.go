package decoder

import (
	"errors"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

func TestDecodeSFlow(t *testing.T) {
	const received = 1_700_000_000_000_000_000
	dg := sflowDatagram(42, 3, testSFlowSamples(4)...)
	var b schemas.FlowBatch
	if err := New().DecodeSFlow(testExporter, 6343, received, dg, &b); err != nil {
		t.Fatal(err)
	}
	base := schemas.Flow{TimeStart: received, TimeEnd: received, Packets: 1, SamplingRate: 1000}
	want := []schemas.Flow{base, base, base, base}
	// Ethernet, IPv4, TCP, extended router.
	want[0].SrcAddr, want[0].DstAddr, want[0].NextHop = addr("10.1.0.1"), addr("10.2.0.1"), addr("10.0.0.254")
	want[0].Bytes, want[0].InIf, want[0].OutIf = 64, 1, 10
	want[0].SrcPort, want[0].DstPort, want[0].EtherType, want[0].Proto, want[0].TCPFlags, want[0].IPTos = 40000, 443, 0x0800, 6, 0x18, 0x10
	// 802.1Q, IPv6, UDP, extended gateway.
	want[1].SrcAddr, want[1].DstAddr = addr("2001:db8::1"), addr("2001:db8::3")
	want[1].Bytes, want[1].InIf, want[1].OutIf, want[1].SrcAS, want[1].DstAS = 65, 2, 11, 64499, 65001
	want[1].SrcPort, want[1].DstPort, want[1].EtherType, want[1].Proto, want[1].IPTos = 5353, 53, 0x86dd, 17, 0x28
	// Expanded sample, 802.1Q, IPv4 ICMP.
	want[2].SrcAddr, want[2].DstAddr = addr("10.3.0.1"), addr("10.4.0.1")
	want[2].Bytes, want[2].InIf, want[2].OutIf, want[2].EtherType, want[2].Proto = 66, 3, 12, 0x0800, 1
	// Sampled IPv4 record.
	want[3].SrcAddr, want[3].DstAddr = addr("10.7.0.1"), addr("10.8.0.1")
	want[3].Bytes, want[3].InIf, want[3].OutIf = 67, 4, 10
	want[3].SrcPort, want[3].DstPort, want[3].EtherType, want[3].Proto, want[3].IPTos = 5000, 6000, 0x0800, 17, 0x20
	if diff := gocmp.Diff(b.Flows, want); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}
	if b.Type != schemas.FlowTypeSFlow || b.ObservationID != 3 || b.SequenceNumber != 42 || b.Exporter != testExporter || b.ExporterPort != 6343 {
		t.Errorf("batch header %+v", b)
	}
}

func TestDecodeSFlowBadInput(t *testing.T) {
	good := sflowDatagram(1, 0, testSFlowSamples(2)...)
	cases := []struct {
		name   string
		data   []byte
		reason Reason
	}{
		{"empty", nil, ReasonTruncated},
		{"version 4", []byte{0, 0, 0, 4, 0, 0, 0, 1}, ReasonBadVersion},
		{"netflow v9", captures(t, "softflowd-v9")[0], ReasonBadVersion},
		{"header cut", good[:20], ReasonTruncated},
		{"sample cut", good[:len(good)-10], ReasonTruncated},
		{"huge sample count", append(append([]byte(nil), good[:24]...), 0xff, 0xff, 0xff, 0xff), ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b schemas.FlowBatch
			err := New().DecodeSFlow(testExporter, 6343, 1, tc.data, &b)
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != tc.reason {
				t.Fatalf("error %v, want reason %q", err, tc.reason)
			}
		})
	}
}
