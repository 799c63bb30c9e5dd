package decoder

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// The conformance corpus (../shared/conformance beside the repository;
// see its README) holds real exporters' datagrams and another project's
// expected decodings. TestConformanceCorpus decodes all of it and compares
// every flow record on its 5-tuple, bytes and packets.

// corpusExceptions are tests whose goldens flowaudit knowingly differs
// from, with why. They are decoded and reported but do not fail the test.
var corpusExceptions = map[string]string{
	// The header counts 2 records; the datagram holds 3 templates, 1
	// options record and 2 well-formed flow records. The golden keeps no
	// flow; flowaudit walks flowsets by their lengths (the count is not
	// trusted, RFC 3954 §5.1) and keeps both flows.
	"Netflow 9 invalid 01": "header record count contradicts the flowsets; flowaudit keeps the 2 well-formed flows",
	// The capture in reverse order: data sets arrive before the
	// templates that describe them. flowaudit does not hold data back
	// waiting for a template (it counts it as unknown_template); the
	// golden's decoder does.
	"ipfix_cisco.reversed": "data before its templates is counted unknown_template, not buffered",
}

// A golden event whose netflow.source_ipv4_address is 0.0.0.0 beside a
// real source_ipv6_address (Procera sends both, one zero) names 0.0.0.0 as
// source.ip; flowaudit stores the non-zero address (a zero address never
// overwrites a real one), and the comparison expects that.

// corpusDir locates beats/netflow in the conformance corpus
// (testutil.ConformanceDir: ../shared/conformance beside the repository,
// or $FLOWAUDIT_CONFORMANCE).
func corpusDir(t *testing.T) string {
	t.Helper()
	return testutil.ConformanceDir(t, filepath.Join("beats", "netflow"))
}

// corpusRecord is what a flow record is compared on: the 5-tuple, bytes
// and packets, and fw_action (expected from the golden's raw
// forwardingStatus and firewall event elements).
type corpusRecord struct {
	Src, Dst         string // "" when absent
	SrcPort, DstPort uint16
	Proto            uint8
	Bytes, Packets   uint64
	Action           string
}

func (r corpusRecord) String() string {
	return fmt.Sprintf("%s:%d -> %s:%d proto %d, %d bytes, %d packets, fw_action %q", r.Src, r.SrcPort, r.Dst, r.DstPort, r.Proto, r.Bytes, r.Packets, r.Action)
}

func compareRecords(a, b corpusRecord) int {
	return cmp.Or(cmp.Compare(a.Src, b.Src), cmp.Compare(a.Dst, b.Dst), cmp.Compare(a.SrcPort, b.SrcPort),
		cmp.Compare(a.DstPort, b.DstPort), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Bytes, b.Bytes), cmp.Compare(a.Packets, b.Packets),
		cmp.Compare(a.Action, b.Action))
}

func flowRecord(f *schemas.Flow) corpusRecord {
	r := corpusRecord{SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto, Bytes: f.Bytes, Packets: f.Packets, Action: f.FwAction.String()}
	if f.SrcAddr != (schemas.Addr{}) {
		r.Src = f.SrcAddr.String()
	}
	if f.DstAddr != (schemas.Addr{}) {
		r.Dst = f.DstAddr.String()
	}
	return r
}

// goldenEvent is the part of a golden event the comparison reads.
type goldenEvent struct {
	Fields struct {
		Event struct {
			Action string `json:"action"`
		} `json:"event"`
		Source      goldenEnd `json:"source"`
		Destination goldenEnd `json:"destination"`
		Network     struct {
			IANANumber *uint8 `json:"iana_number"`
		} `json:"network"`
		Netflow struct {
			SrcIPv6          string `json:"source_ipv6_address"`
			DstIPv6          string `json:"destination_ipv6_address"`
			ForwardingStatus *int   `json:"forwarding_status"`
			FirewallEvent    *int   `json:"firewall_event"`
			ASAFwEvent       *int   `json:"asa_fw_event"`
			FwExtEvent       *int   `json:"fw_ext_event"`
		} `json:"netflow"`
	} `json:"Fields"`
}

