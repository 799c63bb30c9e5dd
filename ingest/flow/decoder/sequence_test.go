package decoder

import (
	"testing"

	"github.com/flowaudit/flowaudit/schemas"
)

func TestSequenceTracker(t *testing.T) {
	type step struct {
		seq            uint32
		count          int
		lostDg, lostFl uint64
	}
	cases := []struct {
		name  string
		typ   schemas.FlowType
		steps []step
	}{
		{"v5 counts flows", schemas.FlowTypeNetFlowV5, []step{
			{0, 30, 0, 0}, {30, 30, 0, 0}, {60, 30, 0, 0},
			{150, 30, 2, 60}, // datagrams 90 and 120 lost
			{180, 10, 0, 0},
			{190, 30, 0, 0},
		}},
		{"v9 counts datagrams", schemas.FlowTypeNetFlowV9, []step{
			{1, 20, 0, 0}, {2, 20, 0, 0}, {5, 20, 2, 40}, {6, 20, 0, 0},
			{4, 20, 0, 0}, // late datagram: ignored
			{7, 20, 0, 0},
			{1, 20, 0, 0}, // exporter restart
			{2, 20, 0, 0},
		}},
		{"v9 wraps", schemas.FlowTypeNetFlowV9, []step{
			{0xfffffffe, 5, 0, 0}, {0xffffffff, 5, 0, 0}, {0, 5, 0, 0}, {2, 5, 1, 5},
		}},
		{"IPFIX counts records", schemas.FlowTypeIPFIX, []step{
			{0, 10, 0, 0}, {10, 10, 0, 0}, {20, 5, 0, 0}, {45, 10, 2, 20}, {55, 10, 0, 0},
			{3_000_000_000, 10, 0, 0}, // restart far away: no loss
			{3_000_000_010, 10, 0, 0},
		}},
		{"IPFIX softflowd stamping", schemas.FlowTypeIPFIX, []step{
			{24, 24, 0, 0}, {50, 26, 0, 0}, {82, 32, 0, 0}, {103, 21, 0, 0}, {110, 7, 0, 0},
		}},
		{"sFlow counts datagrams", schemas.FlowTypeSFlow, []step{
			{100, 8, 0, 0}, {101, 8, 0, 0}, {104, 8, 2, 16}, {105, 8, 0, 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewSequenceTracker()
			for i, s := range tc.steps {
				b := &schemas.FlowBatch{Exporter: testExporter, Type: tc.typ, ObservationID: 1, SequenceNumber: s.seq}
				dg, fl := tr.Observe(b, s.count)
				if dg != s.lostDg || fl != s.lostFl {
					t.Errorf("step %d (seq %d): lost (%d, %d), want (%d, %d)", i, s.seq, dg, fl, s.lostDg, s.lostFl)
				}
			}
		})
	}
}

func TestSequenceTrackerSeparatesStreams(t *testing.T) {
	tr := NewSequenceTracker()
	other := schemas.AddrFrom4([4]byte{192, 0, 2, 2})
	for _, b := range []schemas.FlowBatch{
		{Exporter: testExporter, Type: schemas.FlowTypeNetFlowV9, ObservationID: 1, SequenceNumber: 10},
		{Exporter: testExporter, Type: schemas.FlowTypeNetFlowV9, ObservationID: 2, SequenceNumber: 500},
		{Exporter: other, Type: schemas.FlowTypeNetFlowV9, ObservationID: 1, SequenceNumber: 900},
		{Exporter: testExporter, Type: schemas.FlowTypeIPFIX, ObservationID: 1, SequenceNumber: 7000},
		{Exporter: testExporter, Type: schemas.FlowTypeNetFlowV9, ObservationID: 1, SequenceNumber: 11},
	} {
		if dg, fl := tr.Observe(&b, 3); dg != 0 || fl != 0 {
			t.Errorf("%+v: lost (%d, %d), want none", b, dg, fl)
		}
	}
}

// TestSequenceTrackerOnCaptures feeds softflowd's real sequence numbers.
func TestSequenceTrackerOnCaptures(t *testing.T) {
	for _, name := range []string{"softflowd-v5", "softflowd-v9", "softflowd-ipfix", "softflowd-ipfix-milli"} {
		t.Run(name, func(t *testing.T) {
			d, tr := New(), NewSequenceTracker()
			var b schemas.FlowBatch
			dgs := captures(t, name)
			for i, dg := range dgs {
				if i == 1 && len(dgs) > 3 {
					continue // drop one datagram: must be reported
				}
				if err := d.DecodeNetFlow(testExporter, 2055, 1, dg, &b); err != nil {
					t.Fatal(err)
				}
				lostDg, lostFl := tr.Observe(&b, len(b.Flows))
				if i == 2 && len(dgs) > 3 {
					if lostDg == 0 || lostFl == 0 {
						t.Errorf("datagram %d after a drop: lost (%d, %d)", i, lostDg, lostFl)
					}
				} else if lostDg != 0 || lostFl != 0 {
					t.Errorf("datagram %d: lost (%d, %d), want none", i, lostDg, lostFl)
				}
			}
		})
	}
}
