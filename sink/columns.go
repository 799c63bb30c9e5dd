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

// columns is one insert's data in column form, reused between flushes so
// a steady flow of batches allocates little.
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

func (c *columns) reset() {
	c.timeReceived, c.timeStart, c.timeEnd = c.timeReceived[:0], c.timeStart[:0], c.timeEnd[:0]
	c.flowType = c.flowType[:0]
	c.exporter, c.src, c.dst, c.nextHop = c.exporter[:0], c.src[:0], c.dst[:0], c.nextHop[:0]
	c.obsID, c.sampling, c.inIf, c.outIf = c.obsID[:0], c.sampling[:0], c.inIf[:0], c.outIf[:0]
	c.srcAS, c.dstAS = c.srcAS[:0], c.dstAS[:0]
	c.srcPort, c.dstPort, c.etherType = c.srcPort[:0], c.dstPort[:0], c.etherType[:0]
	c.proto, c.tcpFlags, c.ipTos, c.dir = c.proto[:0], c.tcpFlags[:0], c.ipTos[:0], c.dir[:0]
	c.bytes, c.packets = c.bytes[:0], c.packets[:0]
	c.srcSeg, c.dstSeg, c.srcWl, c.dstWl = c.srcSeg[:0], c.dstSeg[:0], c.srcWl[:0], c.dstWl[:0]
	c.srcID, c.dstID, c.verdict, c.rule = c.srcID[:0], c.dstID[:0], c.verdict[:0], c.rule[:0]
	c.srcCountry, c.dstCountry = c.srcCountry[:0], c.dstCountry[:0]
	c.fwAction, c.srcXlate, c.dstXlate = c.fwAction[:0], c.srcXlate[:0], c.dstXlate[:0]
	c.srcPortXlate, c.dstPortXlate = c.srcPortXlate[:0], c.dstPortXlate[:0]
	c.stagedVerdict, c.stagedRule = c.stagedVerdict[:0], c.stagedRule[:0]
	c.serviceSide, c.servicePort = c.serviceSide[:0], c.servicePort[:0]
	c.srcIDSource, c.dstIDSource = c.srcIDSource[:0], c.dstIDSource[:0]
	c.srcDevice, c.dstDevice = c.srcDevice[:0], c.dstDevice[:0]
	c.kafkaPart, c.srcPart, c.srcOff = c.kafkaPart[:0], c.srcPart[:0], c.srcOff[:0]
}

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

func (c *columns) add(r *flowRow) {
	f := &r.flow
	c.timeReceived = append(c.timeReceived, int64(r.received/1e9))
	// The same dating rule as every other stage (a flow without its own
	// times is dated by its arrival).
	start, end := schemas.FlowSpan(f, r.received)
	c.timeStart = append(c.timeStart, c.flowTime(start))
	c.timeEnd = append(c.timeEnd, c.flowTime(end))
	c.flowType = append(c.flowType, flowTypeNames[r.typ])
	c.exporter = append(c.exporter, r.exporter)
	c.obsID = append(c.obsID, r.obsID)
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
	c.kafkaPart = append(c.kafkaPart, r.part)
	c.srcPart = append(c.srcPart, r.srcPart)
	c.srcOff = append(c.srcOff, r.srcOff)
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

func (c *columns) appendTo(b driver.Batch) error {
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
