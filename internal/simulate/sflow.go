package simulate

import (
	"encoding/binary"

	"github.com/flowaudit/flowaudit/schemas"
)

const (
	sflowFCSLen    = 4  // Ethernet FCS, counted in frame_length, stripped from the header
	sflowEthLen    = 14 // Ethernet II header
	sflowFrameOver = sflowEthLen + sflowFCSLen
)

// sflowSource is the per-data-source state of an sFlow agent: samples are
// numbered and pooled per source (here per input interface).
type sflowSource struct {
	seq  uint32 // sample sequence number of the last sample
	pool uint32 // total packets that could have been sampled
}

// sflowEncoder writes sFlow v5 datagrams (sflow.org/sflow_version_5.txt)
// in which every flow is one flow sample (enterprise 0, format 1) with one
// raw packet header record (enterprise 0, format 1, header_protocol 1
// ETHERNET-ISO88023).
//
// Each sample represents one sampled packet: frame_length is Flow.Bytes
// (the Ethernet frame length including the 4-byte FCS, so stripped is 4),
// and a decoder counts it as Bytes = frame_length and Packets = 1,
// whatever Flow.Packets says. The header bytes are a synthetic
// Ethernet + IPv4/IPv6 + TCP/UDP/ICMP header (no payload) whose IP total
// or payload length is frame_length - 18, so it agrees with the frame;
// addresses, ports, protocol, ToS/traffic class and TCP flags come from
// the flow. The sample's source_id is the input interface (type 0), input
// and output are InIf and OutIf, sampling_rate is
// EncoderOptions.SamplingRate, sample_pool grows by SamplingRate per
// sample of that source, drops are 0.
//
// Sequence numbers: the datagram sequence number starts at 1 and counts
// datagrams; each source's sample sequence number starts at 1 and counts
// that source's samples. uptime is ms since BootTime. Times, next hop, AS
// numbers and direction are not carried.
type sflowEncoder struct {
	encoderBase
	seq     uint32
	sources map[uint32]*sflowSource
	hdr     []byte // scratch for the sampled header
}

func (e *sflowEncoder) Encode(dst []byte, flows []schemas.Flow) []byte {
	nowMs := e.opts.Clock().UnixMilli()
	e.seq++
	dst = put32(dst, 5)
	if e.opts.AgentAddress.Is4() {
		a := e.opts.AgentAddress.As4()
		dst = put32(dst, 1)
		dst = append(dst, a[:]...)
	} else {
		a := e.opts.AgentAddress.As16()
		dst = put32(dst, 2)
		dst = append(dst, a[:]...)
	}
	dst = put32(dst, e.opts.ObservationID)
	dst = put32(dst, e.seq)
	dst = put32(dst, uint32(max(0, nowMs-e.bootMs)))
	dst = put32(dst, uint32(len(flows)))

	for i := range flows {
		f := &flows[i]
		src := e.sources[f.InIf]
		if src == nil {
			src = &sflowSource{}
			e.sources[f.InIf] = src
		}
		src.seq++
		src.pool += e.opts.SamplingRate

		e.hdr = appendSampledHeader(e.hdr[:0], f)
		hdrPadded := (len(e.hdr) + 3) &^ 3
		recordLen := 16 + hdrPadded
		sampleLen := 32 + 8 + recordLen

		dst = put32(dst, 1) // enterprise 0, format 1: flow_sample
		dst = put32(dst, uint32(sampleLen))
		dst = put32(dst, src.seq)
		dst = put32(dst, f.InIf&0x00ffffff) // source_id: type 0 (ifIndex)
		dst = put32(dst, e.opts.SamplingRate)
		dst = put32(dst, src.pool)
		dst = put32(dst, 0) // drops
		dst = put32(dst, f.InIf)
		dst = put32(dst, f.OutIf)
		dst = put32(dst, 1) // one flow record

		dst = put32(dst, 1) // enterprise 0, format 1: sampled_header
		dst = put32(dst, uint32(recordLen))
		dst = put32(dst, 1) // header_protocol: ETHERNET-ISO88023
		dst = put32(dst, uint32(f.Bytes))
		dst = put32(dst, sflowFCSLen) // stripped
		dst = put32(dst, uint32(len(e.hdr)))
		dst = append(dst, e.hdr...)
		for range hdrPadded - len(e.hdr) {
			dst = append(dst, 0)
		}
	}
	return dst
}

// appendSampledHeader appends the Ethernet, IP and transport headers of
// the packet f represents. MACs are locally administered and derived from
// the interfaces.
func appendSampledHeader(b []byte, f *schemas.Flow) []byte {
	v6 := !f.SrcAddr.Is4()
	b = append(b, 0x02, 0, 0, 0, byte(f.OutIf>>8), byte(f.OutIf)) // dst MAC
	b = append(b, 0x02, 0, 0, 1, byte(f.InIf>>8), byte(f.InIf))   // src MAC
	if v6 {
		b = put16(b, 0x86dd)
	} else {
		b = put16(b, 0x0800)
	}

	ipLen := int(f.Bytes) - sflowFrameOver
	minLen := 20
	if v6 {
		minLen = 40
	}
	switch f.Proto {
	case 6:
		minLen += 20
	default:
		minLen += 8
	}
	ipLen = max(minLen, min(ipLen, 65535))

	ipStart := len(b)
	if v6 {
		b = put32(b, 6<<28|uint32(f.IPTos)<<20)
		b = put16(b, uint16(ipLen-40))
		b = put8(b, f.Proto)
		b = put8(b, 64)
		b = append(b, f.SrcAddr[:]...)
		b = append(b, f.DstAddr[:]...)
	} else {
		b = put8(b, 0x45)
		b = put8(b, f.IPTos)
		b = put16(b, uint16(ipLen))
		b = put16(b, uint16(f.SrcPort^f.DstPort)) // identification
		b = put16(b, 0x4000)                      // DF
		b = put8(b, 64)
		b = put8(b, f.Proto)
		b = put16(b, 0) // checksum, below
		b = append(b, f.SrcAddr[12:16]...)
		b = append(b, f.DstAddr[12:16]...)
		binary.BigEndian.PutUint16(b[ipStart+10:], ipv4Checksum(b[ipStart:ipStart+20]))
	}
	l4Len := ipLen - (len(b) - ipStart)

	switch f.Proto {
	case 6:
		b = put16(b, f.SrcPort)
		b = put16(b, f.DstPort)
		b = put32(b, 1) // seq
		b = put32(b, 1) // ack
		b = put8(b, 5<<4)
		b = put8(b, f.TCPFlags)
		b = put16(b, 65535) // window
		b = put16(b, 0)     // checksum (not computed)
		b = put16(b, 0)     // urgent
	case 17:
		b = put16(b, f.SrcPort)
		b = put16(b, f.DstPort)
		b = put16(b, uint16(l4Len))
		b = put16(b, 0) // checksum (optional for IPv4, not computed)
	case 1:
		b = append(b, 8, 0, 0, 0, 0, 1, 0, 1) // echo request
	case 58:
		b = append(b, 128, 0, 0, 0, 0, 1, 0, 1) // echo request
	default:
		b = put16(b, f.SrcPort)
		b = put16(b, f.DstPort)
		b = put32(b, 0)
	}
	return b
}

// ipv4Checksum returns the Internet checksum of an IPv4 header whose
// checksum field is zero.
func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
