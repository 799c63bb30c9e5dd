package decoder

import (
	"errors"
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
