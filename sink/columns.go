package sink

import (
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/schemas"
)

// flowColumns are the columns the sink writes, in the order of the
// columns struct's appendTo. The enrichment columns keep their defaults
// until the enricher fills them.
var flowColumns = []string{
	"time_received", "time_start", "time_end", "flow_type", "exporter", "observation_id",
	"sampling_rate", "src_addr", "dst_addr", "next_hop", "src_port", "dst_port", "proto",
	"bytes", "packets", "tcp_flags", "ip_tos", "in_if", "out_if", "src_as", "dst_as",
	"ether_type", "direction",
	"src_segment", "dst_segment", "src_workload", "dst_workload", "src_identity", "dst_identity", "verdict", "rule",
	"src_country", "dst_country",
	"fw_action", "src_addr_xlate", "dst_addr_xlate", "src_port_xlate", "dst_port_xlate",
	"staged_verdict", "staged_rule", "service_side", "service_port",
	"src_identity_source", "dst_identity_source", "src_device", "dst_device",
	"kafka_partition", "source_partition", "source_offset",
}

// columns are buffered rows in column form, the form the INSERT takes:
// the sink decodes each flow into them once, and appends them to the
// batch's columns from there. Reused between flushes so a steady flow of
// batches allocates little.
type columns struct {
	modern bool // IPv6 and DateTime64(3) columns (ClickHouse >= 23.8)

	timeReceived, timeStart, timeEnd []int64 // seconds; ms for DateTime64(3)
	flowType                         []string
	exporter, src, dst, nextHop      [][16]byte
	obsID, sampling, inIf, outIf     []uint32
	srcAS, dstAS                     []uint32
	srcPort, dstPort, etherType      []uint16
	proto, tcpFlags, ipTos, dir      []uint8
	bytes, packets                   []uint64
	srcSeg, dstSeg, srcWl, dstWl     []string
	srcID, dstID, verdict, rule      []string
	srcCountry, dstCountry           []string
	fwAction                         []string
	srcXlate, dstXlate               [][16]byte
	srcPortXlate, dstPortXlate       []uint16
	stagedVerdict, stagedRule        []string
	serviceSide                      []string
	servicePort                      []uint16
	srcIDSource, dstIDSource         []string
	srcDevice, dstDevice             []string
	kafkaPart, srcPart               []uint16
	srcOff                           []int64

	views [6][][]byte // FixedString(16) views of the address columns
}

func (c *columns) len() int { return len(c.timeReceived) }

var flowTypeNames = func() [256]string {
	var n [256]string
	for i := range n {
		n[i] = schemas.FlowType(i).String()
	}
	return n
}()

func (c *columns) flowTime(ns uint64) int64 {
	if c.modern {
		return int64(ns / 1e6)
	}
	return int64(ns / 1e9)
}

