package decoder

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors")

// vector is one hand-built exporter conversation for a class of vendor
// behaviour, written from the protocol facts (IANA IPFIX registry, RFC
// 3954, 5103, 7011, 7270, Cisco NSEL field numbers) as the conformance
// corpus showed them, so the project covers each class without the corpus.
type vector struct {
	name      string
	datagrams [][]byte
}

func vendorVectors() []vector {
	const t0 = exportSec
	v9 := func(uptime uint32, sets ...[]byte) []byte { return v9Message(uptime, t0, 1, 0, 2, sets...) }
	ipfix := func(sets ...[]byte) []byte { return ipfixMessage(t0, 1, 7, sets...) }
	const wrap = 1 << 32
	return []vector{
		{"v9-uptime-rollover", [][]byte{v9(1000,
			(&wire{}).set(0, tmplFields(300, 8, 4, 22, 4, 21, 4)).b,
			(&wire{}).set(300, (&wire{}).raw(ip4("10.0.0.1")).u32(wrap-5000).u32(500).
				raw(ip4("10.0.0.2")).u32(900).u32(1007).b).b)}},
		{"ipfix-sysuptime-negative", [][]byte{ipfix(
			(&wire{}).set(3, (&wire{}).u16(400).u16(2).u16(1).u16(149).u16(4).u16(160).u16(8).b).b,
			(&wire{}).set(2, tmplFields(401, 8, 4, 22, 4, 21, 4)).b,
			(&wire{}).set(400, (&wire{}).u32(7).u64(t0*1000-100).b).b,
			(&wire{}).set(401, (&wire{}).raw(ip4("10.1.0.1")).u32(wrap-60000).u32(wrap-59000).
				raw(ip4("10.1.0.2")).u32(50).u32(104).b).b)}},
		{"v9-absolute-times", [][]byte{v9(5000,
			(&wire{}).set(0, append(tmplFields(300, 8, 4, 150, 4, 151, 4), tmplFields(301, 8, 4, 152, 8, 153, 8)...)).b,
			(&wire{}).set(300, (&wire{}).raw(ip4("10.0.0.1")).u32(t0-30).u32(t0-1).b).b,
			(&wire{}).set(301, (&wire{}).raw(ip4("10.0.0.2")).u64(t0*1000-30500).u64(t0*1000-750).b).b)}},
		{"nsel-asa-events", [][]byte{v9(5000,
			(&wire{}).set(0, tmplFields(263, 8, 4, 7, 2, 12, 4, 11, 2, 4, 1, 231, 8, 232, 8, 298, 4, 299, 4,
				40001, 4, 40002, 4, 40003, 2, 40004, 2, 40005, 1, 33002, 2, 323, 8)).b,
			(&wire{}).set(263, (&wire{}).
				raw(ip4("198.51.100.23")).u16(40123).raw(ip4("10.20.0.5")).u16(3389).u8(6).u64(0).u64(0).u32(0).u32(0).
				raw(ip4("198.51.100.23")).raw(ip4("192.0.2.5")).u16(40123).u16(3389).u8(3).u16(1001).u64(t0*1000-1500).
				raw(ip4("10.1.0.5")).u16(51000).raw(ip4("203.0.113.80")).u16(443).u8(6).u64(1200).u64(64000).u32(10).u32(40).
				raw(ip4("192.0.2.1")).raw(ip4("203.0.113.80")).u16(61000).u16(443).u8(2).u16(2025).u64(t0*1000-800).b).b)}},
		{"ipfix-rfc5103-biflow", [][]byte{ipfix(
			(&wire{}).set(2, (&wire{}).u16(301).u16(7).u16(27).u16(16).u16(28).u16(16).u16(4).u16(1).u16(1).u16(4).u16(2).u16(4).
				u16(0x8000|1).u16(4).u32(penReverse).u16(0x8000|2).u16(4).u32(penReverse).b).b,
			(&wire{}).set(301, (&wire{}).raw(ip16("2001:db8::1")).raw(ip16("2001:db8::2")).u8(17).u32(300).u32(3).u32(900).u32(6).b).b)}},
		{"v9-wlc-station", [][]byte{v9(5000,
			(&wire{}).set(0, tmplFields(261, 365, 6, 366, 4, 61, 1, 1, 8, 2, 8)).b,
			(&wire{}).set(261, (&wire{}).raw([]byte{0x34, 2, 0x86, 0x75, 0xc0, 0x51}).raw(ip4("192.168.20.121")).u8(0).u64(3320).u64(83).
				raw([]byte{0x34, 2, 0x86, 0x75, 0xc0, 0x51}).raw(ip4("192.168.20.121")).u8(1).u64(10229).u64(40).b).b)}},
		{"ipfix-procera-v4-v6", [][]byte{ipfix(
			(&wire{}).set(2, tmplFields(300, 8, 4, 12, 4, 27, 16, 28, 16, 4, 1, 7, 2, 11, 2)).b,
			(&wire{}).set(300, (&wire{}).raw(ip4("181.214.87.71")).raw(ip4("138.44.161.14")).raw(make([]byte, 32)).u8(6).u16(53787).u16(47838).
				raw(make([]byte, 8)).raw(ip16("2001:388:cf0a:6::1")).raw(ip16("2001:388:cf0a:6::2")).u8(58).u16(136).u16(135).b).b)}},
		{"v9-h3c-varlen", [][]byte{v9(5000,
			(&wire{}).set(0, tmplFields(3281, 8, 4, 12, 4, 82, 0xffff, 1, 4, 2, 4)).b,
			(&wire{}).set(3281, (&wire{}).raw(ip4("10.0.0.1")).raw(ip4("10.0.0.2")).u8(4).raw([]byte("eth0")).u32(100).u32(1).
				raw(ip4("10.0.0.3")).raw(ip4("10.0.0.4")).u8(255).u16(260).raw(bytes.Repeat([]byte("x"), 260)).u32(200).u32(2).u16(0).b).b)}},
		{"v9-paloalto-zero-filled", [][]byte{append(v9(5000,
			(&wire{}).set(0, tmplFields(256, 8, 4, 12, 4, 1, 4, 2, 4, 233, 1)).b,
			(&wire{}).set(256, (&wire{}).raw(ip4("10.0.0.1")).raw(ip4("10.0.0.2")).u32(99).u32(1).u8(2).b).b), make([]byte, 500)...)}},
		{"ipfix-forwarding-status-post-nat", [][]byte{ipfix(
			(&wire{}).set(2, tmplFields(300, 8, 4, 12, 4, 7, 2, 11, 2, 89, 1, 225, 4, 226, 4, 227, 2, 228, 2, 1, 8, 2, 8)).b,
			(&wire{}).set(300, (&wire{}).
				raw(ip4("10.1.0.5")).raw(ip4("203.0.113.9")).u16(40000).u16(80).u8(0x40).raw(ip4("198.51.100.1")).raw(ip4("203.0.113.9")).u16(61000).u16(80).u64(500).u64(5).
				raw(ip4("10.1.0.6")).raw(ip4("203.0.113.9")).u16(40001).u16(23).u8(0x80|0x14).raw(ip4("0.0.0.0")).raw(ip4("0.0.0.0")).u16(0).u16(0).u64(60).u64(1).
				raw(ip4("10.1.0.7")).raw(ip4("10.1.0.1")).u16(40002).u16(22).u8(0xc3).raw(ip4("0.0.0.0")).raw(ip4("0.0.0.0")).u16(0).u16(0).u64(80).u64(2).b).b)}},
	}
}

