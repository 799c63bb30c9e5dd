package decoder

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// findFlow returns the flow from src to dst, or fails.
func findFlow(t *testing.T, flows []schemas.Flow, src, dst schemas.Addr) schemas.Flow {
	t.Helper()
	for _, f := range flows {
		if f.SrcAddr == src && f.DstAddr == dst {
			return f
		}
	}
	t.Fatalf("no flow %s -> %s among %d", src, dst, len(flows))
	return schemas.Flow{}
}

// TestCaptureValues checks decoded softflowd captures against what
// testdata/gen.py put in the pcap: the first IPv4 TCP session (4 packets,
// 40+140+240+340 bytes, SYN|PSH|ACK|FIN, from t=1700000000.0 for 0.6 s),
// the first IPv6 TCP session and the first ICMP echo.
func TestCaptureValues(t *testing.T) {
	const t0 = 1_700_000_000_000_000_000
	tcp4 := schemas.Flow{
		TimeStart: t0, TimeEnd: t0 + 599_000_000,
		SrcAddr: addr("10.1.0.10"), DstAddr: addr("10.2.0.1"),
		Bytes: 760, Packets: 4, SamplingRate: 1, SrcPort: 40000, DstPort: 5432,
		EtherType: 0x0800, Proto: 6, TCPFlags: 0x1b,
	}
	tcp6 := schemas.Flow{
		TimeStart: t0 + 1_200_000_000, TimeEnd: t0 + 1_799_000_000,
		SrcAddr: addr("2001:db8:1::1"), DstAddr: addr("2001:db8:2::1"),
		Bytes: 372, Packets: 3, SamplingRate: 1, SrcPort: 33000, DstPort: 22,
		EtherType: 0x86dd, Proto: 6, TCPFlags: 0x1b,
	}
	icmp := schemas.Flow{
		TimeStart: t0 + 1_000_000_000, TimeEnd: t0 + 1_000_000_000,
		SrcAddr: addr("10.3.0.1"), DstAddr: addr("10.4.0.1"),
		Bytes: 60, Packets: 1, SamplingRate: 1, EtherType: 0x0800, Proto: 1,
	}
	// v5 and v9 carry only uptime-relative milliseconds against a header
	// clock softflowd rounds, hence the shifted times below.
	v5tcp4 := tcp4
	v5tcp4.TimeStart, v5tcp4.TimeEnd, v5tcp4.SamplingRate = t0+999_000, t0+599_999_000, 0
	v5tcp4.NextHop = addr("0.0.0.0")
	v9tcp4 := tcp4
	v9tcp4.TimeStart, v9tcp4.TimeEnd = t0-39_000_000, t0+560_000_000

	cases := []struct {
		capture string
		flows   int
		want    []schemas.Flow
	}{
		{"softflowd-v5", 75, []schemas.Flow{v5tcp4}}, // v5 has no IPv6
		{"softflowd-v9", 110, []schemas.Flow{v9tcp4}},
		{"softflowd-ipfix", 110, []schemas.Flow{tcp4, tcp6, icmp}},
		{"softflowd-ipfix-milli", 110, []schemas.Flow{tcp4, tcp6, icmp}},
	}
	for _, tc := range cases {
		t.Run(tc.capture, func(t *testing.T) {
			flows := decodeAll(t, New(), captures(t, tc.capture))
			if len(flows) != tc.flows {
				t.Errorf("decoded %d flows, want %d", len(flows), tc.flows)
			}
			for _, want := range tc.want {
				got := findFlow(t, flows, want.SrcAddr, want.DstAddr)
				if diff := gocmp.Diff(got, want); diff != "" {
					t.Errorf("flow %s -> %s (-got +want):\n%s", want.SrcAddr, want.DstAddr, diff)
				}
			}
		})
	}
}

