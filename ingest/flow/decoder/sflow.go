package decoder

import (
	"fmt"

	"github.com/flowaudit/flowaudit/schemas"
)

// sFlow v5 structure numbers (sFlow v5 specification, sflow.org).
const (
	sflowFlowSample         = 1
	sflowExpandedFlowSample = 3
	sflowRawPacketHeader    = 1
	sflowSampledIPv4        = 3
	sflowSampledIPv6        = 4
	sflowExtendedRouter     = 1002
	sflowExtendedGateway    = 1003
	sflowHeaderEthernet     = 1
	sflowHeaderIPv4         = 11
	sflowHeaderIPv6         = 12
)

// cursor reads XDR (4-byte aligned, big-endian) data; a read past the end
// sets bad and returns zeros, so parsers check once per structure.
type cursor struct {
	b   []byte
	off int
	bad bool
}

func (c *cursor) u32() uint32 {
	if c.off+4 > len(c.b) || c.off < 0 {
		c.bad = true
		return 0
	}
	v := be.Uint32(c.b[c.off:])
	c.off += 4
	return v
}

// bytes returns the next n bytes, skipping XDR padding after them.
func (c *cursor) bytes(n int) []byte {
	if n < 0 || c.off+n > len(c.b) {
		c.bad = true
		return nil
	}
	v := c.b[c.off : c.off+n]
	c.off += (n + 3) &^ 3
	if c.off > len(c.b) {
		c.off = len(c.b)
	}
	return v
}

// address reads an sFlow address (type 1 IPv4, 2 IPv6).
func (c *cursor) address() schemas.Addr {
	switch c.u32() {
	case 1:
		if b := c.bytes(4); b != nil {
			return addr4(b)
		}
	case 2:
		if b := c.bytes(16); b != nil {
			return schemas.Addr(b)
		}
	case 0:
		return schemas.Addr{}
	default:
		c.bad = true
	}
	return schemas.Addr{}
}

// DecodeSFlow decodes one sFlow v5 datagram into out (Reset first): one
// flow per flow sample or expanded flow sample, counter samples ignored.
// Addresses, ports, protocol, TOS and TCP flags come from the sampled
// packet header (Ethernet, 802.1Q/QinQ, MPLS, IPv4, IPv6, TCP, UDP) or
// from sampled IPv4/IPv6 records; next hop from extended router data and
// AS numbers from extended gateway data. Bytes is the sampled frame
// length and Packets 1, with the sample's SamplingRate beside them.
// sFlow carries no flow times: TimeStart and TimeEnd are the receive time.
// ObservationID is the sub-agent ID and SequenceNumber the datagram
// sequence number.
func (d *Decoder) DecodeSFlow(exporter schemas.Addr, port uint16, received uint64, data []byte, out *schemas.FlowBatch) error {
	out.Reset()
	out.TimeReceived = received
	out.Exporter = exporter
	out.ExporterPort = port
	out.Type = schemas.FlowTypeSFlow
	// sFlow's sequence counts datagrams; Records is the samples decoded.
	defer func() { out.Records = uint32(len(out.Flows)) }()
	fail := func(reason Reason, err error) error {
		return &DecodeError{Exporter: exporter, Version: 5, ObservationID: out.ObservationID, Reason: reason, Err: err}
	}

	c := cursor{b: data}
	version := c.u32()
	if c.bad {
		return &DecodeError{Exporter: exporter, Reason: ReasonTruncated, Err: fmt.Errorf("%w: %d bytes, no version", ErrTruncated, len(data))}
	}
	if version != 5 {
		return &DecodeError{Exporter: exporter, Version: uint16(min(version, 0xffff)), Reason: ReasonBadVersion,
			Err: fmt.Errorf("%w: sflow version %d", ErrBadVersion, version)}
	}
	c.address() // agent address: the datagram's source is the exporter
	out.ObservationID = c.u32()
	out.SequenceNumber = c.u32()
	c.u32() // uptime
	samples := c.u32()
	if c.bad {
		return fail(ReasonTruncated, fmt.Errorf("%w: sflow header", ErrTruncated))
	}
	// Each sample takes at least 8 bytes: bound the count before trusting it.
	if int64(samples)*8 > int64(len(data)-c.off) {
		return fail(ReasonMalformed, fmt.Errorf("%w: %d samples announced in %d bytes", ErrMalformed, samples, len(data)-c.off))
	}
	out.Flows = growFlows(out.Flows, int(samples))
	for i := uint32(0); i < samples; i++ {
		format := c.u32()
		length := int(c.u32())
		body := c.bytes(length)
		if c.bad {
			return fail(ReasonTruncated, fmt.Errorf("%w: sample %d of %d", ErrTruncated, i, samples))
		}
		if format>>12 != 0 {
			continue // enterprise-specific sample
		}
		switch format {
		case sflowFlowSample, sflowExpandedFlowSample:
			out.Flows = append(out.Flows, schemas.Flow{TimeStart: received, TimeEnd: received, Packets: 1})
			if err := decodeFlowSample(format == sflowExpandedFlowSample, body, &out.Flows[len(out.Flows)-1]); err != nil {
				out.Flows = out.Flows[:len(out.Flows)-1]
				return fail(ReasonMalformed, err)
			}
		}
	}
	return nil
}

