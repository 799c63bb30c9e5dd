package decoder

import (
	"math"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// The vectors below are built from the protocol facts: NetFlow v9
// FIRST/LAST_SWITCHED (22/21) are milliseconds of the same 32-bit
// sysUpTime counter as the header's; IPFIX flowStart/EndSysUpTime (22/21)
// count from systemInitTimeMilliseconds (160); the counter wraps after
// 2^32 ms (49.7 days).

const exportSec = 1_750_000_000

// secs is the export time plus s seconds (to the millisecond), in Unix ns.
func secs(s float64) uint64 { return uint64(int64(exportSec)*1e9 + int64(math.Round(s*1000))*1e6) }

// decodeOne decodes dgs in order with d and returns the last batch.
func decodeOne(t *testing.T, d *Decoder, dgs ...[]byte) schemas.FlowBatch {
	t.Helper()
	var b schemas.FlowBatch
	for i, dg := range dgs {
		if err := d.DecodeNetFlow(testExporter, 2055, 1, dg, &b); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	return b
}

// times keeps only the times of flows, for comparison.
func times(flows []schemas.Flow) [][2]uint64 {
	var out [][2]uint64
	for _, f := range flows {
		out = append(out, [2]uint64{f.TimeStart, f.TimeEnd})
	}
	return out
}

func TestV9UptimeRollover(t *testing.T) {
	// Template 300: FIRST_SWITCHED, LAST_SWITCHED.
	tmpl := (&wire{}).u16(300).u16(2).u16(22).u16(4).u16(21).u16(4).b
	const wrap = 1 << 32
	cases := []struct {
		name         string
		uptime       uint32 // header sysUpTime
		first, last  uint32
		wantS, wantE float64 // seconds relative to the export time
	}{
		// The counter wrapped 1 s before export; the flow began 5 s
		// before the wrap and ended 0.5 s after it.
		{"flow across the wrap", 1000, wrap - 5000, 500, -6, -0.5},
		// Both stamps from before the wrap, header after it.
		{"flow before the wrap", 2000, wrap - 10000, wrap - 3000, -12, -5},
		// Stamped a few ms after the header's uptime (exporters read the
		// clock for the header first).
		{"flow a few ms after the header", 100000, 99000, 100007, -1, 0.007},
		// Header just before the wrap, flow end just after it.
		{"end after the header wraps", wrap - 2, wrap - 3000, 3, -2.998, 0.005},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dg := v9Message(tc.uptime, exportSec, 1, 0, 2,
				(&wire{}).set(0, tmpl).b,
				(&wire{}).set(300, (&wire{}).u32(tc.first).u32(tc.last).b).b)
			b := decodeOne(t, New(WithMaxTimeSkew(time.Hour)), dg)
			want := [][2]uint64{{secs(tc.wantS), secs(tc.wantE)}}
			if diff := gocmp.Diff(times(b.Flows), want); diff != "" {
				t.Errorf("times (-got +want):\n%s", diff)
			}
			if b.ClampedPast+b.ClampedFuture != 0 {
				t.Errorf("clamped %d past, %d future; want none", b.ClampedPast, b.ClampedFuture)
			}
		})
	}
}

func TestIPFIXSysUpTime(t *testing.T) {
	// Options template 400 (scope observationDomainId) carrying
	// systemInitTimeMilliseconds; data template 401 with
	// flowStartSysUpTime and flowEndSysUpTime.
	optsTmpl := (&wire{}).u16(400).u16(2).u16(1).u16(149).u16(4).u16(160).u16(8).b
	tmpl := (&wire{}).u16(401).u16(2).u16(22).u16(4).u16(21).u16(4).b
	const wrap = 1 << 32
	cases := []struct {
		name         string
		initMs       uint64
		start, end   uint32
		wantS, wantE float64
	}{
		{"plain", exportSec*1000 - 3_000_000, 3_000_000 - 2000, 3_000_000 - 1000, -2, -1},
		// The export time has whole seconds; a flow stamped 4 ms after
		// the export second began is after the header's time.
		{"a few ms beyond the export time", exportSec*1000 - 3_000_000, 3_000_000 - 2000, 3_000_004, -2, 0.004},
		// softflowd -r: the "system" started after the packets of the
		// capture, so the uptimes are negative, i.e. just below 2^32.
		{"negative uptimes", exportSec*1000 - 100, wrap - 60000, wrap - 59000, -60.1, -59.1},
		// An exporter up for more than 49.7 days: uptime counted modulo 2^32.
		{"uptime past 2^32", exportSec*1000 - wrap - 10000, 8000, 9500, -2, -0.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := ipfixMessage(exportSec, 0, 9,
				(&wire{}).set(3, optsTmpl).b,
				(&wire{}).set(2, tmpl).b,
				(&wire{}).set(400, (&wire{}).u32(9).u64(tc.initMs).b).b,
				(&wire{}).set(401, (&wire{}).u32(tc.start).u32(tc.end).b).b)
			b := decodeOne(t, New(WithMaxTimeSkew(time.Hour)), msg)
			want := [][2]uint64{{secs(tc.wantS), secs(tc.wantE)}}
			if diff := gocmp.Diff(times(b.Flows), want); diff != "" {
				t.Errorf("times (-got +want):\n%s", diff)
			}
		})
	}
	t.Run("no system init time: dated by the export time", func(t *testing.T) {
		msg := ipfixMessage(exportSec, 0, 9, (&wire{}).set(2, tmpl).b,
			(&wire{}).set(401, (&wire{}).u32(1000).u32(2000).b).b)
		b := decodeOne(t, New(), msg)
		if diff := gocmp.Diff(times(b.Flows), [][2]uint64{{secs(0), secs(0)}}); diff != "" {
			t.Errorf("times (-got +want):\n%s", diff)
		}
	})
}

