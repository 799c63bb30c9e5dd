package schemas

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of flow.proto. They are the wire contract; never reuse one.
const (
	fieldFlowTimeStart     = 1
	fieldFlowTimeEnd       = 2
	fieldFlowSrcAddr       = 3
	fieldFlowDstAddr       = 4
	fieldFlowNextHop       = 5
	fieldFlowBytes         = 6
	fieldFlowPackets       = 7
	fieldFlowSamplingRate  = 8
	fieldFlowInIf          = 9
	fieldFlowOutIf         = 10
	fieldFlowSrcAS         = 11
	fieldFlowDstAS         = 12
	fieldFlowSrcPort       = 13
	fieldFlowDstPort       = 14
	fieldFlowEtherType     = 15
	fieldFlowProto         = 16
	fieldFlowTCPFlags      = 17
	fieldFlowIPTos         = 18
	fieldFlowDirection     = 19
	fieldFlowVerdict       = 20
	fieldFlowSrcSegment    = 21
	fieldFlowDstSegment    = 22
	fieldFlowSrcWorkload   = 23
	fieldFlowDstWorkload   = 24
	fieldFlowSrcIdentity   = 25
	fieldFlowDstIdentity   = 26
	fieldFlowRule          = 27
	fieldFlowSrcCountry    = 28
	fieldFlowDstCountry    = 29
	fieldFlowFwAction      = 30
	fieldFlowSrcAddrXlate  = 31
	fieldFlowDstAddrXlate  = 32
	fieldFlowSrcPortXlate  = 33
	fieldFlowDstPortXlate  = 34
	fieldFlowStagedVerdict = 40
	fieldFlowStagedRule    = 41
	fieldFlowServiceSide   = 42
	fieldFlowServicePort   = 43
	fieldFlowSrcIDSource   = 44
	fieldFlowDstIDSource   = 45
	fieldFlowSrcDevice     = 46
	fieldFlowDstDevice     = 47

	fieldBatchTimeReceived   = 1
	fieldBatchExporter       = 2
	fieldBatchExporterPort   = 3
	fieldBatchType           = 4
	fieldBatchObservationID  = 5
	fieldBatchSequenceNumber = 6
	fieldBatchFlows          = 7
)

