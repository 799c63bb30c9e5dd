package simulate

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"
	"github.com/netsampler/goflow2/v2/decoders/sflow"
	protoproducer "github.com/netsampler/goflow2/v2/producer/proto"

	"github.com/flowaudit/flowaudit/schemas"
)

// decodedDatagram is what goflow2 v2.2.6 makes of one datagram: its
// header fields and the flows its producer derives from the records.
type decodedDatagram struct {
	Sequence      uint32 // v5 flow_sequence, v9/IPFIX/sFlow header sequence
	ObservationID uint32 // v5 engine_type<<8|engine_id, v9 source id, IPFIX domain, sFlow sub-agent
	Templates     int    // v9/IPFIX template and options template records
	OptionsData   int    // v9/IPFIX options data records
	DataRecords   int    // v9/IPFIX flow data records
	SamplingV5    uint16 // v5 raw sampling_interval field
	Agent         string // sFlow agent address
	Samples       []sflow.FlowSample
	Flows         []schemas.Flow
}

// goflowDecoder decodes a stream of datagrams from one exporter with
// goflow2, keeping templates and sampling rates across datagrams as a
// collector would.
type goflowDecoder struct {
	p         Protocol
	templates netflow.NetFlowTemplateSystem
	sampling  protoproducer.SamplingRateSystem
}

func newGoflowDecoder(p Protocol) *goflowDecoder {
	return &goflowDecoder{p: p, templates: netflow.CreateTemplateSystem(), sampling: protoproducer.CreateSamplingSystem()}
}

func (d *goflowDecoder) decode(b []byte) (decodedDatagram, error) {
	var out decodedDatagram
	var msgs []any
	switch d.p {
	case ProtocolNetFlowV5:
		var pkt netflowlegacy.PacketNetFlowV5
		if err := netflowlegacy.DecodeMessageVersion(bytes.NewBuffer(b), &pkt); err != nil {
			return out, err
		}
		out.Sequence = pkt.FlowSequence
		out.ObservationID = uint32(pkt.EngineType)<<8 | uint32(pkt.EngineId)
		out.SamplingV5 = pkt.SamplingInterval
		ms, err := protoproducer.ProcessMessageNetFlowLegacy(&pkt)
		if err != nil {
			return out, err
		}
		for _, m := range ms {
			msgs = append(msgs, m)
		}
	case ProtocolNetFlowV9, ProtocolIPFIX:
		var v9 netflow.NFv9Packet
		var ipfix netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(b), d.templates, &v9, &ipfix); err != nil {
			return out, err
		}
		var sets []any
		if d.p == ProtocolNetFlowV9 {
			if v9.Version != 9 {
				return out, fmt.Errorf("version %d, want 9", v9.Version)
			}
			out.Sequence, out.ObservationID, sets = v9.SequenceNumber, v9.SourceId, v9.FlowSets
			ms, err := protoproducer.ProcessMessageNetFlowV9Config(&v9, d.sampling, nil)
			if err != nil {
				return out, err
			}
			for _, m := range ms {
				msgs = append(msgs, m)
			}
		} else {
			if ipfix.Version != 10 {
				return out, fmt.Errorf("version %d, want 10", ipfix.Version)
			}
			if int(ipfix.Length) != len(b) {
				return out, fmt.Errorf("IPFIX length %d, datagram is %d bytes", ipfix.Length, len(b))
			}
			out.Sequence, out.ObservationID, sets = ipfix.SequenceNumber, ipfix.ObservationDomainId, ipfix.FlowSets
			ms, err := protoproducer.ProcessMessageIPFIXConfig(&ipfix, d.sampling, nil)
			if err != nil {
				return out, err
			}
			for _, m := range ms {
				msgs = append(msgs, m)
			}
		}
		for _, s := range sets {
			switch s := s.(type) {
			case netflow.TemplateFlowSet:
				out.Templates += len(s.Records)
			case netflow.NFv9OptionsTemplateFlowSet:
				out.Templates += len(s.Records)
			case netflow.IPFIXOptionsTemplateFlowSet:
				out.Templates += len(s.Records)
			case netflow.OptionsDataFlowSet:
				out.OptionsData += len(s.Records)
			case netflow.DataFlowSet:
				out.DataRecords += len(s.Records)
			default:
				return out, fmt.Errorf("undecoded set %T", s)
			}
		}
	case ProtocolSFlow:
		var pkt sflow.Packet
		if err := sflow.DecodeMessageVersion(bytes.NewBuffer(b), &pkt); err != nil {
			return out, err
		}
		out.Sequence, out.ObservationID = pkt.SequenceNumber, pkt.SubAgentId
		agent, _ := netip.AddrFromSlice(pkt.AgentIP)
		out.Agent = agent.String()
		for _, s := range pkt.Samples {
			fs, ok := s.(sflow.FlowSample)
			if !ok {
				return out, fmt.Errorf("sample %T, want sflow.FlowSample", s)
			}
			out.Samples = append(out.Samples, fs)
		}
		ms, err := protoproducer.ProcessMessageSFlowConfig(&pkt, nil)
		if err != nil {
			return out, err
		}
		for _, m := range ms {
			msgs = append(msgs, m)
		}
	}
	for _, m := range msgs {
		pm, ok := m.(*protoproducer.ProtoProducerMessage)
		if !ok {
			return out, fmt.Errorf("producer message %T", m)
		}
		out.Flows = append(out.Flows, schemas.Flow{
			TimeStart:    pm.TimeFlowStartNs,
			TimeEnd:      pm.TimeFlowEndNs,
			SrcAddr:      schemas.AddrFromSlice(pm.SrcAddr),
			DstAddr:      schemas.AddrFromSlice(pm.DstAddr),
			NextHop:      schemas.AddrFromSlice(pm.NextHop),
			Bytes:        pm.Bytes,
			Packets:      pm.Packets,
			SamplingRate: uint32(pm.SamplingRate),
			InIf:         pm.InIf,
			OutIf:        pm.OutIf,
			SrcAS:        pm.SrcAs,
			DstAS:        pm.DstAs,
			SrcPort:      uint16(pm.SrcPort),
			DstPort:      uint16(pm.DstPort),
			EtherType:    uint16(pm.Etype),
			Proto:        uint8(pm.Proto),
			TCPFlags:     uint8(pm.TcpFlags),
			IPTos:        uint8(pm.IpTos),
		})
	}
	return out, nil
}

// asDecoded is what a decoder should recover from f exported in p with
// the given sampling rate: the fields p carries, as goflow2 reports them.
func asDecoded(p Protocol, f schemas.Flow, samplingRate uint32) schemas.Flow {
	f.SamplingRate = samplingRate
	f.Direction = 0 // goflow2 does not map flowDirection
	if p == ProtocolSFlow {
		// One sampled packet: no times, routing or AS information.
		f.TimeStart, f.TimeEnd = 0, 0
		f.NextHop = schemas.Addr{}
		f.SrcAS, f.DstAS = 0, 0
		f.Packets = 1
	}
	return f
}