type goldenEnd struct {
	IP      string  `json:"ip"`
	Port    uint16  `json:"port"`
	Bytes   *uint64 `json:"bytes"`
	Packets *uint64 `json:"packets"`
}

// goldenRecords turns a golden's flow events into the records flowaudit
// should produce: the initiator side as the flow itself and, when the
// event carries responder counters, the reverse record flowaudit adds.
func goldenRecords(events []goldenEvent) []corpusRecord {
	var out []corpusRecord
	for _, e := range events {
		f := e.Fields
		if f.Event.Action != "netflow_flow" {
			continue
		}
		r := corpusRecord{Src: realIP(f.Source.IP, f.Netflow.SrcIPv6), Dst: realIP(f.Destination.IP, f.Netflow.DstIPv6),
			SrcPort: f.Source.Port, DstPort: f.Destination.Port}
		if f.Network.IANANumber != nil {
			r.Proto = *f.Network.IANANumber
		}
		r.Action = goldenAction(f.Netflow.ForwardingStatus, f.Netflow.FirewallEvent, f.Netflow.ASAFwEvent, f.Netflow.FwExtEvent)
		if f.Source.Bytes != nil {
			r.Bytes = *f.Source.Bytes
		}
		if f.Source.Packets != nil {
			r.Packets = *f.Source.Packets
		}
		out = append(out, r)
		var rb, rp uint64
		if f.Destination.Bytes != nil {
			rb = *f.Destination.Bytes
		}
		if f.Destination.Packets != nil {
			rp = *f.Destination.Packets
		}
		if rb != 0 || rp != 0 {
			out = append(out, corpusRecord{Src: r.Dst, Dst: r.Src, SrcPort: r.DstPort, DstPort: r.SrcPort, Proto: r.Proto, Bytes: rb, Packets: rp, Action: r.Action})
		}
	}
	return out
}

// goldenAction is the fw_action README documents for the raw elements a
// golden event shows: RFC 7270 forwardingStatus (status in the top 2 bits
// of its 8-bit value: 1 forwarded, 2 dropped, 3 consumed = forwarded) and
// NSEL/IPFIX firewallEvent (1 created, 2 deleted, 5 updated = forwarded;
// 3 denied; extended events 1001-1999 are denial reasons).
func goldenAction(status, event, asaEvent, extEvent *int) string {
	ev := event
	if ev == nil {
		ev = asaEvent
	}
	switch {
	case ev != nil && *ev == 3, extEvent != nil && *extEvent >= 1001 && *extEvent <= 1999:
		return "denied"
	case status != nil && *status>>6&3 == 2:
		return "dropped"
	case status != nil && *status>>6&3 != 0, ev != nil && (*ev == 1 || *ev == 2 || *ev == 5):
		return "forwarded"
	}
	return ""
}

func flowEvents(events []goldenEvent) int {
	n := 0
	for _, e := range events {
		if e.Fields.Event.Action == "netflow_flow" {
			n++
		}
	}
	return n
}

// realIP is the golden's address, or its IPv6 element where the golden
// took an all-zero IPv4 element instead.
func realIP(ip, v6 string) string {
	if ip == "0.0.0.0" && v6 != "" && v6 != "::" {
		return normIP(v6)
	}
	return normIP(ip)
}