func TestBatchHeader(t *testing.T) {
	cases := []struct {
		capture string
		index   int
		want    schemas.FlowBatch
	}{
		{"softflowd-v5", 1, schemas.FlowBatch{Type: schemas.FlowTypeNetFlowV5, SequenceNumber: 29}},
		{"softflowd-v9", 2, schemas.FlowBatch{Type: schemas.FlowTypeNetFlowV9, SequenceNumber: 3}},
		{"softflowd-ipfix", 1, schemas.FlowBatch{Type: schemas.FlowTypeIPFIX, SequenceNumber: 50}},
	}
	for _, tc := range cases {
		t.Run(tc.capture, func(t *testing.T) {
			d := New()
			var b schemas.FlowBatch
			for i, dg := range captures(t, tc.capture)[:tc.index+1] {
				if err := d.DecodeNetFlow(testExporter, 2055, 77, dg, &b); err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
			}
			got := b
			got.Flows = nil
			tc.want.Records = uint32(len(b.Flows)) // softflowd sends no options data
			tc.want.TimeReceived, tc.want.Exporter, tc.want.ExporterPort = 77, testExporter, 2055
			if diff := gocmp.Diff(got, tc.want); diff != "" {
				t.Errorf("batch header (-got +want):\n%s", diff)
			}
		})
	}
}

// TestSamplingRate covers where rates come from: the v5 header, v9 and
// IPFIX options data (kept per domain for later datagrams) and
// per-record fields that override them.
func TestSamplingRate(t *testing.T) {
	t.Run("v9 options apply to later datagrams", func(t *testing.T) {
		d := New()
		dgs := captures(t, "softflowd-v9-sampled")
		flows := decodeAll(t, d, dgs)
		for _, f := range flows {
			if f.SamplingRate != 100 {
				t.Fatalf("sampling rate %d, want 100", f.SamplingRate)
			}
		}
		// A later data-only datagram from the same exporter and source ID.
		data := v9Message(5000, 1700000005, 2, 0, 1, (&wire{}).set(1024, make([]byte, 42)).b)
		var b schemas.FlowBatch
		if err := d.DecodeNetFlow(testExporter, 2055, 1, data, &b); err != nil {
			t.Fatal(err)
		}
		if len(b.Flows) != 1 || b.Flows[0].SamplingRate != 100 {
			t.Errorf("later flows %+v, want one at rate 100", b.Flows)
		}
	})
	t.Run("IPFIX 305/306 and per-record override", func(t *testing.T) {
		d := New()
		optsTmpl := (&wire{}).u16(300).u16(3).u16(1).u16(149).u16(4).u16(305).u16(4).u16(306).u16(4).b
		opts := (&wire{}).u32(1).u32(1).u32(511).b // 1 in 512
		tmpl := (&wire{}).u16(400).u16(2).u16(8).u16(4).u16(1).u16(4).b
		tmplRate := (&wire{}).u16(401).u16(3).u16(8).u16(4).u16(34).u16(2).u16(2).u16(4).b
		msg := ipfixMessage(1700000000, 0, 7,
			(&wire{}).set(3, optsTmpl).b,
			(&wire{}).set(2, append(tmpl, tmplRate...)).b,
			(&wire{}).set(300, opts).b,
			(&wire{}).set(400, (&wire{}).raw(ip4("10.0.0.1")).u32(1500).b).b,
			(&wire{}).set(401, (&wire{}).raw(ip4("10.0.0.2")).u16(64).u32(7).b).b,
		)
		var b schemas.FlowBatch
		if err := d.DecodeNetFlow(testExporter, 4739, 1, msg, &b); err != nil {
			t.Fatal(err)
		}
		want := []schemas.Flow{
			{SrcAddr: addr("10.0.0.1"), Bytes: 1500, SamplingRate: 512, EtherType: 0x0800},
			{SrcAddr: addr("10.0.0.2"), Packets: 7, SamplingRate: 64, EtherType: 0x0800},
		}
		if diff := gocmp.Diff(b.Flows, want); diff != "" {
			t.Errorf("flows (-got +want):\n%s", diff)
		}
	})
	t.Run("v5 header", func(t *testing.T) {
		dg := captures(t, "softflowd-v5")[0]
		dg = append([]byte(nil), dg...)
		dg[22], dg[23] = 0x40, 100 // mode 1, interval 100
		var b schemas.FlowBatch
		if err := New().DecodeNetFlow(testExporter, 2055, 1, dg, &b); err != nil {
			t.Fatal(err)
		}
		if b.Flows[0].SamplingRate != 100 {
			t.Errorf("sampling rate %d, want 100", b.Flows[0].SamplingRate)
		}
	})
}

