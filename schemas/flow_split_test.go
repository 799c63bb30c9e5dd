package schemas

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAppendFlowBatchChunks(t *testing.T) {
	base := testBatch()
	big := *base
	big.Flows = nil
	for i := 0; i < 5000; i++ {
		f := base.Flows[i%len(base.Flows)]
		f.Bytes = uint64(i)
		big.Flows = append(big.Flows, f)
	}
	whole := len(AppendFlowBatch(nil, &big))
	huge := *base
	huge.Flows = []Flow{{SrcSegment: strings.Repeat("x", 3000)}, base.Flows[2], base.Flows[2]}
	cases := []struct {
		name       string
		batch      *FlowBatch
		max        int
		wantChunks int
	}{
		{"fits", base, 1 << 20, 1},
		{"split", &big, 20000, (whole + 19999) / 20000},
		{"one flow over the limit", &huge, 1000, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got FlowBatch
			got.Flows = []Flow{}
			chunks := 0
			AppendFlowBatchChunks(nil, tc.batch, tc.max, func(value []byte, flows []Flow) {
				chunks++
				if len(value) > tc.max && len(flows) > 1 {
					t.Errorf("chunk %d: %d bytes for %d flows, limit %d", chunks, len(value), len(flows), tc.max)
				}
				var c FlowBatch
				if err := UnmarshalFlowBatch(value, &c); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(c.Flows, flows); diff != "" {
					t.Errorf("chunk %d flows (-payload +reported):\n%s", chunks, diff)
				}
				hdr := c
				hdr.Flows = got.Flows
				got = hdr
				got.Flows = append(got.Flows, c.Flows...)
			})
			if diff := cmp.Diff(&got, tc.batch); diff != "" {
				t.Errorf("chunks joined (-got +want):\n%s", diff)
			}
			// Greedy packing may need one chunk more than the byte count
			// alone says, never more.
			if chunks < tc.wantChunks || chunks > tc.wantChunks+1 {
				t.Errorf("%d chunks, want %d (or one more)", chunks, tc.wantChunks)
			}
		})
	}
}

// TestAppendFlowBatchChunksOf: the payloads of a selection of flows are
// byte for byte those of the batch holding just those flows.
func TestAppendFlowBatchChunksOf(t *testing.T) {
	base := testBatch()
	big := *base
	big.Flows = nil
	for i := 0; i < 5000; i++ {
		f := base.Flows[i%len(base.Flows)]
		f.Bytes = uint64(i)
		big.Flows = append(big.Flows, f)
	}
	huge := *base
	huge.Flows = []Flow{{SrcSegment: strings.Repeat("x", 3000)}, base.Flows[2], base.Flows[2]}
	for _, tc := range []struct {
		name  string
		batch *FlowBatch
		max   int
	}{{"fits", base, 1 << 20}, {"split", &big, 20000}, {"one flow over the limit", &huge, 1000}, {"none", base, 1 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			var sel []int32
			sub := *tc.batch
			sub.Flows = nil
			if tc.name != "none" {
				for i := range tc.batch.Flows {
					if i%3 != 1 {
						sel = append(sel, int32(i))
						sub.Flows = append(sub.Flows, tc.batch.Flows[i])
					}
				}
			}
			var want, got [][]byte
			AppendFlowBatchChunks(nil, &sub, tc.max, func(value []byte, _ []Flow) { want = append(want, append([]byte(nil), value...)) })
			var flows []int32
			AppendFlowBatchChunksOf(nil, tc.batch, sel, tc.max, func(value []byte, s []int32) {
				got = append(got, append([]byte(nil), value...))
				flows = append(flows, s...)
			})
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("payloads (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(flows, sel); diff != "" {
				t.Errorf("flows reported (-got +want):\n%s", diff)
			}
		})
	}
}
