package decoder

import (
	"cmp"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// sortFlows orders flows by a key both implementations fill, because
// goflow2 may emit a datagram's sets in another order than ours.
func sortFlows(flows []schemas.Flow) {
	slices.SortFunc(flows, func(a, b schemas.Flow) int {
		return cmp.Or(
			slices.Compare(a.SrcAddr[:], b.SrcAddr[:]),
			slices.Compare(a.DstAddr[:], b.DstAddr[:]),
			cmp.Compare(a.SrcPort, b.SrcPort),
			cmp.Compare(a.DstPort, b.DstPort),
			cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.TimeStart, b.TimeStart),
		)
	})
}

// TestDifferentialGoflow2 decodes softflowd's captures with this package
// and with goflow2 v2.2.6 and compares every field both produce.
//
// Known, intended differences, patched into goflow2's output:
//   - IPFIX flowStart/EndSysUpTime (21/22): goflow2 ignores them and uses
//     the export time; we add them to systemInitTimeMilliseconds from the
//     options data, which gives the real time.
//   - IPFIX samplingPacketInterval/Space (305/306): goflow2 takes 305 alone
//     as the rate (1 for softflowd -s 100); RFC 5476 gives (305+306)/305.
func TestDifferentialGoflow2(t *testing.T) {
	cases := []struct {
		capture      string
		ourTimes     bool   // times checked by TestCaptureValues instead
		samplingRate uint32 // expected rate when it differs from goflow2
	}{
		{capture: "softflowd-v5"},
		{capture: "softflowd-v9"},
		{capture: "softflowd-v9-sampled"},
		{capture: "softflowd-ipfix", ourTimes: true},
		{capture: "softflowd-ipfix-sampled", ourTimes: true, samplingRate: 100},
		{capture: "softflowd-ipfix-milli"},
	}
	for _, tc := range cases {
		t.Run(tc.capture, func(t *testing.T) {
			datagrams := captures(t, tc.capture)
			got := decodeAll(t, New(), datagrams)
			ref := newGoflow2Reference(t)
			var want []schemas.Flow
			for i, dg := range datagrams {
				msgs, err := ref.decode(dg, "netflow", false)
				if err != nil {
					t.Fatalf("goflow2, datagram %d: %v", i, err)
				}
				want = append(want, goflow2Flows(msgs)...)
			}
			if len(want) == 0 {
				t.Fatal("goflow2 decoded no flows")
			}
			for i := range got {
				got[i].Direction = 0 // goflow2 does not map flowDirection
				if tc.ourTimes {
					got[i].TimeStart, got[i].TimeEnd = 0, 0
				}
			}
			for i := range want {
				if tc.ourTimes {
					want[i].TimeStart, want[i].TimeEnd = 0, 0
				}
				if tc.samplingRate != 0 {
					want[i].SamplingRate = tc.samplingRate
				}
			}
			sortFlows(got)
			sortFlows(want)
			if diff := gocmp.Diff(got, want); diff != "" {
				t.Errorf("flows differ from goflow2 (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDifferentialGoflow2SFlow(t *testing.T) {
	const received = 1_700_000_000_123_456_789
	dg := sflowDatagram(42, 3, testSFlowSamples(16)...)
	var b schemas.FlowBatch
	if err := New().DecodeSFlow(testExporter, 6343, received, dg, &b); err != nil {
		t.Fatal(err)
	}
	ref := newGoflow2Reference(t)
	ref.args.TimeReceived = ref.args.TimeReceived.Add(received - 1)
	msgs, err := ref.decode(dg, "sflow", false)
	if err != nil {
		t.Fatal(err)
	}
	want := goflow2Flows(msgs)
	if len(want) != 16 {
		t.Fatalf("goflow2 decoded %d flows, want 16", len(want))
	}
	got := b.Flows
	sortFlows(got)
	sortFlows(want)
	if diff := gocmp.Diff(got, want); diff != "" {
		t.Errorf("flows differ from goflow2 (-got +want):\n%s", diff)
	}
}