// ErrMalformed is wrapped by every decoding error of a topic payload.
var ErrMalformed = errors.New("malformed payload")

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendAddrField(b []byte, num protowire.Number, a *Addr) []byte {
	if *a == (Addr{}) {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = append(b, 16)
	return append(b, a[:]...)
}

func flowSize(f *Flow) int {
	n := 0
	vs := func(num protowire.Number, v uint64) {
		if v != 0 {
			n += protowire.SizeTag(num) + protowire.SizeVarint(v)
		}
	}
	as := func(num protowire.Number, a *Addr) {
		if *a != (Addr{}) {
			n += protowire.SizeTag(num) + 1 + 16
		}
	}
	vs(fieldFlowTimeStart, f.TimeStart)
	vs(fieldFlowTimeEnd, f.TimeEnd)
	as(fieldFlowSrcAddr, &f.SrcAddr)
	as(fieldFlowDstAddr, &f.DstAddr)
	as(fieldFlowNextHop, &f.NextHop)
	vs(fieldFlowBytes, f.Bytes)
	vs(fieldFlowPackets, f.Packets)
	vs(fieldFlowSamplingRate, uint64(f.SamplingRate))
	vs(fieldFlowInIf, uint64(f.InIf))
	vs(fieldFlowOutIf, uint64(f.OutIf))
	vs(fieldFlowSrcAS, uint64(f.SrcAS))
	vs(fieldFlowDstAS, uint64(f.DstAS))
	vs(fieldFlowSrcPort, uint64(f.SrcPort))
	vs(fieldFlowDstPort, uint64(f.DstPort))
	vs(fieldFlowEtherType, uint64(f.EtherType))
	vs(fieldFlowProto, uint64(f.Proto))
	vs(fieldFlowTCPFlags, uint64(f.TCPFlags))
	vs(fieldFlowIPTos, uint64(f.IPTos))
	vs(fieldFlowDirection, uint64(f.Direction))
	vs(fieldFlowVerdict, uint64(f.Verdict))
	ss := func(num protowire.Number, s string) {
		if s != "" {
			n += protowire.SizeTag(num) + protowire.SizeBytes(len(s))
		}
	}
	ss(fieldFlowSrcSegment, f.SrcSegment)
	ss(fieldFlowDstSegment, f.DstSegment)
	ss(fieldFlowSrcWorkload, f.SrcWorkload)
	ss(fieldFlowDstWorkload, f.DstWorkload)
	ss(fieldFlowSrcIdentity, f.SrcIdentity)
	ss(fieldFlowDstIdentity, f.DstIdentity)
	ss(fieldFlowRule, f.Rule)
	ss(fieldFlowSrcCountry, f.SrcCountry)
	ss(fieldFlowDstCountry, f.DstCountry)
	vs(fieldFlowFwAction, uint64(f.FwAction))
	as(fieldFlowSrcAddrXlate, &f.SrcAddrXlate)
	as(fieldFlowDstAddrXlate, &f.DstAddrXlate)
	vs(fieldFlowSrcPortXlate, uint64(f.SrcPortXlate))
	vs(fieldFlowDstPortXlate, uint64(f.DstPortXlate))
	vs(fieldFlowStagedVerdict, uint64(f.StagedVerdict))
	ss(fieldFlowStagedRule, f.StagedRule)
	vs(fieldFlowServiceSide, uint64(f.ServiceSide))
	vs(fieldFlowServicePort, uint64(f.ServicePort))
	ss(fieldFlowSrcIDSource, f.SrcIdentitySource)
	ss(fieldFlowDstIDSource, f.DstIdentitySource)
	ss(fieldFlowSrcDevice, f.SrcDevice)
	ss(fieldFlowDstDevice, f.DstDevice)
	return n
}

func appendFlow(b []byte, f *Flow) []byte {
	b = appendVarintField(b, fieldFlowTimeStart, f.TimeStart)
	b = appendVarintField(b, fieldFlowTimeEnd, f.TimeEnd)
	b = appendAddrField(b, fieldFlowSrcAddr, &f.SrcAddr)
	b = appendAddrField(b, fieldFlowDstAddr, &f.DstAddr)
	b = appendAddrField(b, fieldFlowNextHop, &f.NextHop)
	b = appendVarintField(b, fieldFlowBytes, f.Bytes)
	b = appendVarintField(b, fieldFlowPackets, f.Packets)
	b = appendVarintField(b, fieldFlowSamplingRate, uint64(f.SamplingRate))
	b = appendVarintField(b, fieldFlowInIf, uint64(f.InIf))
	b = appendVarintField(b, fieldFlowOutIf, uint64(f.OutIf))
	b = appendVarintField(b, fieldFlowSrcAS, uint64(f.SrcAS))
	b = appendVarintField(b, fieldFlowDstAS, uint64(f.DstAS))
	b = appendVarintField(b, fieldFlowSrcPort, uint64(f.SrcPort))
	b = appendVarintField(b, fieldFlowDstPort, uint64(f.DstPort))
	b = appendVarintField(b, fieldFlowEtherType, uint64(f.EtherType))
	b = appendVarintField(b, fieldFlowProto, uint64(f.Proto))
	b = appendVarintField(b, fieldFlowTCPFlags, uint64(f.TCPFlags))
	b = appendVarintField(b, fieldFlowIPTos, uint64(f.IPTos))
	b = appendVarintField(b, fieldFlowDirection, uint64(f.Direction))
	b = appendVarintField(b, fieldFlowVerdict, uint64(f.Verdict))
	b = appendStringField(b, fieldFlowSrcSegment, f.SrcSegment)
	b = appendStringField(b, fieldFlowDstSegment, f.DstSegment)
	b = appendStringField(b, fieldFlowSrcWorkload, f.SrcWorkload)
	b = appendStringField(b, fieldFlowDstWorkload, f.DstWorkload)
	b = appendStringField(b, fieldFlowSrcIdentity, f.SrcIdentity)
	b = appendStringField(b, fieldFlowDstIdentity, f.DstIdentity)
	b = appendStringField(b, fieldFlowRule, f.Rule)
	b = appendStringField(b, fieldFlowSrcCountry, f.SrcCountry)
	b = appendStringField(b, fieldFlowDstCountry, f.DstCountry)
	b = appendVarintField(b, fieldFlowFwAction, uint64(f.FwAction))
	b = appendAddrField(b, fieldFlowSrcAddrXlate, &f.SrcAddrXlate)
	b = appendAddrField(b, fieldFlowDstAddrXlate, &f.DstAddrXlate)
	b = appendVarintField(b, fieldFlowSrcPortXlate, uint64(f.SrcPortXlate))
	b = appendVarintField(b, fieldFlowDstPortXlate, uint64(f.DstPortXlate))
	b = appendVarintField(b, fieldFlowStagedVerdict, uint64(f.StagedVerdict))
	b = appendStringField(b, fieldFlowStagedRule, f.StagedRule)
	b = appendVarintField(b, fieldFlowServiceSide, uint64(f.ServiceSide))
	b = appendVarintField(b, fieldFlowServicePort, uint64(f.ServicePort))
	b = appendStringField(b, fieldFlowSrcIDSource, f.SrcIdentitySource)
	b = appendStringField(b, fieldFlowDstIDSource, f.DstIdentitySource)
	b = appendStringField(b, fieldFlowSrcDevice, f.SrcDevice)
	b = appendStringField(b, fieldFlowDstDevice, f.DstDevice)
	return b
}

// AppendFlowBatch appends the protobuf encoding of b (flow.proto's
// FlowBatch) to dst and returns the extended slice. It does not allocate
// when dst has enough capacity.
func AppendFlowBatch(dst []byte, b *FlowBatch) []byte {
	dst = appendVarintField(dst, fieldBatchTimeReceived, b.TimeReceived)
	dst = appendAddrField(dst, fieldBatchExporter, &b.Exporter)
	dst = appendVarintField(dst, fieldBatchExporterPort, uint64(b.ExporterPort))
	dst = appendVarintField(dst, fieldBatchType, uint64(b.Type))
	dst = appendVarintField(dst, fieldBatchObservationID, uint64(b.ObservationID))
	dst = appendVarintField(dst, fieldBatchSequenceNumber, uint64(b.SequenceNumber))
	for i := range b.Flows {
		f := &b.Flows[i]
		dst = protowire.AppendTag(dst, fieldBatchFlows, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(flowSize(f)))
		dst = appendFlow(dst, f)
	}
	return dst
}

// UnmarshalFlowBatch decodes a flow.proto FlowBatch into b, reusing
// b.Flows' capacity. Unknown fields are skipped (forward compatibility).
// Errors wrap ErrMalformed.
func UnmarshalFlowBatch(data []byte, b *FlowBatch) error {
	return (*FlowDecoder)(nil).Unmarshal(data, b)
}

// FlowDecoder decodes FlowBatch payloads as UnmarshalFlowBatch does,
// looking decoded labels (segments, rules, identities...) up in a cache
// of its own before the process-wide one, which costs far more per
// string. A decoder belongs to one goroutine; the zero value is ready.
type FlowDecoder struct {
	labels map[string]string
}

// flowDecoderLabels bounds a decoder's cache; past it the cache starts
// again empty.
const flowDecoderLabels = 1 << 14

func (d *FlowDecoder) label(v []byte) string {
	if d == nil {
		return internString(v)
	}
	if s, ok := d.labels[string(v)]; ok {
		return s
	}
	if d.labels == nil {
		d.labels = make(map[string]string)
	} else if len(d.labels) >= flowDecoderLabels {
		clear(d.labels)
	}
	s := internString(v)
	d.labels[s] = s
	return s
}

// Unmarshal decodes data into b, like UnmarshalFlowBatch.
func (d *FlowDecoder) Unmarshal(data []byte, b *FlowBatch) error {
	b.Reset()
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("%w: flow batch tag: %v", ErrMalformed, protowire.ParseError(n))
		}
		data = data[n:]
		if num == fieldBatchFlows && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return fmt.Errorf("%w: flow batch flows: %v", ErrMalformed, protowire.ParseError(n))
			}
			data = data[n:]
			b.Flows = append(b.Flows, Flow{})
			if err := d.unmarshalFlow(v, &b.Flows[len(b.Flows)-1]); err != nil {
				return err
			}
			continue
		}
		if num == fieldBatchExporter && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return fmt.Errorf("%w: flow batch exporter: %v", ErrMalformed, protowire.ParseError(n))
			}
			data = data[n:]
			b.Exporter = AddrFromSlice(v)
			continue
		}
		if typ != protowire.VarintType {
			n := protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return fmt.Errorf("%w: flow batch field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(data)
		if n < 0 {
			return fmt.Errorf("%w: flow batch field %d: %v", ErrMalformed, num, protowire.ParseError(n))
		}
		data = data[n:]
		switch num {
		case fieldBatchTimeReceived:
			b.TimeReceived = v
		case fieldBatchExporterPort:
			b.ExporterPort = uint16(v)
		case fieldBatchType:
			b.Type = FlowType(v)
		case fieldBatchObservationID:
			b.ObservationID = uint32(v)
		case fieldBatchSequenceNumber:
			b.SequenceNumber = uint32(v)
		}
	}
	return nil
}