// decodeFlowSample fills f from one (expanded) flow sample.
func decodeFlowSample(expanded bool, body []byte, f *schemas.Flow) error {
	c := cursor{b: body}
	c.u32() // sample sequence
	if expanded {
		c.u32() // source ID type
		c.u32() // source ID index
	} else {
		c.u32() // source ID
	}
	f.SamplingRate = c.u32()
	c.u32() // sample pool
	c.u32() // drops
	if expanded {
		if c.u32() == 0 {
			f.InIf = c.u32()
		} else {
			c.u32()
		}
		if c.u32() == 0 {
			f.OutIf = c.u32()
		} else {
			c.u32()
		}
	} else {
		// Compact form: the top two bits give the format; only 0 (an
		// ifIndex) names an interface, the others mean discarded or
		// multiple outputs.
		if in := c.u32(); in>>30 == 0 {
			f.InIf = in
		}
		if out := c.u32(); out>>30 == 0 {
			f.OutIf = out
		}
	}
	records := c.u32()
	if c.bad {
		return fmt.Errorf("%w: flow sample header", ErrTruncated)
	}
	if int64(records)*8 > int64(len(body)-c.off) {
		return fmt.Errorf("%w: %d flow records announced in %d bytes", ErrMalformed, records, len(body)-c.off)
	}
	for i := uint32(0); i < records; i++ {
		format := c.u32()
		rec := c.bytes(int(c.u32()))
		if c.bad {
			return fmt.Errorf("%w: flow record %d of %d", ErrTruncated, i, records)
		}
		if format>>12 != 0 {
			continue
		}
		r := cursor{b: rec}
		switch format {
		case sflowRawPacketHeader:
			proto := r.u32()
			frameLen := r.u32()
			r.u32() // stripped
			hdr := r.bytes(int(r.u32()))
			if r.bad {
				return fmt.Errorf("%w: raw packet header record", ErrTruncated)
			}
			f.Bytes = uint64(frameLen)
			switch proto {
			case sflowHeaderEthernet:
				parseEthernet(hdr, f)
			case sflowHeaderIPv4:
				parseIPv4(hdr, f)
			case sflowHeaderIPv6:
				parseIPv6(hdr, f)
			}
		case sflowSampledIPv4, sflowSampledIPv6:
			length := r.u32()
			proto := r.u32()
			var src, dst schemas.Addr
			if format == sflowSampledIPv4 {
				if s, d := r.bytes(4), r.bytes(4); !r.bad {
					src, dst = addr4(s), addr4(d)
				}
				f.EtherType = 0x0800
			} else {
				if s, d := r.bytes(16), r.bytes(16); !r.bad {
					src, dst = schemas.Addr(s), schemas.Addr(d)
				}
				f.EtherType = 0x86dd
			}
			sport, dport := r.u32(), r.u32()
			flags, tos := r.u32(), r.u32()
			if r.bad {
				return fmt.Errorf("%w: sampled IP record", ErrTruncated)
			}
			f.Bytes, f.Proto, f.SrcAddr, f.DstAddr = uint64(length), uint8(proto), src, dst
			f.SrcPort, f.DstPort, f.TCPFlags, f.IPTos = uint16(sport), uint16(dport), uint8(flags), uint8(tos)
		case sflowExtendedRouter:
			nh := r.address()
			if r.bad {
				return fmt.Errorf("%w: extended router record", ErrMalformed)
			}
			f.NextHop = nh
		case sflowExtendedGateway:
			if err := parseExtendedGateway(&r, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseExtendedGateway takes the AS numbers: the destination AS is the
// last of the AS path (the origin), the source AS the sample's src_as.
func parseExtendedGateway(r *cursor, f *schemas.Flow) error {
	r.address() // BGP next hop
	as := r.u32()
	srcAS := r.u32()
	r.u32() // src peer AS
	segments := r.u32()
	if r.bad || int64(segments)*8 > int64(len(r.b)-r.off) {
		return fmt.Errorf("%w: extended gateway record", ErrMalformed)
	}
	dstAS := as
	for i := uint32(0); i < segments; i++ {
		r.u32() // segment type
		n := r.u32()
		if r.bad || int64(n)*4 > int64(len(r.b)-r.off) {
			return fmt.Errorf("%w: extended gateway AS path", ErrMalformed)
		}
		for j := uint32(0); j < n; j++ {
			dstAS = r.u32()
		}
	}
	if srcAS == 0 {
		srcAS = as
	}
	f.SrcAS, f.DstAS = srcAS, dstAS
	return nil
}

// parseEthernet decodes as much of a sampled frame as is present: a
// header cut short by the exporter's snap length leaves the rest zero.
func parseEthernet(b []byte, f *schemas.Flow) {
	if len(b) < 14 {
		return
	}
	etype := be.Uint16(b[12:])
	b = b[14:]
	// 802.1Q, 802.1ad and the old QinQ tag; at most a few nested tags.
	for i := 0; i < 4 && (etype == 0x8100 || etype == 0x88a8 || etype == 0x9100); i++ {
		if len(b) < 4 {
			return
		}
		etype = be.Uint16(b[2:])
		b = b[4:]
	}
	if etype == 0x8847 || etype == 0x8848 {
		// MPLS: pop labels up to the bottom of the stack, then guess the
		// payload from the IP version nibble as routers do.
		for {
			if len(b) < 4 {
				return
			}
			bottom := b[2]&1 != 0
			b = b[4:]
			if bottom {
				break
			}
		}
		if len(b) == 0 {
			return
		}
		switch b[0] >> 4 {
		case 4:
			etype = 0x0800
		case 6:
			etype = 0x86dd
		}
	}
	switch etype {
	case 0x0800:
		parseIPv4(b, f)
	case 0x86dd:
		parseIPv6(b, f)
	default:
		f.EtherType = etype
	}
}

func parseIPv4(b []byte, f *schemas.Flow) {
	if len(b) < 20 {
		return
	}
	f.EtherType = 0x0800
	f.IPTos = b[1]
	f.Proto = b[9]
	f.SrcAddr = addr4(b[12:16])
	f.DstAddr = addr4(b[16:20])
	if be.Uint16(b[6:])&0x1fff != 0 {
		return // a non-first fragment has no transport header
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || ihl > len(b) {
		return
	}
	parseTransport(b[ihl:], f)
}

func parseIPv6(b []byte, f *schemas.Flow) {
	if len(b) < 40 {
		return
	}
	f.EtherType = 0x86dd
	f.IPTos = b[0]<<4 | b[1]>>4
	next := b[6]
	f.SrcAddr = schemas.Addr(b[8:24])
	f.DstAddr = schemas.Addr(b[24:40])
	b = b[40:]
	// Skip the extension headers that may precede the transport header.
	for i := 0; i < 8; i++ {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 8 {
				f.Proto = next
				return
			}
			n := (int(b[1]) + 1) * 8
			if n > len(b) {
				f.Proto = next
				return
			}
			next, b = b[0], b[n:]
			continue
		case 44: // fragment
			if len(b) < 8 {
				f.Proto = next
				return
			}
			f.Proto = b[0]
			if be.Uint16(b[2:])&0xfff8 != 0 {
				return // not the first fragment
			}
			next, b = b[0], b[8:]
			continue
		}
		break
	}
	f.Proto = next
	parseTransport(b, f)
}

// parseTransport reads ports (TCP, UDP, SCTP, UDP-Lite) and TCP flags.
func parseTransport(b []byte, f *schemas.Flow) {
	switch f.Proto {
	case 6:
		if len(b) >= 14 {
			f.TCPFlags = b[13]
		}
		fallthrough
	case 17, 132, 136:
		if len(b) >= 4 {
			f.SrcPort = be.Uint16(b)
			f.DstPort = be.Uint16(b[2:])
		}
	}
}
