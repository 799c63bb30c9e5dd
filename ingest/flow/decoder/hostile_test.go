package decoder

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// poisonIPFIX is the datagram of issue 10: a template describing 1-byte
// records of an unknown field, then a data set filling the datagram.
func poisonIPFIX(size int) []byte {
	tmpl := (&wire{}).u16(300).u16(1).u16(210).u16(1).b // paddingOctets, 1 byte
	data := make([]byte, size)
	return ipfixMessage(1700000000, 0, 1, (&wire{}).set(2, tmpl).b, (&wire{}).set(300, data).b)
}

// TestHostileTemplates checks that implausible templates are refused
// with their reason and that records per datagram are bounded.
func TestHostileTemplates(t *testing.T) {
	manyTmpl := (&wire{}).u16(310).u16(2).u16(8).u16(4).u16(12).u16(4).b // 8-byte records
	many := make([]byte, 8*(MaxRecordsPerDatagram+100))
	unknownOnly := (&wire{}).u16(320).u16(2).u16(210).u16(4).u16(0x8000 | 7).u16(8).u32(9).b // padding, enterprise
	cases := []struct {
		name   string
		data   []byte
		reason Reason
		tid    uint16
		flows  int
	}{
		{"1-byte records", poisonIPFIX(65000), ReasonTemplateTooSmall, 300, 0},
		{"no field a flow is made of", ipfixMessage(1, 0, 1, (&wire{}).set(2, unknownOnly).b, (&wire{}).set(320, make([]byte, 120)).b),
			ReasonTemplateNoFlowFields, 320, 0},
		{"more records than the bound", ipfixMessage(1, 0, 1, (&wire{}).set(2, manyTmpl).b, (&wire{}).set(310, many).b),
			ReasonTooManyRecords, 310, MaxRecordsPerDatagram},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b schemas.FlowBatch
			err := New().DecodeNetFlow(testExporter, 4739, 1, tc.data, &b)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v, want a *DecodeError", err)
			}
			got := struct {
				Reason Reason
				TID    uint16
				Flows  int
			}{de.Reason, de.TemplateID, len(b.Flows)}
			want := struct {
				Reason Reason
				TID    uint16
				Flows  int
			}{tc.reason, tc.tid, tc.flows}
			if diff := gocmp.Diff(got, want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// TestImplausibleTemplateReplacesOld: an exporter that redefines a good
// template as an implausible one must not have its data decoded with the
// old definition.
func TestImplausibleTemplateReplacesOld(t *testing.T) {
	d := New()
	good := (&wire{}).u16(330).u16(2).u16(8).u16(4).u16(1).u16(4).b
	bad := (&wire{}).u16(330).u16(1).u16(210).u16(1).b
	rec := (&wire{}).raw(ip4("10.0.0.1")).u32(1500).b
	var b schemas.FlowBatch
	if err := d.DecodeNetFlow(testExporter, 4739, 1, ipfixMessage(1, 0, 1, (&wire{}).set(2, good).b, (&wire{}).set(330, rec).b), &b); err != nil || len(b.Flows) != 1 {
		t.Fatalf("good template: %d flows, error %v", len(b.Flows), err)
	}
	err := d.DecodeNetFlow(testExporter, 4739, 1, ipfixMessage(1, 0, 1, (&wire{}).set(2, bad).b, (&wire{}).set(330, rec).b), &b)
	if !errors.Is(err, ErrImplausibleTemplate) || len(b.Flows) != 0 {
		t.Fatalf("after the bad template: %d flows, error %v; want none and ErrImplausibleTemplate", len(b.Flows), err)
	}
}

// TestTemplateScope: IPFIX templates belong to the transport session
// (address and port, RFC 7011), so two exporters behind one address with
// the same domain and template ID keep their own; NetFlow v9 templates
// belong to the address and source ID (RFC 3954), whatever the port.
func TestTemplateScope(t *testing.T) {
	d := New()
	// Exporter A: template 400 = bytes (4), src (4). Exporter B, same
	// address, same domain and ID: src (4), bytes (4).
	tmplA := (&wire{}).u16(400).u16(2).u16(1).u16(4).u16(8).u16(4).b
	tmplB := (&wire{}).u16(400).u16(2).u16(8).u16(4).u16(1).u16(4).b
	var b schemas.FlowBatch
	for _, tc := range []struct {
		port uint16
		tmpl []byte
	}{{40001, tmplA}, {40002, tmplB}} {
		if err := d.DecodeNetFlow(testExporter, tc.port, 1, ipfixMessage(1, 0, 5, (&wire{}).set(2, tc.tmpl).b), &b); err != nil {
			t.Fatal(err)
		}
	}
	recA := (&wire{}).u32(1000).raw(ip4("10.0.0.1")).b
	recB := (&wire{}).raw(ip4("10.0.0.2")).u32(2000).b
	type got struct {
		Bytes uint64
		Src   schemas.Addr
	}
	var flows []got
	for _, tc := range []struct {
		port uint16
		rec  []byte
	}{{40001, recA}, {40002, recB}} {
		if err := d.DecodeNetFlow(testExporter, tc.port, 1, ipfixMessage(1, 0, 5, (&wire{}).set(400, tc.rec).b), &b); err != nil {
			t.Fatal(err)
		}
		for _, f := range b.Flows {
			flows = append(flows, got{f.Bytes, f.SrcAddr})
		}
	}
	if diff := gocmp.Diff(flows, []got{{1000, addr("10.0.0.1")}, {2000, addr("10.0.0.2")}}); diff != "" {
		t.Errorf("IPFIX flows of two sessions (-got +want):\n%s", diff)
	}
	// A third port never sent the template.
	err := d.DecodeNetFlow(testExporter, 40003, 1, ipfixMessage(1, 0, 5, (&wire{}).set(400, recA).b), &b)
	if !errors.Is(err, ErrUnknownTemplate) {
		t.Errorf("IPFIX data from another port: %v, want an unknown template", err)
	}

	// NetFlow v9: the source ID scopes, the port does not.
	v9t := (&wire{}).u16(300).u16(2).u16(8).u16(4).u16(1).u16(4).b
	if err := d.DecodeNetFlow(testExporter, 50001, 1, v9Message(1, 1, 0, 9, 1, (&wire{}).set(0, v9t).b), &b); err != nil {
		t.Fatal(err)
	}
	if err := d.DecodeNetFlow(testExporter, 50002, 1, v9Message(1, 1, 1, 9, 1, (&wire{}).set(300, recB).b), &b); err != nil || len(b.Flows) != 1 {
		t.Errorf("v9 data from another port of the same address: %d flows, %v; want 1", len(b.Flows), err)
	}
	if err := d.DecodeNetFlow(testExporter, 50001, 1, v9Message(1, 1, 2, 10, 1, (&wire{}).set(300, recB).b), &b); !errors.Is(err, ErrUnknownTemplate) {
		t.Errorf("v9 data of another source ID: %v, want an unknown template", err)
	}
}

// TestTemplateLimits: templates per exporter address (over all its ports
// and domains) and in all are capped; refreshes of known templates pass.
func TestTemplateLimits(t *testing.T) {
	d := New(WithTemplateLimits(10, 15))
	other := schemas.AddrFrom4([4]byte{192, 0, 2, 2})
	send := func(exporter schemas.Addr, port uint16, id uint16) error {
		tmpl := (&wire{}).u16(id).u16(2).u16(8).u16(4).u16(1).u16(4).b
		var b schemas.FlowBatch
		return d.DecodeNetFlow(exporter, port, 1, ipfixMessage(1, 0, 1, (&wire{}).set(2, tmpl).b), &b)
	}
	refused := 0
	for i := 0; i < 20; i++ {
		// Spread over ports: the limit is per address.
		if err := send(testExporter, uint16(1000+i%3), uint16(256+i)); err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != ReasonTemplateLimit {
				t.Fatalf("template %d: %v, want a template_limit error", i, err)
			}
			refused++
		}
	}
	if refused != 10 || d.TemplateCount() != 10 {
		t.Errorf("%d refused, %d kept; want 10 and 10", refused, d.TemplateCount())
	}
	if err := send(testExporter, 1000, 256); err != nil {
		t.Errorf("refreshing a known template: %v", err)
	}
	for i := 0; i < 10; i++ {
		_ = send(other, 2000, uint16(256+i))
	}
	if d.TemplateCount() != 15 {
		t.Errorf("%d templates kept, want the global limit 15", d.TemplateCount())
	}
	// A withdrawal frees a slot of that exporter.
	var b schemas.FlowBatch
	withdraw := (&wire{}).u16(256).u16(0).b
	if err := d.DecodeNetFlow(testExporter, 1000, 1, ipfixMessage(1, 0, 1, (&wire{}).set(2, withdraw).b), &b); err != nil {
		t.Fatal(err)
	}
	if err := send(other, 2000, 300); err != nil || d.TemplateCount() != 15 {
		t.Errorf("after a withdrawal: %v, %d templates; want room for one more", err, d.TemplateCount())
	}
}

// TestTemplateFileVersion1: a file saved before templates were scoped by
// port still gives its NetFlow v9 templates; its IPFIX ones, whose
// session is unknown, are dropped.
func TestTemplateFileVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "templates.json")
	v1 := `{"version":1,"templates":[
{"exporter":"192.0.2.1","netflow_version":9,"domain":9,"id":300,"fields":[{"t":8,"l":4},{"t":1,"l":4}]},
{"exporter":"192.0.2.1","netflow_version":10,"domain":9,"id":300,"fields":[{"t":8,"l":4},{"t":1,"l":4}]}],"domains":[]}`
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	d := New(WithTemplateFile(path))
	if err := d.LoadTemplates(); err != nil {
		t.Fatal(err)
	}
	if d.TemplateCount() != 1 {
		t.Errorf("%d templates loaded, want the v9 one", d.TemplateCount())
	}
	var b schemas.FlowBatch
	rec := (&wire{}).raw(ip4("10.0.0.2")).u32(2000).b
	if err := d.DecodeNetFlow(testExporter, 2055, 1, v9Message(1, 1, 0, 9, 1, (&wire{}).set(300, rec).b), &b); err != nil || len(b.Flows) != 1 {
		t.Errorf("v9 data after loading a version 1 file: %d flows, %v", len(b.Flows), err)
	}
}

// BenchmarkTemplateFlood measures new templates arriving from many
// exporters: each costs a copy of one store shard, not of every template.
func BenchmarkTemplateFlood(b *testing.B) {
	d := New(WithTemplateLimits(DefaultMaxTemplatesPerExporter, 1<<30))
	var batch schemas.FlowBatch
	tmpl := (&wire{}).u16(256).u16(2).u16(8).u16(4).u16(1).u16(4).b
	msg := ipfixMessage(1, 0, 1, (&wire{}).set(2, tmpl).b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// A new template ID for each of 4096 exporters in turn.
		exporter := schemas.AddrFrom4([4]byte{10, 0, byte(i >> 8 & 0xf), byte(i)})
		id := 256 + i>>12
		msg[20], msg[21] = byte(id>>8), byte(id)
		if err := d.DecodeNetFlow(exporter, 4739, 1, msg, &batch); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(d.TemplateCount()), "templates")
}