// add appends flow f of batch b, read from input partition part and
// source (srcPart, srcOff).
func (c *columns) add(b *schemas.FlowBatch, f *schemas.Flow, part, srcPart uint16, srcOff int64) {
	c.timeReceived = append(c.timeReceived, int64(b.TimeReceived/1e9))
	// The same dating rule as every other stage (a flow without its own
	// times is dated by its arrival).
	start, end := schemas.FlowSpan(f, b.TimeReceived)
	c.timeStart = append(c.timeStart, c.flowTime(start))
	c.timeEnd = append(c.timeEnd, c.flowTime(end))
	c.flowType = append(c.flowType, flowTypeNames[b.Type])
	c.exporter = append(c.exporter, b.Exporter)
	c.obsID = append(c.obsID, b.ObservationID)
	c.sampling = append(c.sampling, f.SamplingRate)
	c.src = append(c.src, f.SrcAddr)
	c.dst = append(c.dst, f.DstAddr)
	c.nextHop = append(c.nextHop, f.NextHop)
	c.srcPort = append(c.srcPort, f.SrcPort)
	c.dstPort = append(c.dstPort, f.DstPort)
	c.proto = append(c.proto, f.Proto)
	c.bytes = append(c.bytes, f.Bytes)
	c.packets = append(c.packets, f.Packets)
	c.tcpFlags = append(c.tcpFlags, f.TCPFlags)
	c.ipTos = append(c.ipTos, f.IPTos)
	c.inIf = append(c.inIf, f.InIf)
	c.outIf = append(c.outIf, f.OutIf)
	c.srcAS = append(c.srcAS, f.SrcAS)
	c.dstAS = append(c.dstAS, f.DstAS)
	c.etherType = append(c.etherType, f.EtherType)
	c.dir = append(c.dir, f.Direction)
	c.srcSeg = append(c.srcSeg, f.SrcSegment)
	c.dstSeg = append(c.dstSeg, f.DstSegment)
	c.srcWl = append(c.srcWl, f.SrcWorkload)
	c.dstWl = append(c.dstWl, f.DstWorkload)
	c.srcID = append(c.srcID, f.SrcIdentity)
	c.dstID = append(c.dstID, f.DstIdentity)
	c.verdict = append(c.verdict, verdictNames[f.Verdict])
	c.rule = append(c.rule, f.Rule)
	c.srcCountry = append(c.srcCountry, f.SrcCountry)
	c.dstCountry = append(c.dstCountry, f.DstCountry)
	c.fwAction = append(c.fwAction, fwActionNames[f.FwAction])
	c.srcXlate = append(c.srcXlate, f.SrcAddrXlate)
	c.dstXlate = append(c.dstXlate, f.DstAddrXlate)
	c.srcPortXlate = append(c.srcPortXlate, f.SrcPortXlate)
	c.dstPortXlate = append(c.dstPortXlate, f.DstPortXlate)
	c.stagedVerdict = append(c.stagedVerdict, verdictNames[f.StagedVerdict])
	c.stagedRule = append(c.stagedRule, f.StagedRule)
	c.serviceSide = append(c.serviceSide, serviceSideNames[f.ServiceSide])
	c.servicePort = append(c.servicePort, f.ServicePort)
	c.srcIDSource = append(c.srcIDSource, f.SrcIdentitySource)
	c.dstIDSource = append(c.dstIDSource, f.DstIdentitySource)
	c.srcDevice = append(c.srcDevice, f.SrcDevice)
	c.dstDevice = append(c.dstDevice, f.DstDevice)
	c.kafkaPart = append(c.kafkaPart, part)
	c.srcPart = append(c.srcPart, srcPart)
	c.srcOff = append(c.srcOff, srcOff)
}

// all lists a pointer to every column, in flowColumns' order.
func (c *columns) all() []any {
	return []any{
		&c.timeReceived, &c.timeStart, &c.timeEnd, &c.flowType, &c.exporter, &c.obsID,
		&c.sampling, &c.src, &c.dst, &c.nextHop, &c.srcPort, &c.dstPort, &c.proto,
		&c.bytes, &c.packets, &c.tcpFlags, &c.ipTos, &c.inIf, &c.outIf, &c.srcAS, &c.dstAS,
		&c.etherType, &c.dir,
		&c.srcSeg, &c.dstSeg, &c.srcWl, &c.dstWl, &c.srcID, &c.dstID, &c.verdict, &c.rule,
		&c.srcCountry, &c.dstCountry,
		&c.fwAction, &c.srcXlate, &c.dstXlate, &c.srcPortXlate, &c.dstPortXlate,
		&c.stagedVerdict, &c.stagedRule, &c.serviceSide, &c.servicePort,
		&c.srcIDSource, &c.dstIDSource, &c.srcDevice, &c.dstDevice,
		&c.kafkaPart, &c.srcPart, &c.srcOff,
	}
}

// filter keeps the rows from index from on for which keep says so; the
// rows before from stay. keep sees the rows' original indexes.
func (c *columns) filter(from int, keep func(i int) bool) {
	var kept []bool
	for i := from; i < c.len(); i++ {
		kept = append(kept, keep(i))
	}
	for _, col := range c.all() {
		switch s := col.(type) {
		case *[]int64:
			filterRows(s, from, kept)
		case *[]string:
			filterRows(s, from, kept)
		case *[][16]byte:
			filterRows(s, from, kept)
		case *[]uint64:
			filterRows(s, from, kept)
		case *[]uint32:
			filterRows(s, from, kept)
		case *[]uint16:
			filterRows(s, from, kept)
		case *[]uint8:
			filterRows(s, from, kept)
		default:
			panic(fmt.Sprintf("sink: column of type %T", col))
		}
	}
}