// TestAbsoluteTimes: IEs 150-157 in both NetFlow v9 and IPFIX.
func TestAbsoluteTimes(t *testing.T) {
	ntp := func(s float64) uint64 {
		sec := uint64(s)
		return (sec+ntpEpochOffset)<<32 | uint64((s-float64(sec))*(1<<32))
	}
	start, end := float64(exportSec-30), float64(exportSec-1)+0.25
	recs := []struct {
		name   string
		fields []uint16 // type, length pairs
		value  []byte
	}{
		{"seconds 150/151", []uint16{150, 4, 151, 4}, (&wire{}).u32(uint32(start)).u32(uint32(end)).b},
		{"milliseconds 152/153", []uint16{152, 8, 153, 8}, (&wire{}).u64(uint64(start * 1000)).u64(uint64(end * 1000)).b},
		{"microseconds 154/155", []uint16{154, 8, 155, 8}, (&wire{}).u64(ntp(start)).u64(ntp(end)).b},
		{"nanoseconds 156/157", []uint16{156, 8, 157, 8}, (&wire{}).u64(ntp(start)).u64(ntp(end)).b},
	}
	for _, version := range []int{9, 10} {
		for i, r := range recs {
			t.Run(r.name+map[int]string{9: " v9", 10: " IPFIX"}[version], func(t *testing.T) {
				id := uint16(300 + i)
				tw := (&wire{}).u16(id).u16(uint16(len(r.fields) / 2))
				for _, v := range r.fields {
					tw.u16(v)
				}
				var dg []byte
				if version == 9 {
					dg = v9Message(5000, exportSec, 1, 0, 2, (&wire{}).set(0, tw.b).b, (&wire{}).set(id, r.value).b)
				} else {
					dg = ipfixMessage(exportSec, 0, 0, (&wire{}).set(2, tw.b).b, (&wire{}).set(id, r.value).b)
				}
				b := decodeOne(t, New(), dg)
				wantEnd := secs(-0.75)
				if r.fields[0] == 150 {
					wantEnd = secs(-1) // whole seconds
				}
				got := times(b.Flows)
				if len(got) == 1 && r.fields[0] >= 154 {
					// NTP fractions: within a microsecond.
					for j := range got[0] {
						got[0][j] = (got[0][j] + 500) / 1000 * 1000
					}
				}
				if diff := gocmp.Diff(got, [][2]uint64{{secs(-30), wantEnd}}); diff != "" {
					t.Errorf("times (-got +want):\n%s", diff)
				}
			})
		}
	}
}

func TestTimeClamp(t *testing.T) {
	tmpl := (&wire{}).u16(300).u16(2).u16(150).u16(4).u16(151).u16(4).b
	rec := func(s, e int64) []byte { return (&wire{}).u32(uint32(exportSec + s)).u32(uint32(exportSec + e)).b }
	data := append(append(append(rec(-7200, -60), rec(-60, 3*3600)...), rec(-3*86400, 86400)...), rec(-10, -5)...)
	msg := ipfixMessage(exportSec, 0, 0, (&wire{}).set(2, tmpl).b, (&wire{}).set(300, data).b)
	b := decodeOne(t, New(WithMaxTimeSkew(time.Hour)), msg)
	want := [][2]uint64{
		{secs(-3600), secs(-60)},
		{secs(-60), secs(3600)},
		{secs(-3600), secs(3600)},
		{secs(-10), secs(-5)},
	}
	if diff := gocmp.Diff(times(b.Flows), want); diff != "" {
		t.Errorf("times (-got +want):\n%s", diff)
	}
	if b.ClampedPast != 2 || b.ClampedFuture != 2 {
		t.Errorf("clamped %d past, %d future; want 2 and 2", b.ClampedPast, b.ClampedFuture)
	}
	// Without the option nothing is clamped.
	b = decodeOne(t, New(), msg)
	if b.Flows[0].TimeStart != secs(-7200) || b.ClampedPast+b.ClampedFuture != 0 {
		t.Errorf("without a bound: start %d, clamped %d/%d; want %d and none", b.Flows[0].TimeStart, b.ClampedPast, b.ClampedFuture, secs(-7200))
	}
	// v5: the same bound against its header time.
	v5 := (&wire{}).u16(5).u16(1).u32(10_000_000).u32(exportSec).u32(0).u32(0).u8(0).u8(0).u16(0)
	r := make([]byte, v5RecordLen)
	be.PutUint32(r[24:], 10_000_000-2*3600*1000) // first: 2 h before export
	be.PutUint32(r[28:], 10_000_000-1000)
	b = decodeOne(t, New(WithMaxTimeSkew(time.Hour)), v5.raw(r).b)
	if diff := gocmp.Diff(times(b.Flows), [][2]uint64{{secs(-3600), secs(-1)}}); diff != "" || b.ClampedPast != 1 {
		t.Errorf("v5 times (-got +want):\n%s; clamped past %d, want 1", diff, b.ClampedPast)
	}
}