func (d *FlowDecoder) unmarshalFlow(data []byte, f *Flow) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("%w: flow tag: %v", ErrMalformed, protowire.ParseError(n))
		}
		data = data[n:]
		if typ == protowire.BytesType && (num >= fieldFlowSrcSegment && num <= fieldFlowDstCountry || num == fieldFlowStagedRule ||
			num >= fieldFlowSrcIDSource && num <= fieldFlowDstDevice) {
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return fmt.Errorf("%w: flow field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
			s := d.label(v)
			switch num {
			case fieldFlowSrcSegment:
				f.SrcSegment = s
			case fieldFlowDstSegment:
				f.DstSegment = s
			case fieldFlowSrcWorkload:
				f.SrcWorkload = s
			case fieldFlowDstWorkload:
				f.DstWorkload = s
			case fieldFlowSrcIdentity:
				f.SrcIdentity = s
			case fieldFlowDstIdentity:
				f.DstIdentity = s
			case fieldFlowRule:
				f.Rule = s
			case fieldFlowSrcCountry:
				f.SrcCountry = s
			case fieldFlowStagedRule:
				f.StagedRule = s
			case fieldFlowSrcIDSource:
				f.SrcIdentitySource = s
			case fieldFlowDstIDSource:
				f.DstIdentitySource = s
			case fieldFlowSrcDevice:
				f.SrcDevice = s
			case fieldFlowDstDevice:
				f.DstDevice = s
			default:
				f.DstCountry = s
			}
			continue
		}
		if typ == protowire.BytesType && (num == fieldFlowSrcAddr || num == fieldFlowDstAddr || num == fieldFlowNextHop ||
			num == fieldFlowSrcAddrXlate || num == fieldFlowDstAddrXlate) {
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return fmt.Errorf("%w: flow field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
			a := AddrFromSlice(v)
			switch num {
			case fieldFlowSrcAddr:
				f.SrcAddr = a
			case fieldFlowDstAddr:
				f.DstAddr = a
			case fieldFlowSrcAddrXlate:
				f.SrcAddrXlate = a
			case fieldFlowDstAddrXlate:
				f.DstAddrXlate = a
			default:
				f.NextHop = a
			}
			continue
		}
		if typ != protowire.VarintType {
			n := protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return fmt.Errorf("%w: flow field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(data)
		if n < 0 {
			return fmt.Errorf("%w: flow field %d: %v", ErrMalformed, num, protowire.ParseError(n))
		}
		data = data[n:]
		switch num {
		case fieldFlowTimeStart:
			f.TimeStart = v
		case fieldFlowTimeEnd:
			f.TimeEnd = v
		case fieldFlowBytes:
			f.Bytes = v
		case fieldFlowPackets:
			f.Packets = v
		case fieldFlowSamplingRate:
			f.SamplingRate = uint32(v)
		case fieldFlowInIf:
			f.InIf = uint32(v)
		case fieldFlowOutIf:
			f.OutIf = uint32(v)
		case fieldFlowSrcAS:
			f.SrcAS = uint32(v)
		case fieldFlowDstAS:
			f.DstAS = uint32(v)
		case fieldFlowSrcPort:
			f.SrcPort = uint16(v)
		case fieldFlowDstPort:
			f.DstPort = uint16(v)
		case fieldFlowEtherType:
			f.EtherType = uint16(v)
		case fieldFlowProto:
			f.Proto = uint8(v)
		case fieldFlowTCPFlags:
			f.TCPFlags = uint8(v)
		case fieldFlowIPTos:
			f.IPTos = uint8(v)
		case fieldFlowDirection:
			f.Direction = uint8(v)
		case fieldFlowVerdict:
			f.Verdict = Verdict(v)
		case fieldFlowFwAction:
			f.FwAction = FwAction(v)
		case fieldFlowSrcPortXlate:
			f.SrcPortXlate = uint16(v)
		case fieldFlowDstPortXlate:
			f.DstPortXlate = uint16(v)
		case fieldFlowStagedVerdict:
			f.StagedVerdict = Verdict(v)
		case fieldFlowServiceSide:
			f.ServiceSide = ServiceSide(v)
		case fieldFlowServicePort:
			f.ServicePort = uint16(v)
		}
	}
	return nil
}
