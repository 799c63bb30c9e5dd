package schemas

import "testing"

func TestFlowSpan(t *testing.T) {
	const received = 1_000_000
	for _, tc := range []struct {
		name               string
		start, end         uint64
		wantStart, wantEnd uint64
	}{
		{"both", 10, 20, 10, 20},
		{"start only", 10, 0, 10, 10},
		{"end only", 0, 20, 20, 20},
		{"neither: dated by arrival", 0, 0, received, received},
		{"end before start", 30, 20, 30, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Flow{TimeStart: tc.start, TimeEnd: tc.end}
			s, e := FlowSpan(&f, received)
			if s != tc.wantStart || e != tc.wantEnd {
				t.Errorf("FlowSpan = %d, %d; want %d, %d", s, e, tc.wantStart, tc.wantEnd)
			}
			b := &FlowBatch{TimeReceived: received}
			if got := b.FlowTime(&f); got != tc.wantStart {
				t.Errorf("FlowTime = %d, want %d", got, tc.wantStart)
			}
		})
	}
	var nilBatch *FlowBatch
	if got := nilBatch.FlowTime(&Flow{}); got != 0 {
		t.Errorf("nil batch, no times: FlowTime = %d, want 0", got)
	}
}