// TestIPFIXFieldEncodings covers enterprise fields, variable-length
// fields, reduced-size counters, IPv6 next hops, absolute and delta times.
func TestIPFIXFieldEncodings(t *testing.T) {
	const export = 1700000100
	tmpl := (&wire{}).u16(500).u16(13).
		u16(27).u16(16).u16(28).u16(16).u16(62).u16(16).
		u16(0x8000 | 100).u16(4).u32(9).      // enterprise field, 4 bytes
		u16(0x8000 | 101).u16(0xffff).u32(9). // enterprise, variable length
		u16(82).u16(0xffff).                  // interfaceName, variable length
		u16(85).u16(4).                       // octetTotalCount, reduced size
		u16(86).u16(2).
		u16(150).u16(4).u16(151).u16(4).
		u16(61).u16(1).u16(10).u16(2).u16(14).u16(4).b
	rec := func(name string) []byte {
		w := (&wire{}).raw(ip16("2001:db8::1")).raw(ip16("2001:db8::2")).raw(ip16("2001:db8::fe")).u32(0xdeadbeef)
		w.u8(3).raw([]byte("abc"))
		if len(name) >= 255 {
			w.u8(255).u16(uint16(len(name))).raw([]byte(name))
		} else {
			w.u8(uint8(len(name))).raw([]byte(name))
		}
		return w.u32(123456).u16(99).u32(1700000000).u32(1700000050).u8(1).u16(3).u32(4).b
	}
	long := string(make([]byte, 300))
	data := append(rec("eth0"), rec(long)...)
	data = append(data, 0, 0, 0) // padding
	msg := ipfixMessage(export, 0, 1, (&wire{}).set(2, tmpl).b, (&wire{}).set(500, data).b)
	var b schemas.FlowBatch
	if err := New().DecodeNetFlow(testExporter, 4739, 1, msg, &b); err != nil {
		t.Fatal(err)
	}
	one := schemas.Flow{
		TimeStart: 1700000000_000000000, TimeEnd: 1700000050_000000000,
		SrcAddr: addr("2001:db8::1"), DstAddr: addr("2001:db8::2"), NextHop: addr("2001:db8::fe"),
		Bytes: 123456, Packets: 99, InIf: 3, OutIf: 4, EtherType: 0x86dd, Direction: 1,
	}
	if diff := gocmp.Diff(b.Flows, []schemas.Flow{one, one}); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}

	// Delta and NTP times, milliseconds beside sysUpTime.
	tmpl2 := (&wire{}).u16(501).u16(3).u16(158).u16(4).u16(159).u16(4).u16(156).u16(8).b
	ntp := uint64(1700000000+ntpEpochOffset)<<32 | 1<<31 // +0.5 s
	msg = ipfixMessage(export, 0, 1, (&wire{}).set(2, tmpl2).b, (&wire{}).set(501, (&wire{}).u32(2_000_000).u32(1_000_000).u64(ntp).b).b)
	if err := New().DecodeNetFlow(testExporter, 4739, 1, msg, &b); err != nil {
		t.Fatal(err)
	}
	want := schemas.Flow{TimeStart: 1700000000_500000000, TimeEnd: (export - 1) * 1e9}
	if diff := gocmp.Diff(b.Flows, []schemas.Flow{want}); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}
}