func normIP(s string) string {
	if s == "" {
		return ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.Unmap().String()
}

// corpusTest is one named test: datagrams in order, each with its
// exporter, and the golden records.
type corpusTest struct {
	name      string
	datagrams []corpusDatagram
	want      []corpusRecord
	events    int // golden flow events (want adds their responder sides)
}

type corpusDatagram struct {
	exporter schemas.Addr
	data     []byte
}

// splitMessages splits a .dat file: one NetFlow v9 datagram, or IPFIX
// messages back to back (each delimited by its length field).
func splitMessages(b []byte) [][]byte {
	if len(b) < 4 || binary.BigEndian.Uint16(b) != 10 {
		return [][]byte{b}
	}
	var out [][]byte
	for len(b) >= 4 {
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < 16 || n > len(b) {
			out = append(out, b)
			break
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// pcapUDP returns the UDP payloads of a classic pcap file (Ethernet link
// type, IPv4 or IPv6, optional VLAN tags) with their source addresses.
func pcapUDP(t *testing.T, path string) []corpusDatagram {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 {
		t.Fatalf("%s: no pcap header", path)
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		t.Fatalf("%s: not a pcap file", path)
	}
	if link := bo.Uint32(b[20:]); link != 1 {
		t.Fatalf("%s: link type %d, want Ethernet (1)", path, link)
	}
	var out []corpusDatagram
	for p := b[24:]; len(p) >= 16; {
		incl := int(bo.Uint32(p[8:]))
		if 16+incl > len(p) {
			break
		}
		frame := p[16 : 16+incl]
		p = p[16+incl:]
		if len(frame) < 14 {
			continue
		}
		etype, l3 := binary.BigEndian.Uint16(frame[12:]), frame[14:]
		for (etype == 0x8100 || etype == 0x88a8) && len(l3) >= 4 {
			etype, l3 = binary.BigEndian.Uint16(l3[2:]), l3[4:]
		}
		var src schemas.Addr
		var l4 []byte
		switch {
		case etype == 0x0800 && len(l3) >= 20 && l3[9] == 17:
			ihl := int(l3[0]&0x0f) * 4
			total := int(binary.BigEndian.Uint16(l3[2:]))
			if total > len(l3) || ihl > total {
				continue
			}
			src, l4 = schemas.AddrFromSlice(l3[12:16]), l3[ihl:total]
		case etype == 0x86dd && len(l3) >= 40 && l3[6] == 17:
			src, l4 = schemas.AddrFromSlice(l3[8:24]), l3[40:]
		default:
			continue
		}
		if len(l4) < 8 {
			continue
		}
		ulen := int(binary.BigEndian.Uint16(l4[4:]))
		if ulen < 8 || ulen > len(l4) {
			ulen = len(l4)
		}
		out = append(out, corpusDatagram{exporter: src, data: l4[8:ulen]})
	}
	return out
}

// loadCorpus reads every test of dat_tests.yaml and every pcap with a
// golden.
func loadCorpus(t *testing.T, dir string) []corpusTest {
	t.Helper()
	goldens := map[string][]goldenEvent{}
	paths, err := filepath.Glob(filepath.Join(dir, "golden", "*.golden.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no goldens under %s: %v", dir, err)
	}
	for _, p := range paths {
		var g struct {
			TestName string        `json:"test_name"`
			Events   []goldenEvent `json:"events"`
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		key := g.TestName
		if strings.HasSuffix(p, ".pcap.golden.json") {
			key = strings.TrimSuffix(filepath.Base(p), ".golden.json")
		}
		goldens[key] = g.Events
	}

	var spec struct {
		Tests map[string]struct {
			Files []string `yaml:"files"`
		} `yaml:"tests"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "dat_tests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatalf("dat_tests.yaml: %v", err)
	}
	exporter := schemas.AddrFrom4([4]byte{192, 0, 2, 1})
	var tests []corpusTest
	for name, tc := range spec.Tests {
		events, ok := goldens[name]
		if !ok {
			t.Errorf("test %q has no golden", name)
			continue
		}
		ct := corpusTest{name: name, want: goldenRecords(events), events: flowEvents(events)}
		for _, f := range tc.Files {
			data, err := os.ReadFile(filepath.Join(dir, "dat", f))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range splitMessages(data) {
				ct.datagrams = append(ct.datagrams, corpusDatagram{exporter: exporter, data: m})
			}
		}
		tests = append(tests, ct)
	}
	pcaps, _ := filepath.Glob(filepath.Join(dir, "pcap", "*.pcap"))
	for _, p := range pcaps {
		base := filepath.Base(p)
		events, ok := goldens[base]
		if !ok {
			continue
		}
		tests = append(tests, corpusTest{name: strings.TrimSuffix(base, ".pcap"), datagrams: pcapUDP(t, p), want: goldenRecords(events), events: flowEvents(events)})
	}
	slices.SortFunc(tests, func(a, b corpusTest) int { return cmp.Compare(a.name, b.name) })
	return tests
}

// matchRecords pairs got and want as multisets and returns what is left
// of each.
func matchRecords(got, want []corpusRecord) (missing, extra []corpusRecord) {
	left := slices.Clone(got)
	for _, w := range want {
		i := slices.IndexFunc(left, func(g corpusRecord) bool { return g == w })
		if i < 0 {
			missing = append(missing, w)
			continue
		}
		left = slices.Delete(left, i, i+1)
	}
	slices.SortFunc(missing, compareRecords)
	slices.SortFunc(left, compareRecords)
	return missing, left
}

func TestConformanceCorpus(t *testing.T) {
	dir := corpusDir(t)
	tests := loadCorpus(t, dir)
	var records, matched, passed, excepted, unknown, declined, events int
	var exceptRecords, exceptMatched int
	for _, tc := range tests {
		d := New()
		var got []corpusRecord
		var b schemas.FlowBatch
		var errs []string
		for i, dg := range tc.datagrams {
			if err := d.DecodeNetFlow(dg.exporter, 4444, 1, dg.data, &b); err != nil {
				// Data before its template is how these captures begin
				// (the exporter's earlier templates were not captured).
				// YAF also sends templates of DPI sub-records that describe
				// no flow, which the decoder declines; the records
				// compared below show nothing was lost with them.
				var de *DecodeError
				switch {
				case errors.As(err, &de) && de.Reason == ReasonUnknownTemplate:
					unknown++
				case errors.As(err, &de) && de.Reason == ReasonTemplateNoFlowFields:
					declined++
				default:
					errs = append(errs, fmt.Sprintf("datagram %d: %v", i, err))
				}
			}
			for j := range b.Flows {
				got = append(got, flowRecord(&b.Flows[j]))
			}
		}
		missing, extra := matchRecords(got, tc.want)
		records += len(tc.want)
		matched += len(tc.want) - len(missing)
		events += tc.events
		if _, ok := corpusExceptions[tc.name]; ok {
			exceptRecords += len(tc.want)
			exceptMatched += len(tc.want) - len(missing)
		}
		if len(missing) == 0 && len(extra) == 0 && len(errs) == 0 {
			passed++
			continue
		}
		var msg strings.Builder
		fmt.Fprintf(&msg, "%s: %d of %d golden records matched, %d decoded", tc.name, len(tc.want)-len(missing), len(tc.want), len(got))
		for _, r := range missing {
			fmt.Fprintf(&msg, "\n  missing %s", r)
		}
		for _, r := range extra {
			fmt.Fprintf(&msg, "\n  extra   %s", r)
		}
		for _, e := range errs {
			fmt.Fprintf(&msg, "\n  %s", e)
		}
		if why, ok := corpusExceptions[tc.name]; ok {
			excepted++
			t.Logf("documented exception (%s): %s", why, msg.String())
			continue
		}
		t.Error(msg.String())
	}
	t.Logf("conformance corpus: %d of %d tests match exactly (%d documented exceptions); %d golden flow events = %d records with their responder sides: "+
		"%d of %d matched on 5-tuple, bytes, packets and fw_action outside the exceptions, %d of %d in them; %d data sets before their template, %d templates without flow fields declined",
		passed, len(tests), excepted, events, records, matched-exceptMatched, records-exceptRecords, exceptMatched, exceptRecords, unknown, declined)
}
