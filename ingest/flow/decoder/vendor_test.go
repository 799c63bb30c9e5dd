package decoder

import (
	"errors"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// Vectors for the elements vendors use instead of (or beside) the plain
// ones, built from the IANA IPFIX registry, RFC 5103 (biflows), RFC 7270
// (forwardingStatus) and Cisco's NSEL field numbers: each class the
// conformance corpus exercises, without the corpus.

// tmplFields builds the body of a template record: id, count, then
// (type, length) pairs without enterprise numbers.
func tmplFields(id uint16, pairs ...uint16) []byte {
	w := (&wire{}).u16(id).u16(uint16(len(pairs) / 2))
	for _, v := range pairs {
		w.u16(v)
	}
	return w.b
}

func decodeFlows(t *testing.T, dgs ...[]byte) schemas.FlowBatch {
	t.Helper()
	return decodeOne(t, New(), dgs...)
}

func TestInitiatorResponderCounters(t *testing.T) {
	// Cisco ASA / AVC: initiatorOctets 231, responderOctets 232,
	// initiatorPackets 298, responderPackets 299; no plain counters.
	tmpl := tmplFields(300, 8, 4, 12, 4, 7, 2, 11, 2, 4, 1, 10, 4, 14, 4, 231, 8, 232, 8, 298, 4, 299, 4)
	rec := func(resp uint64) []byte {
		return (&wire{}).raw(ip4("10.1.0.5")).raw(ip4("192.0.2.80")).u16(51000).u16(443).u8(6).u32(3).u32(7).
			u64(1200).u64(resp).u32(10).u32(uint32(resp / 100)).b
	}
	msg := ipfixMessage(exportSec, 1, 0, (&wire{}).set(2, tmpl).b, (&wire{}).set(300, append(rec(64000), rec(0)...)).b)
	b := decodeFlows(t, msg)
	fwd := schemas.Flow{SrcAddr: addr("10.1.0.5"), DstAddr: addr("192.0.2.80"), SrcPort: 51000, DstPort: 443, Proto: 6,
		InIf: 3, OutIf: 7, Bytes: 1200, Packets: 10, EtherType: 0x0800}
	rev := schemas.Flow{SrcAddr: addr("192.0.2.80"), DstAddr: addr("10.1.0.5"), SrcPort: 443, DstPort: 51000, Proto: 6,
		InIf: 7, OutIf: 3, Bytes: 64000, Packets: 640, EtherType: 0x0800}
	// The second record has no responder traffic: no reverse record.
	if diff := gocmp.Diff(b.Flows, []schemas.Flow{fwd, rev, fwd}); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}
	if b.Records != 2 {
		t.Errorf("Records = %d, want 2 (reverse records are not the exporter's records)", b.Records)
	}

	t.Run("RFC 5103 reverse counters", func(t *testing.T) {
		// octetDeltaCount, packetDeltaCount and their reverse (PEN 29305).
		tmpl := (&wire{}).u16(301).u16(7).u16(27).u16(16).u16(28).u16(16).u16(4).u16(1).u16(1).u16(4).u16(2).u16(4).
			u16(0x8000 | 1).u16(4).u32(29305).u16(0x8000 | 2).u16(4).u32(29305).b
		data := (&wire{}).raw(ip16("2001:db8::1")).raw(ip16("2001:db8::2")).u8(17).u32(300).u32(3).u32(900).u32(6).b
		b := decodeFlows(t, ipfixMessage(exportSec, 1, 0, (&wire{}).set(2, tmpl).b, (&wire{}).set(301, data).b))
		want := []schemas.Flow{
			{SrcAddr: addr("2001:db8::1"), DstAddr: addr("2001:db8::2"), Proto: 17, Bytes: 300, Packets: 3, EtherType: 0x86dd},
			{SrcAddr: addr("2001:db8::2"), DstAddr: addr("2001:db8::1"), Proto: 17, Bytes: 900, Packets: 6, EtherType: 0x86dd},
		}
		if diff := gocmp.Diff(b.Flows, want); diff != "" {
			t.Errorf("flows (-got +want):\n%s", diff)
		}
	})
}