// dropFront removes the first n rows.
func (c *columns) dropFront(n int) {
	c.filter(0, func(i int) bool { return i >= n })
}

// truncate keeps the first n rows, leaving the arrays past them as
// they are (a copy of c may still use them).
func (c *columns) truncate(n int) {
	for _, col := range c.all() {
		switch s := col.(type) {
		case *[]int64:
			*s = (*s)[:n]
		case *[]string:
			*s = (*s)[:n]
		case *[][16]byte:
			*s = (*s)[:n]
		case *[]uint64:
			*s = (*s)[:n]
		case *[]uint32:
			*s = (*s)[:n]
		case *[]uint16:
			*s = (*s)[:n]
		case *[]uint8:
			*s = (*s)[:n]
		default:
			panic(fmt.Sprintf("sink: column of type %T", col))
		}
	}
}

func filterRows[T any](s *[]T, from int, kept []bool) {
	rows := *s
	out := rows[:from]
	for i, k := range kept {
		if k {
			out = append(out, rows[from+i])
		}
	}
	clear(rows[len(out):]) // no strings kept alive past the end
	*s = out
}

var serviceSideNames = func() [256]string {
	var n [256]string
	for i := range n {
		n[i] = schemas.ServiceSide(i).String()
	}
	return n
}()

var fwActionNames = func() [256]string {
	var n [256]string
	for i := range n {
		n[i] = schemas.FwAction(i).String()
	}
	return n
}()

var verdictNames = func() [256]string {
	var n [256]string
	for i := range n {
		n[i] = schemas.Verdict(i).String()
	}
	return n
}()

// addrColumn gives an address column in the form its ClickHouse type
// takes without copying the addresses: IPv6 takes [][16]byte,
// FixedString(16) a [][]byte whose elements point into a.
func (c *columns) addrColumn(a [][16]byte, views *[][]byte) any {
	if c.modern {
		return a
	}
	v := (*views)[:0]
	for i := range a {
		v = append(v, a[i][:])
	}
	*views = v
	return v
}

// appendTo appends the first n rows to the batch's columns.
func (c *columns) appendTo(b driver.Batch, n int) error {
	if n < c.len() {
		head := *c
		head.truncate(n)
		err := head.appendTo(b, n)
		c.views = head.views
		return err
	}
	values := []any{
		c.timeReceived, c.timeStart, c.timeEnd, c.flowType, c.addrColumn(c.exporter, &c.views[0]), c.obsID,
		c.sampling, c.addrColumn(c.src, &c.views[1]), c.addrColumn(c.dst, &c.views[2]), c.addrColumn(c.nextHop, &c.views[3]), c.srcPort, c.dstPort, c.proto,
		c.bytes, c.packets, c.tcpFlags, c.ipTos, c.inIf, c.outIf, c.srcAS, c.dstAS,
		c.etherType, c.dir,
		c.srcSeg, c.dstSeg, c.srcWl, c.dstWl, c.srcID, c.dstID, c.verdict, c.rule,
		c.srcCountry, c.dstCountry,
		c.fwAction, c.addrColumn(c.srcXlate, &c.views[4]), c.addrColumn(c.dstXlate, &c.views[5]), c.srcPortXlate, c.dstPortXlate,
		c.stagedVerdict, c.stagedRule, c.serviceSide, c.servicePort,
		c.srcIDSource, c.dstIDSource, c.srcDevice, c.dstDevice,
		c.kafkaPart, c.srcPart, c.srcOff,
	}
	for i, v := range values {
		if err := b.Column(i).Append(v); err != nil {
			return fmt.Errorf("column %s: %w", flowColumns[i], err)
		}
	}
	return nil
}