func TestBadInput(t *testing.T) {
	v9 := captures(t, "softflowd-v9")
	ipfix := captures(t, "softflowd-ipfix")
	cases := []struct {
		name   string
		data   []byte
		reason Reason
		tid    uint16
		flows  int
	}{
		{"empty", nil, ReasonTruncated, 0, 0},
		{"one byte", []byte{0}, ReasonTruncated, 0, 0},
		{"version 7", []byte{0, 7, 0, 0}, ReasonBadVersion, 0, 0},
		{"sflow on netflow port", []byte{0, 0, 0, 5, 0, 0, 0, 1}, ReasonBadVersion, 0, 0},
		{"v5 header cut", captures(t, "softflowd-v5")[0][:20], ReasonTruncated, 0, 0},
		{"v5 records cut", captures(t, "softflowd-v5")[0][:24+48*3+10], ReasonTruncated, 0, 3},
		{"v9 header cut", v9[0][:19], ReasonTruncated, 0, 0},
		{"v9 unknown template", v9[1], ReasonUnknownTemplate, 1024, 0},
		{"v9 set cut", v9[0][:600], ReasonTruncated, 0, 0},
		{"ipfix header cut", ipfix[0][:15], ReasonTruncated, 0, 0},
		{"ipfix unknown template", ipfix[2], ReasonUnknownTemplate, 1024, 0},
		{"ipfix message cut", ipfix[0][:900], ReasonTruncated, 0, 0},
		{"ipfix length below header", []byte{0, 10, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ReasonMalformed, 0, 0},
		{"ipfix set length 2", ipfixMessage(1, 0, 0, []byte{1, 0, 0, 2}), ReasonMalformed, 0, 0},
		{"ipfix template id 5", ipfixMessage(1, 0, 0, (&wire{}).set(2, []byte{0, 5, 0, 1, 0, 8, 0, 4}).b), ReasonMalformed, 5, 0},
		{"ipfix template fields cut", ipfixMessage(1, 0, 0, (&wire{}).set(2, []byte{1, 0, 0, 3, 0, 8, 0, 4}).b), ReasonMalformed, 256, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b schemas.FlowBatch
			err := New().DecodeNetFlow(testExporter, 2055, 1, tc.data, &b)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v, want a *DecodeError", err)
			}
			if de.Reason != tc.reason || de.TemplateID != tc.tid || de.Exporter != testExporter {
				t.Errorf("got reason %q template %d exporter %s, want %q %d %s", de.Reason, de.TemplateID, de.Exporter, tc.reason, tc.tid, testExporter)
			}
			if len(b.Flows) != tc.flows {
				t.Errorf("got %d flows, want %d", len(b.Flows), tc.flows)
			}
		})
	}
}

// TestUnknownTemplateKeepsOtherSets: a datagram mixing a known and an
// unknown template yields the known flows and the error.
func TestUnknownTemplateKeepsOtherSets(t *testing.T) {
	d := New()
	ipfix := captures(t, "softflowd-ipfix")
	decodeAll(t, d, ipfix[:1]) // learn the templates
	// Append a set with an unknown template to the data-only message 2.
	msg := append([]byte(nil), ipfix[2]...)
	msg = append(msg, (&wire{}).set(999, make([]byte, 8)).b...)
	msg[2], msg[3] = byte(len(msg)>>8), byte(len(msg))
	var b schemas.FlowBatch
	err := d.DecodeNetFlow(testExporter, 2055, 1, msg, &b)
	var de *DecodeError
	if !errors.As(err, &de) || de.Reason != ReasonUnknownTemplate || de.TemplateID != 999 || !errors.Is(err, ErrUnknownTemplate) {
		t.Fatalf("error %v, want unknown template 999", err)
	}
	if len(b.Flows) != 32 {
		t.Errorf("got %d flows, want the 32 of the known set", len(b.Flows))
	}
}

func TestRandomInputDoesNotPanic(t *testing.T) {
	d := New()
	r := rand.New(rand.NewPCG(1, 2))
	var b schemas.FlowBatch
	seeds := append(captures(t, "softflowd-v9"), captures(t, "softflowd-ipfix")...)
	for i := 0; i < 20000; i++ {
		var data []byte
		if i%2 == 0 {
			data = make([]byte, r.IntN(200))
			for j := range data {
				data[j] = byte(r.UintN(256))
			}
			if len(data) >= 2 {
				data[0], data[1] = 0, []byte{5, 9, 10}[r.IntN(3)]
			}
		} else {
			// Mutate real datagrams: a few random bytes.
			data = append([]byte(nil), seeds[r.IntN(len(seeds))]...)
			for range 1 + r.IntN(4) {
				data[2+r.IntN(len(data)-2)] = byte(r.UintN(256))
			}
		}
		_ = d.DecodeNetFlow(testExporter, 1, 1, data, &b)
		_ = d.DecodeSFlow(testExporter, 1, 1, data, &b)
	}
}

func TestTemplatePersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "templates.json")
	ipfix := captures(t, "softflowd-ipfix-sampled")
	v9 := captures(t, "softflowd-v9")

	first := New(WithTemplateFile(path))
	decodeAll(t, first, ipfix)
	decodeAll(t, first, v9[:1])
	if err := first.SaveTemplates(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing changed: no rewrite.
	if err := first.SaveTemplates(); err != nil {
		t.Fatal(err)
	}
	if info2, _ := os.Stat(path); !info2.ModTime().Equal(info.ModTime()) {
		t.Error("SaveTemplates rewrote an unchanged file")
	}

	second := New(WithTemplateFile(path))
	var b schemas.FlowBatch
	if err := second.DecodeNetFlow(testExporter, 2055, 1, v9[2], &b); err != nil {
		t.Fatalf("data-only v9 after reload: %v", err)
	}
	if len(b.Flows) != 32 || b.Flows[0].SamplingRate != 1 {
		t.Errorf("got %d flows at rate %d, want 32 at rate 1", len(b.Flows), b.Flows[0].SamplingRate)
	}
	// IPFIX data-only: template, sampling rate (100) and system init time
	// (for the sysUpTime timestamps) all come from the file.
	// The capture ends with a 132-byte set of template 1024 and a 72-byte
	// set of template 2048: take the first 42-byte record of the former.
	rec := ipfix[0][len(ipfix[0])-72-132+4:][:42]
	data := ipfixMessage(1700000009, 4, 0, (&wire{}).set(1024, rec).b)
	if err := second.DecodeNetFlow(testExporter, 2055, 1, data, &b); err != nil {
		t.Fatalf("data-only IPFIX after reload: %v", err)
	}
	ref := decodeAll(t, New(), ipfix)
	if diff := gocmp.Diff(b.Flows, []schemas.Flow{findFlow(t, ref, b.Flows[0].SrcAddr, b.Flows[0].DstAddr)}); diff != "" {
		t.Errorf("flow after reload (-got +want):\n%s", diff)
	}

	t.Run("without file", func(t *testing.T) {
		if err := New().SaveTemplates(); err != nil {
			t.Errorf("SaveTemplates without file: %v", err)
		}
	})
	t.Run("corrupt file", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(bad, []byte(`{"version":1,"templates":[{"id":`), 0o600); err != nil {
			t.Fatal(err)
		}
		d := New(WithTemplateFile(bad))
		if err := d.LoadTemplates(); err == nil {
			t.Error("LoadTemplates accepted a corrupt file")
		}
		decodeAll(t, d, v9) // still works
	})
}

// TestConcurrentDecode runs readers sharing one Decoder (go test -race
// checks the template maps) while templates are saved.
func TestConcurrentDecode(t *testing.T) {
	d := New(WithTemplateFile(filepath.Join(t.TempDir(), "t.json")))
	dgs := append(captures(t, "softflowd-ipfix"), captures(t, "softflowd-v9")...)
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			var b schemas.FlowBatch
			exporter := schemas.AddrFrom4([4]byte{10, 0, 0, byte(w)})
			for range 50 {
				for _, dg := range dgs {
					_ = d.DecodeNetFlow(exporter, 2055, 1, dg, &b)
				}
				_ = d.SaveTemplates()
			}
		}()
	}
	for range 4 {
		<-done
	}
	if err := d.SaveTemplates(); err != nil {
		t.Fatal(err)
	}
	if n := d.TemplateCount(); n != 4*10 {
		t.Errorf("%d templates, want 40", n)
	}
}