func TestStationAddress(t *testing.T) {
	// Cisco WLC: staIPv4Address 366 and flowDirection 61, no plain
	// addresses: the client is the source of ingress flows and the
	// destination of egress ones.
	tmpl := tmplFields(261, 365, 6, 366, 4, 61, 1, 1, 8, 2, 8)
	rec := func(dir uint8) []byte {
		return (&wire{}).raw([]byte{0x34, 2, 0x86, 0x75, 0xc0, 0x51}).raw(ip4("192.168.20.121")).u8(dir).u64(3320).u64(83).b
	}
	dg := v9Message(1000, exportSec, 1, 1, 3, (&wire{}).set(0, tmpl).b, (&wire{}).set(261, append(rec(0), rec(1)...)).b)
	b := decodeFlows(t, dg)
	want := []schemas.Flow{
		{SrcAddr: addr("192.168.20.121"), Bytes: 3320, Packets: 83, EtherType: 0x0800},
		{DstAddr: addr("192.168.20.121"), Bytes: 3320, Packets: 83, EtherType: 0x0800, Direction: 1},
	}
	if diff := gocmp.Diff(b.Flows, want); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}
	// A plain address, when present, is kept.
	tmpl = tmplFields(262, 8, 4, 366, 4)
	dg = v9Message(1000, exportSec, 2, 1, 2, (&wire{}).set(0, tmpl).b,
		(&wire{}).set(262, (&wire{}).raw(ip4("10.0.0.9")).raw(ip4("192.168.20.121")).b).b)
	if b := decodeFlows(t, dg); len(b.Flows) != 1 || b.Flows[0].SrcAddr != addr("10.0.0.9") {
		t.Errorf("flows %+v, want the plain source 10.0.0.9", b.Flows)
	}
}

func TestPostNATAddresses(t *testing.T) {
	t.Run("IPFIX 225-228", func(t *testing.T) {
		tmpl := tmplFields(300, 8, 4, 12, 4, 7, 2, 11, 2, 225, 4, 226, 4, 227, 2, 228, 2)
		data := (&wire{}).raw(ip4("10.1.0.5")).raw(ip4("203.0.113.9")).u16(40000).u16(80).
			raw(ip4("198.51.100.1")).raw(ip4("203.0.113.9")).u16(61000).u16(80).b
		b := decodeFlows(t, ipfixMessage(exportSec, 1, 0, (&wire{}).set(2, tmpl).b, (&wire{}).set(300, data).b))
		want := []schemas.Flow{{SrcAddr: addr("10.1.0.5"), DstAddr: addr("203.0.113.9"), SrcPort: 40000, DstPort: 80, EtherType: 0x0800,
			SrcAddrXlate: addr("198.51.100.1"), DstAddrXlate: addr("203.0.113.9"), SrcPortXlate: 61000, DstPortXlate: 80}}
		if diff := gocmp.Diff(b.Flows, want); diff != "" {
			t.Errorf("flows (-got +want):\n%s", diff)
		}
	})
	t.Run("IPFIX 281/282", func(t *testing.T) {
		tmpl := tmplFields(301, 27, 16, 28, 16, 281, 16, 282, 16)
		data := (&wire{}).raw(ip16("fd00::5")).raw(ip16("2001:db8::80")).raw(ip16("2001:db8:ffff::1")).raw(ip16("::")).b
		b := decodeFlows(t, ipfixMessage(exportSec, 1, 0, (&wire{}).set(2, tmpl).b, (&wire{}).set(301, data).b))
		want := []schemas.Flow{{SrcAddr: addr("fd00::5"), DstAddr: addr("2001:db8::80"), EtherType: 0x86dd, SrcAddrXlate: addr("2001:db8:ffff::1")}}
		if diff := gocmp.Diff(b.Flows, want); diff != "" {
			t.Errorf("flows (-got +want):\n%s", diff)
		}
	})
	t.Run("NSEL 40001-40004", func(t *testing.T) {
		tmpl := tmplFields(263, 8, 4, 12, 4, 7, 2, 11, 2, 40001, 4, 40002, 4, 40003, 2, 40004, 2)
		data := (&wire{}).raw(ip4("192.168.14.1")).raw(ip4("2.2.2.11")).u16(1024).u16(53).
			raw(ip4("192.0.2.14")).raw(ip4("2.2.2.11")).u16(3333).u16(53).b
		b := decodeFlows(t, v9Message(1000, exportSec, 1, 0, 2, (&wire{}).set(0, tmpl).b, (&wire{}).set(263, data).b))
		want := []schemas.Flow{{SrcAddr: addr("192.168.14.1"), DstAddr: addr("2.2.2.11"), SrcPort: 1024, DstPort: 53, EtherType: 0x0800,
			SrcAddrXlate: addr("192.0.2.14"), DstAddrXlate: addr("2.2.2.11"), SrcPortXlate: 3333, DstPortXlate: 53}}
		if diff := gocmp.Diff(b.Flows, want); diff != "" {
			t.Errorf("flows (-got +want):\n%s", diff)
		}
	})
}