// vectorFlow is a flow as the golden files show it.
type vectorFlow struct {
	Start, End         string `json:",omitempty"`
	Src, Dst           string `json:",omitempty"`
	SrcPort, DstPort   uint16 `json:",omitempty"`
	Proto              uint8  `json:",omitempty"`
	Bytes, Packets     uint64 `json:",omitempty"`
	FwAction           string `json:",omitempty"`
	SrcXlate, DstXlate string `json:",omitempty"`
	SrcPortX, DstPortX uint16 `json:",omitempty"`
	EtherType          uint16 `json:",omitempty"`
	Direction          uint8  `json:",omitempty"`
}

type vectorResult struct {
	Records, ClampedPast, ClampedFuture uint32   `json:",omitempty"`
	Errors                              []string `json:",omitempty"`
	Flows                               []vectorFlow
}

func vectorTime(ns uint64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, int64(ns)).UTC().Format(time.RFC3339Nano)
}

func vectorAddr(a schemas.Addr) string {
	if a == (schemas.Addr{}) {
		return ""
	}
	return a.String()
}

// TestVendorVectors decodes testdata/vectors/*.bin (written from
// vendorVectors with -update, so the files and the code that documents
// them agree) and compares with the .golden.json beside them.
func TestVendorVectors(t *testing.T) {
	dir := filepath.Join("testdata", "vectors")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vendorVectors() {
		t.Run(v.name, func(t *testing.T) {
			d := New(WithMaxTimeSkew(24 * time.Hour))
			var res vectorResult
			var b schemas.FlowBatch
			for i, built := range v.datagrams {
				path := filepath.Join(dir, fmt.Sprintf("%s-%d.bin", v.name, i))
				if *update {
					if err := os.WriteFile(path, built, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (go test -update writes it)", err)
				}
				if !bytes.Equal(data, built) {
					t.Fatalf("%s differs from the datagram vendorVectors builds; go test -update rewrites it", path)
				}
				if err := d.DecodeNetFlow(testExporter, 2055, 1, data, &b); err != nil {
					res.Errors = append(res.Errors, err.Error())
				}
				res.Records += b.Records
				res.ClampedPast += b.ClampedPast
				res.ClampedFuture += b.ClampedFuture
				for _, f := range b.Flows {
					res.Flows = append(res.Flows, vectorFlow{
						Start: vectorTime(f.TimeStart), End: vectorTime(f.TimeEnd),
						Src: vectorAddr(f.SrcAddr), Dst: vectorAddr(f.DstAddr), SrcPort: f.SrcPort, DstPort: f.DstPort,
						Proto: f.Proto, Bytes: f.Bytes, Packets: f.Packets, FwAction: f.FwAction.String(),
						SrcXlate: vectorAddr(f.SrcAddrXlate), DstXlate: vectorAddr(f.DstAddrXlate),
						SrcPortX: f.SrcPortXlate, DstPortX: f.DstPortXlate, EtherType: f.EtherType, Direction: f.Direction,
					})
				}
			}
			got, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join(dir, v.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if diff := gocmp.Diff(string(got), string(want)); diff != "" {
				t.Errorf("%s (-got +want); go test -update rewrites it if intended:\n%s", golden, diff)
			}
		})
	}
}
