package main

import (
	"context"
	bin "encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
)

// TestFirewallEventsEndToEnd sends Cisco ASA NSEL records (NetFlow v9,
// field numbers from Cisco's NSEL reference) through "flowaudit run": a
// flow-denied event becomes a row with fw_action 'denied' and its
// post-NAT columns, a torn-down connection with initiator and responder
// counters becomes two rows, one per direction, 'forwarded'.
func TestFirewallEventsEndToEnd(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	p.Start()

	be := bin.BigEndian
	now := time.Now()
	// Template 263: src, sport, dst, dport, proto, initiatorOctets,
	// responderOctets, initiatorPackets, responderPackets, NSEL xlate src
	// and dst address, firewall event, extended event, event time (ms).
	fields := []uint16{8, 4, 7, 2, 12, 4, 11, 2, 4, 1, 231, 8, 232, 8, 298, 4, 299, 4, 40001, 4, 40002, 4, 233, 1, 33002, 2, 323, 8}
	tmpl := be.AppendUint16(be.AppendUint16(nil, 263), uint16(len(fields)/2))
	for _, f := range fields {
		tmpl = be.AppendUint16(tmpl, f)
	}
	rec := func(src, dst string, sport, dport uint16, ib, rb uint64, ip, rp uint32, xsrc, xdst string, event uint8, ext uint16) []byte {
		b := append([]byte(nil), net.ParseIP(src).To4()...)
		b = be.AppendUint16(b, sport)
		b = append(b, net.ParseIP(dst).To4()...)
		b = be.AppendUint16(b, dport)
		b = append(b, 6)
		b = be.AppendUint64(be.AppendUint64(b, ib), rb)
		b = be.AppendUint32(be.AppendUint32(b, ip), rp)
		b = append(append(b, net.ParseIP(xsrc).To4()...), net.ParseIP(xdst).To4()...)
		b = be.AppendUint16(append(b, event), ext)
		return be.AppendUint64(b, uint64(now.Add(-2*time.Second).UnixMilli()))
	}
	data := append(rec("198.51.100.23", "10.20.0.5", 40123, 3389, 0, 0, 0, 0, "198.51.100.23", "192.0.2.5", 3, 1001),
		rec("10.1.0.5", "203.0.113.80", 51000, 443, 1200, 64000, 10, 40, "192.0.2.1", "203.0.113.80", 2, 2025)...)
	set := func(id uint16, body []byte) []byte {
		return append(be.AppendUint16(be.AppendUint16(nil, id), uint16(4+len(body))), body...)
	}
	dg := be.AppendUint16(be.AppendUint16(nil, 9), 3)
	dg = be.AppendUint32(be.AppendUint32(dg, 3_600_000), uint32(now.Unix()))
	dg = be.AppendUint32(be.AppendUint32(dg, 1), 0)
	dg = append(append(dg, set(0, tmpl)...), set(263, data)...)
	c, err := net.Dial("udp", p.NetFlowAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(dg); err != nil {
		t.Fatal(err)
	}
	if got := waitFlows(t, ch, 3, 60*time.Second); got != 3 {
		t.Fatalf("rows = %d, want 3", got)
	}
	type row struct {
		Src, Dst, SrcX, DstX, Action string
		SrcPort, DstPort             uint16
		Bytes, Packets               uint64
		Start                        int64
	}
	rows, err := ch.Conn(t).Query(context.Background(), `SELECT IPv6NumToString(src_addr), IPv6NumToString(dst_addr),
		IPv6NumToString(src_addr_xlate), IPv6NumToString(dst_addr_xlate), fw_action, src_port, dst_port, bytes, packets,
		toInt64(toDateTime(time_start)) FROM flowaudit.flows ORDER BY fw_action, bytes`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.Src, &r.Dst, &r.SrcX, &r.DstX, &r.Action, &r.SrcPort, &r.DstPort, &r.Bytes, &r.Packets, &r.Start); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	at := now.Add(-2 * time.Second).Unix()
	want := []row{
		{"::ffff:198.51.100.23", "::ffff:10.20.0.5", "::ffff:198.51.100.23", "::ffff:192.0.2.5", "denied", 40123, 3389, 0, 0, at},
		{"::ffff:10.1.0.5", "::ffff:203.0.113.80", "::ffff:192.0.2.1", "::ffff:203.0.113.80", "forwarded", 51000, 443, 1200, 10, at},
		{"::ffff:203.0.113.80", "::ffff:10.1.0.5", "::ffff:203.0.113.80", "::ffff:192.0.2.1", "forwarded", 443, 51000, 64000, 40, at},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}
}