func TestZeroAddressNeverOverwrites(t *testing.T) {
	// Procera: IPv4 and IPv6 address elements in one template, the
	// unused family all zero, in either order.
	tmpl := tmplFields(300, 8, 4, 12, 4, 27, 16, 28, 16, 4, 1)
	v4 := (&wire{}).raw(ip4("181.214.87.71")).raw(ip4("138.44.161.14")).raw(make([]byte, 32)).u8(6).b
	v6 := (&wire{}).raw(make([]byte, 8)).raw(ip16("2001:388:cf0a:6::1")).raw(ip16("2001:388:cf0a:6::2")).u8(58).b
	tmpl2 := tmplFields(301, 27, 16, 28, 16, 8, 4, 12, 4)
	v4b := (&wire{}).raw(make([]byte, 32)).raw(ip4("10.0.0.1")).raw(ip4("10.0.0.2")).b
	msg := ipfixMessage(exportSec, 1, 0, (&wire{}).set(2, append(tmpl, tmpl2...)).b,
		(&wire{}).set(300, append(v4, v6...)).b, (&wire{}).set(301, v4b).b)
	b := decodeFlows(t, msg)
	want := []schemas.Flow{
		{SrcAddr: addr("181.214.87.71"), DstAddr: addr("138.44.161.14"), Proto: 6, EtherType: 0x0800},
		{SrcAddr: addr("2001:388:cf0a:6::1"), DstAddr: addr("2001:388:cf0a:6::2"), Proto: 58, EtherType: 0x86dd},
		{SrcAddr: addr("10.0.0.1"), DstAddr: addr("10.0.0.2"), EtherType: 0x0800},
	}
	if diff := gocmp.Diff(b.Flows, want); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}
}

func TestV9VariableLength(t *testing.T) {
	// H3C: a v9 template with a variable-length field (length 65535),
	// each value prefixed by its length as in RFC 7011 §7 (one byte, or
	// 255 and two bytes).
	tmpl := tmplFields(3281, 8, 4, 12, 4, 82, 0xffff, 1, 4, 2, 4)
	long := make([]byte, 300)
	data := (&wire{}).raw(ip4("10.0.0.1")).raw(ip4("10.0.0.2")).u8(4).raw([]byte("eth0")).u32(100).u32(1).
		raw(ip4("10.0.0.3")).raw(ip4("10.0.0.4")).u8(255).u16(300).raw(long).u32(200).u32(2).b
	data = append(data, 0, 0) // set padding
	b := decodeFlows(t, v9Message(1000, exportSec, 1, 0, 3, (&wire{}).set(0, tmpl).b, (&wire{}).set(3281, data).b))
	want := []schemas.Flow{
		{SrcAddr: addr("10.0.0.1"), DstAddr: addr("10.0.0.2"), Bytes: 100, Packets: 1, EtherType: 0x0800},
		{SrcAddr: addr("10.0.0.3"), DstAddr: addr("10.0.0.4"), Bytes: 200, Packets: 2, EtherType: 0x0800},
	}
	if diff := gocmp.Diff(b.Flows, want); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}
}

func TestTrailingZeroPadding(t *testing.T) {
	tmpl := tmplFields(300, 8, 4, 1, 4)
	data := (&wire{}).raw(ip4("10.0.0.1")).u32(99).b
	v9 := v9Message(1000, exportSec, 1, 0, 2, (&wire{}).set(0, tmpl).b, (&wire{}).set(300, data).b)
	// Palo Alto: the datagram zero-filled after its last flowset.
	padded := append(append([]byte(nil), v9...), make([]byte, 1000)...)
	b := decodeFlows(t, padded)
	if len(b.Flows) != 1 || b.Flows[0].Bytes != 99 {
		t.Errorf("flows %+v, want the one record", b.Flows)
	}
	for _, n := range []int{1, 3, 4, 7} {
		if b := decodeFlows(t, append(append([]byte(nil), v9...), make([]byte, n)...)); len(b.Flows) != 1 {
			t.Errorf("%d bytes of padding: %d flows, want 1", n, len(b.Flows))
		}
	}
	ipfix := ipfixMessage(exportSec, 1, 0, (&wire{}).set(2, tmpl).b, (&wire{}).set(300, data).b, make([]byte, 16))
	if b := decodeFlows(t, ipfix); len(b.Flows) != 1 {
		t.Errorf("IPFIX with zero padding: %d flows, want 1", len(b.Flows))
	}
	// Non-zero trailing bytes are still malformed.
	junk := append(append([]byte(nil), v9...), 0, 0, 0, 1)
	var fb schemas.FlowBatch
	err := New().DecodeNetFlow(testExporter, 2055, 1, junk, &fb)
	var de *DecodeError
	if !errors.As(err, &de) || de.Reason != ReasonMalformed || len(fb.Flows) != 1 {
		t.Errorf("non-zero trailer: error %v, %d flows; want malformed and the record", err, len(fb.Flows))
	}
}

