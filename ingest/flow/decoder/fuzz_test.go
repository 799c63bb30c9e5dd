package decoder

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flowaudit/flowaudit/schemas"
)

func FuzzDecodeNetFlow(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.bin"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Vendor elements: biflow counters with post-NAT and firewall events
	// (v9 NSEL and IPFIX), a station address, a v9 variable-length field,
	// zero padding after the last set.
	nsel := tmplFields(263, 8, 4, 12, 4, 7, 2, 11, 2, 4, 1, 231, 8, 232, 8, 298, 4, 299, 4, 40001, 4, 40002, 4, 40005, 1, 33002, 2, 323, 8)
	nselRec := (&wire{}).raw(ip4("10.1.0.5")).raw(ip4("192.0.2.80")).u16(51000).u16(443).u8(6).u64(1200).u64(64000).u32(10).u32(640).
		raw(ip4("198.51.100.1")).raw(ip4("192.0.2.80")).u8(3).u16(1001).u64(1_750_000_000_000).b
	f.Add(v9Message(1000, 1_750_000_000, 1, 0, 2, (&wire{}).set(0, nsel).b, (&wire{}).set(263, nselRec).b, make([]byte, 64)))
	ipfix := tmplFields(300, 27, 16, 28, 16, 89, 1, 233, 1, 225, 4, 281, 16, 1, 8, 2, 8)
	ipfixRec := (&wire{}).raw(ip16("2001:db8::1")).raw(ip16("2001:db8::2")).u8(0x80).u8(3).raw(ip4("198.51.100.1")).raw(ip16("2001:db8::9")).u64(9).u64(1).b
	f.Add(ipfixMessage(1_750_000_000, 1, 0, (&wire{}).set(2, ipfix).b, (&wire{}).set(300, ipfixRec).b))
	wlc := tmplFields(261, 366, 4, 61, 1, 82, 0xffff, 1, 8, 2, 8)
	wlcRec := (&wire{}).raw(ip4("192.168.20.121")).u8(1).u8(4).raw([]byte("wlan")).u64(3320).u64(83).b
	f.Add(v9Message(1000, 1_750_000_000, 1, 1, 2, (&wire{}).set(0, wlc).b, (&wire{}).set(261, wlcRec).b))
	// The poison datagram of issue 10, smaller: 1-byte records.
	f.Add(poisonIPFIX(2000))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A fresh decoder is primed with the captures' templates, so that
		// mutated data sets reach the record decoder.
		d := New()
		var b schemas.FlowBatch
		for _, name := range []string{"softflowd-v9-0.bin", "softflowd-ipfix-0.bin", "softflowd-ipfix-milli-0.bin"} {
			if seed, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
				_ = d.DecodeNetFlow(testExporter, 2055, 1, seed, &b)
			}
		}
		err := d.DecodeNetFlow(testExporter, 2055, 1, data, &b)
		if err == nil && len(data) < ipfixHeaderLen {
			t.Fatalf("no error for %d bytes", len(data))
		}
		if len(b.Flows) > MaxRecordsPerDatagram || b.Records > MaxRecordsPerDatagram {
			t.Fatalf("%d flows, %d records from one datagram, bound %d", len(b.Flows), b.Records, MaxRecordsPerDatagram)
		}
	})
}

func FuzzDecodeSFlow(f *testing.F) {
	f.Add(sflowDatagram(1, 0, testSFlowSamples(8)...))
	f.Add(sflowDatagram(2, 1, testSFlowSamples(1)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b schemas.FlowBatch
		_ = New().DecodeSFlow(testExporter, 6343, 1, data, &b)
	})
}