func TestFirewallAction(t *testing.T) {
	cases := []struct {
		name   string
		v9     bool
		fields []uint16 // (type, length) pairs after 8/12 addresses
		values []byte
		want   schemas.FwAction
	}{
		{"forwardingStatus forwarded", false, []uint16{89, 1}, []byte{0x40}, schemas.FwActionForwarded},
		{"forwardingStatus dropped, ACL deny reason", false, []uint16{89, 1}, []byte{0x80 | 0x14}, schemas.FwActionDropped},
		{"forwardingStatus consumed: let through to the device", false, []uint16{89, 1}, []byte{0xc3}, schemas.FwActionForwarded},
		{"forwardingStatus unknown", false, []uint16{89, 1}, []byte{0x00}, schemas.FwActionNone},
		{"forwardingStatus as unsigned32", false, []uint16{89, 4}, []byte{0, 0, 0, 0x82}, schemas.FwActionDropped},
		{"firewallEvent created", false, []uint16{233, 1}, []byte{1}, schemas.FwActionForwarded},
		{"firewallEvent denied", false, []uint16{233, 1}, []byte{3}, schemas.FwActionDenied},
		{"firewallEvent alert", false, []uint16{233, 1}, []byte{4}, schemas.FwActionNone},
		{"NSEL 40005 torn down", true, []uint16{40005, 1}, []byte{2}, schemas.FwActionForwarded},
		{"NSEL 40005 denied", true, []uint16{40005, 1}, []byte{3}, schemas.FwActionDenied},
		{"NSEL 233 denied, ingress ACL", true, []uint16{233, 1, 33002, 2}, []byte{3, 0x03, 0xe9}, schemas.FwActionDenied},
		{"NSEL extended 1004 first packet not SYN", true, []uint16{233, 1, 33002, 2}, []byte{0, 0x03, 0xec}, schemas.FwActionDenied},
		{"NSEL extended 2025 teardown", true, []uint16{233, 1, 33002, 2}, []byte{2, 0x07, 0xe9}, schemas.FwActionForwarded},
		{"denial wins over forwarded", false, []uint16{89, 1, 233, 1}, []byte{0x40, 3}, schemas.FwActionDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := tmplFields(300, append([]uint16{8, 4, 12, 4}, tc.fields...)...)
			data := (&wire{}).raw(ip4("10.1.0.5")).raw(ip4("10.9.0.1")).raw(tc.values).b
			var dg []byte
			if tc.v9 {
				dg = v9Message(1000, exportSec, 1, 0, 2, (&wire{}).set(0, tmpl).b, (&wire{}).set(300, data).b)
			} else {
				dg = ipfixMessage(exportSec, 1, 0, (&wire{}).set(2, tmpl).b, (&wire{}).set(300, data).b)
			}
			b := decodeFlows(t, dg)
			if len(b.Flows) != 1 || b.Flows[0].FwAction != tc.want {
				t.Errorf("flows %+v, want one with fw_action %q", b.Flows, tc.want)
			}
		})
	}
}

// TestASADeniedEvent: an ASA flow-denied event record (NSEL template of
// a denial: addresses, ports, protocol, event 3 with its extended reason,
// the event time, no counters) becomes a flow dated by its event time.
func TestASADeniedEvent(t *testing.T) {
	tmpl := tmplFields(265, 148, 4, 8, 4, 7, 2, 12, 4, 11, 2, 4, 1, 233, 1, 33002, 2, 323, 8, 40001, 4, 40002, 4, 40003, 2, 40004, 2)
	evMs := uint64(exportSec)*1000 - 1500
	data := (&wire{}).u32(8501).raw(ip4("198.51.100.23")).u16(40123).raw(ip4("10.20.0.5")).u16(3389).u8(6).u8(3).u16(1001).u64(evMs).
		raw(ip4("198.51.100.23")).raw(ip4("192.0.2.5")).u16(40123).u16(3389).b
	b := decodeFlows(t, v9Message(1000, exportSec, 1, 0, 2, (&wire{}).set(0, tmpl).b, (&wire{}).set(265, data).b))
	want := []schemas.Flow{{
		TimeStart: secs(-1.5), TimeEnd: secs(-1.5),
		SrcAddr: addr("198.51.100.23"), DstAddr: addr("10.20.0.5"), SrcPort: 40123, DstPort: 3389, Proto: 6, EtherType: 0x0800,
		FwAction: schemas.FwActionDenied, SrcAddrXlate: addr("198.51.100.23"), DstAddrXlate: addr("192.0.2.5"), SrcPortXlate: 40123, DstPortXlate: 3389,
	}}
	if diff := gocmp.Diff(b.Flows, want); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}
}
