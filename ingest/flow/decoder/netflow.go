package decoder

import (
	"encoding/binary"
	"fmt"

	"github.com/flowaudit/flowaudit/schemas"
)

const (
	v5HeaderLen    = 24
	v5RecordLen    = 48
	v9HeaderLen    = 20
	ipfixHeaderLen = 16
	// ntpEpochOffset is the number of seconds between 1900 and 1970.
	ntpEpochOffset = 2208988800
)

var be = binary.BigEndian

// decodeV5 decodes a NetFlow v5 datagram. ObservationID is
// engine_type<<8|engine_id, because v5 flow sequences are kept per engine.
func (d *Decoder) decodeV5(data []byte, out *schemas.FlowBatch) error {
	out.Type = schemas.FlowTypeNetFlowV5
	if len(data) < v5HeaderLen {
		return &DecodeError{Exporter: out.Exporter, Version: 5, Reason: ReasonTruncated,
			Err: fmt.Errorf("%w: %d bytes, v5 header needs %d", ErrTruncated, len(data), v5HeaderLen)}
	}
	count := int(be.Uint16(data[2:]))
	uptime := be.Uint32(data[4:])
	base := uint64(be.Uint32(data[8:]))*1e9 + uint64(be.Uint32(data[12:]))
	out.SequenceNumber = be.Uint32(data[16:])
	out.ObservationID = uint32(data[20])<<8 | uint32(data[21])
	rate := uint32(be.Uint16(data[22:]) & 0x3fff)

	recs := data[v5HeaderLen:]
	var err error
	if avail := len(recs) / v5RecordLen; count > avail {
		err = &DecodeError{Exporter: out.Exporter, Version: 5, ObservationID: out.ObservationID, Reason: ReasonTruncated,
			Err: fmt.Errorf("%w: header announces %d records, datagram holds %d", ErrTruncated, count, avail)}
		count = avail
	}
	out.Flows = growFlows(out.Flows, count)
	for i := 0; i < count; i++ {
		r := recs[i*v5RecordLen : (i+1)*v5RecordLen]
		out.Flows = append(out.Flows, schemas.Flow{
			SrcAddr:      addr4(r[0:4]),
			DstAddr:      addr4(r[4:8]),
			NextHop:      addr4(r[8:12]),
			InIf:         uint32(be.Uint16(r[12:])),
			OutIf:        uint32(be.Uint16(r[14:])),
			Packets:      uint64(be.Uint32(r[16:])),
			Bytes:        uint64(be.Uint32(r[20:])),
			TimeStart:    uptimeToNs(base, uptime, be.Uint32(r[24:])),
			TimeEnd:      uptimeToNs(base, uptime, be.Uint32(r[28:])),
			SrcPort:      be.Uint16(r[32:]),
			DstPort:      be.Uint16(r[34:]),
			TCPFlags:     r[37],
			Proto:        r[38],
			IPTos:        r[39],
			SrcAS:        uint32(be.Uint16(r[40:])),
			DstAS:        uint32(be.Uint16(r[42:])),
			EtherType:    0x0800,
			SamplingRate: rate,
		})
	}
	ctx := recordCtx{baseNs: base, boundNs: d.maxSkewNs}
	for i := range out.Flows {
		ctx.clamp(&out.Flows[i])
	}
	out.ClampedPast, out.ClampedFuture = ctx.past, ctx.future
	return err
}

// decodeV9 decodes a NetFlow v9 datagram (RFC 3954). The header's record
// count is not trusted: flowsets are walked by their lengths.
func (d *Decoder) decodeV9(data []byte, out *schemas.FlowBatch) error {
	out.Type = schemas.FlowTypeNetFlowV9
	if len(data) < v9HeaderLen {
		return &DecodeError{Exporter: out.Exporter, Version: 9, Reason: ReasonTruncated,
			Err: fmt.Errorf("%w: %d bytes, v9 header needs %d", ErrTruncated, len(data), v9HeaderLen)}
	}
	out.SequenceNumber = be.Uint32(data[12:])
	out.ObservationID = be.Uint32(data[16:])
	ctx := recordCtx{
		version:  9,
		baseNs:   uint64(be.Uint32(data[8:])) * 1e9,
		uptimeMs: be.Uint32(data[4:]),
		boundNs:  d.maxSkewNs,
	}
	err := d.decodeSets(&ctx, data[v9HeaderLen:], out)
	out.ClampedPast, out.ClampedFuture = ctx.past, ctx.future
	return err
}

// decodeIPFIX decodes an IPFIX message (RFC 7011). Bytes after the
// message length are ignored; a message longer than the datagram is
// decoded as far as it goes and reported as truncated.
func (d *Decoder) decodeIPFIX(data []byte, out *schemas.FlowBatch) error {
	out.Type = schemas.FlowTypeIPFIX
	if len(data) < ipfixHeaderLen {
		return &DecodeError{Exporter: out.Exporter, Version: 10, Reason: ReasonTruncated,
			Err: fmt.Errorf("%w: %d bytes, IPFIX header needs %d", ErrTruncated, len(data), ipfixHeaderLen)}
	}
	out.SequenceNumber = be.Uint32(data[8:])
	out.ObservationID = be.Uint32(data[12:])
	msgLen := int(be.Uint16(data[2:]))
	if msgLen < ipfixHeaderLen {
		return &DecodeError{Exporter: out.Exporter, Version: 10, ObservationID: out.ObservationID, Reason: ReasonMalformed,
			Err: fmt.Errorf("%w: message length %d shorter than its header", ErrMalformed, msgLen)}
	}
	var truncErr error
	if msgLen > len(data) {
		truncErr = &DecodeError{Exporter: out.Exporter, Version: 10, ObservationID: out.ObservationID, Reason: ReasonTruncated,
			Err: fmt.Errorf("%w: message length %d, datagram %d bytes", ErrTruncated, msgLen, len(data))}
	} else {
		data = data[:msgLen]
	}
	ctx := recordCtx{
		version: 10,
		baseNs:  uint64(be.Uint32(data[4:])) * 1e9,
		boundNs: d.maxSkewNs,
	}
	err := d.decodeSets(&ctx, data[ipfixHeaderLen:], out)
	out.ClampedPast, out.ClampedFuture = ctx.past, ctx.future
	if err != nil {
		return err
	}
	return truncErr
}

// recordCtx is the per-datagram state records are decoded against.
type recordCtx struct {
	dk       domainKey
	domain   domainState // as known to this datagram, updated by options data
	version  uint16
	uptimeMs uint32 // v9 header sysUptime
	baseNs   uint64 // export time
	boundNs  uint64 // flow times further than this from baseNs are clamped; 0: never

	past, future uint32 // flows clamped
}

// clamp bounds f's times to the export time ± the configured bound and
// counts the flow once per direction it was clamped in. A time that far
// off is an exporter's clock or counter gone wrong, not a flow: stored as
// is it would date the flow outside every identity binding and window.
func (ctx *recordCtx) clamp(f *schemas.Flow) {
	if ctx.boundNs == 0 {
		return
	}
	lo, hi := uint64(0), ctx.baseNs+ctx.boundNs
	if ctx.baseNs > ctx.boundNs {
		lo = ctx.baseNs - ctx.boundNs
	}
	var past, future bool
	for _, t := range [2]*uint64{&f.TimeStart, &f.TimeEnd} {
		switch {
		case *t == 0:
		case *t < lo:
			*t, past = lo, true
		case *t > hi:
			*t, future = hi, true
		}
	}
	if past {
		ctx.past++
	}
	if future {
		ctx.future++
	}
}

// decodeSets walks the (flow)sets of a v9 or IPFIX datagram. Failures of
// one set are remembered and the walk goes on, because the other sets are
// independent; the first failure is returned.
func (d *Decoder) decodeSets(ctx *recordCtx, sets []byte, out *schemas.FlowBatch) error {
	version := ctx.version
	ctx.dk = domainKey{exporter: out.Exporter, domain: out.ObservationID, version: version}
	if version == 10 {
		ctx.dk.port = out.ExporterPort // RFC 7011: templates live per transport session
	}
	ctx.domain = d.lookupDomain(ctx.dk)
	tmplSet, optSet := uint16(0), uint16(1)
	if version == 10 {
		tmplSet, optSet = 2, 3
	}

	var first *DecodeError
	fail := func(reason Reason, tid uint16, err error) {
		if first == nil {
			first = &DecodeError{Exporter: out.Exporter, Version: version, ObservationID: out.ObservationID,
				TemplateID: tid, Reason: reason, Err: err}
		}
	}
	for len(sets) > 0 {
		if allZero(sets) {
			break // zero padding after the last set (Palo Alto) is not a set
		}
		if len(sets) < 4 {
			fail(ReasonTruncated, 0, fmt.Errorf("%w: %d trailing bytes, set header needs 4", ErrTruncated, len(sets)))
			break
		}
		id := be.Uint16(sets)
		l := int(be.Uint16(sets[2:]))
		if l < 4 {
			// Without a usable length the rest cannot be delimited.
			fail(ReasonMalformed, 0, fmt.Errorf("%w: set %d has length %d", ErrMalformed, id, l))
			break
		}
		if l > len(sets) {
			fail(ReasonTruncated, 0, fmt.Errorf("%w: set %d of %d bytes, %d left", ErrTruncated, id, l, len(sets)))
			break
		}
		body := sets[4:l]
		sets = sets[l:]
		switch {
		case id == tmplSet:
			if tid, err := d.parseTemplateSet(ctx.dk, body); err != nil {
				fail(reasonOf(err, ReasonMalformed), tid, err)
			}
		case id == optSet:
			if tid, err := d.parseOptionsTemplateSet(ctx.dk, body); err != nil {
				fail(reasonOf(err, ReasonMalformed), tid, err)
			}
		case id >= 256:
			t := d.lookupTemplate(ctx.dk.template(id))
			if t == nil {
				fail(ReasonUnknownTemplate, id, fmt.Errorf("%w: data set %d", ErrUnknownTemplate, id))
				continue
			}
			limit := MaxRecordsPerDatagram - int(out.Records)
			if limit <= 0 {
				fail(ReasonTooManyRecords, id, fmt.Errorf("%w: more than %d records in one datagram", ErrTooManyRecords, MaxRecordsPerDatagram))
				continue
			}
			var err error
			if t.options {
				var n int
				n, err = d.decodeOptionsData(ctx, t, body, limit)
				out.Records += uint32(n)
			} else {
				var n int
				out.Flows, n, err = decodeData(ctx, t, body, out.Flows, limit)
				out.Records += uint32(n)
			}
			if err != nil {
				fail(reasonOf(err, ReasonMalformed), id, err)
			}
		}
		// Set IDs 4-255 are reserved: skipped.
	}
	if first != nil {
		return first
	}
	return nil
}

// parseTemplateSet stores the templates of a v9 (ID 0) or IPFIX (ID 2)
// template set. It returns the offending template ID with an error.
func (d *Decoder) parseTemplateSet(dk domainKey, body []byte) (uint16, error) {
	var buf [64]fieldSpec
	for len(body) >= 4 {
		id := be.Uint16(body)
		count := int(be.Uint16(body[2:]))
		body = body[4:]
		if id == 0 && count == 0 {
			break // padding
		}
		key := dk.template(id)
		if count == 0 && dk.version == 10 {
			// RFC 7011 §8.1: a withdrawal; ID 2 withdraws them all.
			if id == 2 {
				d.removeDomainTemplates(dk)
			} else {
				d.removeTemplate(key)
			}
			continue
		}
		if id < 256 {
			return id, fmt.Errorf("%w: template ID %d below 256", ErrMalformed, id)
		}
		fields, rest, err := readFieldSpecs(dk.version, body, count, buf[:0])
		if err != nil {
			return id, err
		}
		body = rest
		if _, err := d.addTemplate(key, fields, 0, false); err != nil {
			return id, err
		}
	}
	return 0, nil
}

// parseOptionsTemplateSet stores the options templates of a v9 (ID 1) or
// IPFIX (ID 3) set.
func (d *Decoder) parseOptionsTemplateSet(dk domainKey, body []byte) (uint16, error) {
	var buf [64]fieldSpec
	for {
		var id uint16
		var count, scopes int
		if dk.version == 9 {
			if len(body) < 6 {
				return 0, nil // padding
			}
			id = be.Uint16(body)
			scopeLen, optLen := int(be.Uint16(body[2:])), int(be.Uint16(body[4:]))
			body = body[6:]
			if scopeLen%4 != 0 || optLen%4 != 0 {
				return id, fmt.Errorf("%w: options template %d scope length %d, option length %d", ErrMalformed, id, scopeLen, optLen)
			}
			scopes, count = scopeLen/4, (scopeLen+optLen)/4
		} else {
			if len(body) < 6 {
				return 0, nil // padding
			}
			id = be.Uint16(body)
			count, scopes = int(be.Uint16(body[2:])), int(be.Uint16(body[4:]))
			body = body[6:]
			if count == 0 {
				d.removeTemplate(dk.template(id))
				continue
			}
		}
		if id == 0 && count == 0 {
			return 0, nil // padding
		}
		if id < 256 || scopes > count {
			return id, fmt.Errorf("%w: options template %d (%d fields, %d scopes)", ErrMalformed, id, count, scopes)
		}
		fields, rest, err := readFieldSpecs(dk.version, body, count, buf[:0])
		if err != nil {
			return id, err
		}
		body = rest
		key := dk.template(id)
		if _, err := d.addTemplate(key, fields, uint16(scopes), true); err != nil {
			return id, err
		}
	}
}

// readFieldSpecs reads count field specifiers, with IPFIX enterprise
// numbers when the high bit of the type is set.
func readFieldSpecs(version uint16, b []byte, count int, fields []fieldSpec) ([]fieldSpec, []byte, error) {
	for i := 0; i < count; i++ {
		if len(b) < 4 {
			return nil, nil, fmt.Errorf("%w: field specifier %d of %d", ErrTruncated, i, count)
		}
		f := fieldSpec{Type: be.Uint16(b), Length: be.Uint16(b[2:])}
		b = b[4:]
		if version == 10 && f.Type&0x8000 != 0 {
			if len(b) < 4 {
				return nil, nil, fmt.Errorf("%w: enterprise number of field %d", ErrTruncated, i)
			}
			f.Type &= 0x7fff
			f.PEN = be.Uint32(b)
			b = b[4:]
		}
		fields = append(fields, f)
	}
	return fields, b, nil
}

// recordScratch collects the fields of one record that only make sense
// together: 305/306 sampling, responder counters, the station address
// (placed by direction), the firewall's verdict and event times.
type recordScratch struct {
	interval, space      uint64
	revBytes, revPackets uint64
	obsNs                uint64
	sta                  schemas.Addr
	fwdStatus            uint8 // RFC 7270 status: 1 forwarded, 2 dropped, 3 consumed
	fwEvent              uint8
	fwExtEvent           uint16
}

// errTooManyRecords is returned when a set holds more records than the
// datagram's remaining budget.
var errTooManyRecords = &reasonError{ReasonTooManyRecords,
	fmt.Errorf("%w: more than %d records in one datagram", ErrTooManyRecords, MaxRecordsPerDatagram)}

// decodeData appends the flows of one data set to flows, reading at most
// limit records, and returns how many data records it read: a record with
// responder counters yields a second, reverse flow. Trailing bytes
// shorter than a record are padding.
func decodeData(ctx *recordCtx, t *template, body []byte, flows []schemas.Flow, limit int) ([]schemas.Flow, int, error) {
	if t.fixedLen > 0 {
		n := len(body) / t.fixedLen
		var err error
		if n > limit {
			n, err = limit, errTooManyRecords
		}
		flows = growFlows(flows, n)
		for i := 0; i < n; i++ {
			rec := body[i*t.fixedLen : (i+1)*t.fixedLen]
			flows = append(flows, schemas.Flow{})
			f := &flows[len(flows)-1]
			f.SamplingRate, f.EtherType = ctx.domain.samplingRate, t.etype
			var s recordScratch
			for _, o := range t.ops {
				ctx.apply(o.kind, rec[o.off:int(o.off)+int(o.len)], f, &s)
			}
			s.finish(t, f)
			ctx.clamp(f)
			if s.revBytes|s.revPackets != 0 {
				flows = append(flows, reverseFlow(f, &s))
			}
		}
		return flows, n, err
	}
	records := 0
	for ; len(body) >= t.minLen; records++ {
		if records == limit {
			return flows, records, errTooManyRecords
		}
		flows = append(flows, schemas.Flow{})
		f := &flows[len(flows)-1]
		f.SamplingRate, f.EtherType = ctx.domain.samplingRate, t.etype
		var s recordScratch
		p := 0
		for _, o := range t.ops {
			v, next, ok := fieldValue(body, p, o.len)
			if !ok {
				return flows[:len(flows)-1], records, fmt.Errorf("%w: record overruns its data set", ErrMalformed)
			}
			p = next
			if o.kind != kSkip && validLength(o.kind, uint16(len(v))) {
				ctx.apply(o.kind, v, f, &s)
			}
		}
		s.finish(t, f)
		ctx.clamp(f)
		if s.revBytes|s.revPackets != 0 {
			flows = append(flows, reverseFlow(f, &s))
		}
		body = body[p:]
	}
	return flows, records, nil
}

// reverseFlow is the responder's side of a biflow record (initiator and
// responder counters, IE 231/232 and 298/299, or RFC 5103 reverse
// counters): its own flow with the endpoints, ports, post-NAT endpoints,
// interfaces and ASes swapped and the responder's counters. Next hop and
// TCP flags are the forward direction's and are not carried over.
func reverseFlow(f *schemas.Flow, s *recordScratch) schemas.Flow {
	r := *f
	r.SrcAddr, r.DstAddr = f.DstAddr, f.SrcAddr
	r.SrcPort, r.DstPort = f.DstPort, f.SrcPort
	r.SrcAddrXlate, r.DstAddrXlate = f.DstAddrXlate, f.SrcAddrXlate
	r.SrcPortXlate, r.DstPortXlate = f.DstPortXlate, f.SrcPortXlate
	r.InIf, r.OutIf = f.OutIf, f.InIf
	r.SrcAS, r.DstAS = f.DstAS, f.SrcAS
	r.NextHop, r.TCPFlags = schemas.Addr{}, 0
	r.Bytes, r.Packets = s.revBytes, s.revPackets
	return r
}

// fieldValue returns the value of a field of length l (possibly
// variable) starting at body[p], and the offset after it.
func fieldValue(body []byte, p int, l uint16) ([]byte, int, bool) {
	n := int(l)
	if l == varLength {
		if p >= len(body) {
			return nil, 0, false
		}
		n = int(body[p])
		p++
		if n == 255 {
			if p+2 > len(body) {
				return nil, 0, false
			}
			n = int(be.Uint16(body[p:]))
			p += 2
		}
	}
	if p+n > len(body) {
		return nil, 0, false
	}
	return body[p : p+n], p + n, true
}

// finish applies fields that need the whole record.
func (s *recordScratch) finish(t *template, f *schemas.Flow) {
	if s.interval != 0 {
		rate := s.interval
		if t.samplingPair {
			// PSAMP systematic count-based sampling (RFC 5476): interval
			// packets selected out of every interval+space.
			rate = (s.interval + s.space) / s.interval
		}
		f.SamplingRate = clamp32(rate)
	}
	if s.sta != (schemas.Addr{}) {
		// A wireless controller names its client, not the flow's ends:
		// the client sends what enters (direction 0) and receives what
		// leaves (1). A plain address, when present, wins.
		if f.Direction == 1 {
			if f.DstAddr == (schemas.Addr{}) {
				f.DstAddr = s.sta
			}
		} else if f.SrcAddr == (schemas.Addr{}) {
			f.SrcAddr = s.sta
		}
		if f.EtherType == 0 {
			f.EtherType = 0x0800
		}
	}
	if s.fwdStatus|s.fwEvent != 0 || s.fwExtEvent != 0 {
		f.FwAction = fwAction(s)
	}
	if f.TimeStart == 0 && f.TimeEnd == 0 && s.obsNs != 0 {
		// Firewall event records (NSEL) carry the event time only.
		f.TimeStart, f.TimeEnd = s.obsNs, s.obsNs
	}
}

// fwAction decides what the device did: a denial by any element wins
// (NSEL firewallEvent 3 "flow denied", extended events 1001-1999 are
// the reasons of a denial), then RFC 7270 forwardingStatus dropped, then
// forwarded, consumed (the device itself was the destination: the
// traffic was let through to it) or a created, torn-down or updated
// connection.
func fwAction(s *recordScratch) schemas.FwAction {
	switch {
	case s.fwEvent == 3 || (s.fwExtEvent >= 1001 && s.fwExtEvent <= 1999):
		return schemas.FwActionDenied
	case s.fwdStatus == 2:
		return schemas.FwActionDropped
	case s.fwdStatus == 1 || s.fwdStatus == 3 || s.fwEvent == 1 || s.fwEvent == 2 || s.fwEvent == 5:
		return schemas.FwActionForwarded
	}
	return schemas.FwActionNone
}

// forwardingStatus returns the 2-bit status of an RFC 7270
// forwardingStatus value: the top bits of its low byte, where IANA's
// registry puts it (64 forwarded, 128 dropped, 192 consumed, plus reason
// codes), or of its first byte for exporters that put it at the top of a
// 4-byte value.
func forwardingStatus(v []byte) uint8 {
	x := uintN(v)
	if len(v) > 1 && x > 0xff {
		return uint8(x >> (8*len(v) - 2) & 3)
	}
	return uint8(x>>6) & 3
}

// apply stores one field value into f.
func (ctx *recordCtx) apply(k kind, v []byte, f *schemas.Flow, s *recordScratch) {
	switch k {
	case kBytes:
		f.Bytes = uintN(v)
	case kPackets:
		f.Packets = uintN(v)
	// Templates may carry IPv4 and IPv6 addresses (Procera): an all-zero
	// one never overwrites an address already read.
	case kSrc4:
		if be.Uint32(v) != 0 {
			f.SrcAddr, f.EtherType = addr4(v), 0x0800
		} else if f.SrcAddr == (schemas.Addr{}) {
			f.SrcAddr = addr4(v)
		}
	case kDst4:
		if be.Uint32(v) != 0 || f.DstAddr == (schemas.Addr{}) {
			f.DstAddr = addr4(v)
		}
	case kSrc6:
		if !zero16(v) {
			f.SrcAddr, f.EtherType = schemas.Addr(v), 0x86dd
		}
	case kDst6:
		if !zero16(v) {
			f.DstAddr = schemas.Addr(v)
		}
	case kSrcXlate4:
		if be.Uint32(v) != 0 {
			f.SrcAddrXlate = addr4(v)
		}
	case kDstXlate4:
		if be.Uint32(v) != 0 {
			f.DstAddrXlate = addr4(v)
		}
	case kSrcXlate6:
		if !zero16(v) {
			f.SrcAddrXlate = schemas.Addr(v)
		}
	case kDstXlate6:
		if !zero16(v) {
			f.DstAddrXlate = schemas.Addr(v)
		}
	case kSrcPortXlate:
		f.SrcPortXlate = uint16(uintN(v))
	case kDstPortXlate:
		f.DstPortXlate = uint16(uintN(v))
	case kSta4:
		if be.Uint32(v) != 0 {
			s.sta = addr4(v)
		}
	case kRevBytes:
		s.revBytes = uintN(v)
	case kRevPackets:
		s.revPackets = uintN(v)
	case kFwdStatus:
		s.fwdStatus = forwardingStatus(v)
	case kFwEvent:
		s.fwEvent = uint8(uintN(v))
	case kFwExtEvent:
		s.fwExtEvent = uint16(uintN(v))
	case kObsSec:
		s.obsNs = uintN(v) * 1e9
	case kObsMs:
		s.obsNs = uintN(v) * 1e6
	case kObsNTP:
		s.obsNs = ntpToNs(uintN(v))
	case kNextHop4:
		f.NextHop = addr4(v)
	case kNextHop6:
		// Templates may carry both next hops; an all-zero IPv6 one must
		// not hide the IPv4 one.
		if !allZero(v) || f.NextHop == (schemas.Addr{}) {
			f.NextHop = schemas.Addr(v)
		}
	case kSrcPort:
		f.SrcPort = uint16(uintN(v))
	case kDstPort:
		f.DstPort = uint16(uintN(v))
	case kProto:
		f.Proto = uint8(uintN(v))
	case kTCPFlags:
		f.TCPFlags = uint8(uintN(v))
	case kTos:
		f.IPTos = uint8(uintN(v))
	case kDirection:
		f.Direction = uint8(uintN(v))
	case kIPVersion:
		switch uintN(v) {
		case 4:
			f.EtherType = 0x0800
		case 6:
			f.EtherType = 0x86dd
		}
	case kInIf:
		f.InIf = uint32(uintN(v))
	case kOutIf:
		f.OutIf = uint32(uintN(v))
	case kSrcAS:
		f.SrcAS = uint32(uintN(v))
	case kDstAS:
		f.DstAS = uint32(uintN(v))
	case kStartUptime:
		f.TimeStart = ctx.uptimeTime(uint32(uintN(v)))
	case kEndUptime:
		f.TimeEnd = ctx.uptimeTime(uint32(uintN(v)))
	case kStartSec:
		f.TimeStart = uintN(v) * 1e9
	case kEndSec:
		f.TimeEnd = uintN(v) * 1e9
	case kStartMs:
		f.TimeStart = uintN(v) * 1e6
	case kEndMs:
		f.TimeEnd = uintN(v) * 1e6
	case kStartNTP:
		f.TimeStart = ntpToNs(uintN(v))
	case kEndNTP:
		f.TimeEnd = ntpToNs(uintN(v))
	case kStartDeltaUs:
		f.TimeStart = ctx.baseNs - uintN(v)*1e3
	case kEndDeltaUs:
		f.TimeEnd = ctx.baseNs - uintN(v)*1e3
	case kSamplingRate:
		if r := uintN(v); r != 0 {
			f.SamplingRate = clamp32(r)
		}
	case kSamplingInterval:
		s.interval = uintN(v)
	case kSamplingSpace:
		s.space = uintN(v)
	}
}

// uptimeTime converts a sysUpTime-relative millisecond timestamp. In v9
// it is relative to the header's sysUptime; in IPFIX to the exporter's
// systemInitTimeMilliseconds from options data, and without it the export
// time is the best we know. Either way the uptime is a 32-bit counter of
// milliseconds that wraps every 49.7 days, so it is compared with the
// uptime at export as a signed difference modulo 2^32 (uptimeToNs): the
// flow lands within ±24.8 days of its export, whatever the counter did.
func (ctx *recordCtx) uptimeTime(ms uint32) uint64 {
	if ctx.version == 9 {
		return uptimeToNs(ctx.baseNs, ctx.uptimeMs, ms)
	}
	if ctx.domain.sysInitMs != 0 {
		exportUptime := uint32(ctx.baseNs/1e6 - ctx.domain.sysInitMs)
		return uptimeToNs(ctx.baseNs, exportUptime, ms)
	}
	return ctx.baseNs
}

// decodeOptionsData reads sampling rates and the system init time from
// at most limit options data records and makes them the domain's state.
// It returns how many records it read: the IPFIX sequence number counts
// them like flow records.
func (d *Decoder) decodeOptionsData(ctx *recordCtx, t *template, body []byte, limit int) (int, error) {
	n := 0
	for len(body) >= t.minLen {
		if n == limit {
			return n, errTooManyRecords
		}
		n++
		state := ctx.domain
		var rate, interval, space uint64
		p := 0
		for _, o := range t.ops {
			var v []byte
			if t.fixedLen > 0 {
				v = body[o.off : int(o.off)+int(o.len)]
			} else {
				var ok bool
				if v, p, ok = fieldValue(body, p, o.len); !ok {
					return n - 1, fmt.Errorf("%w: options record overruns its data set", ErrMalformed)
				}
			}
			if len(v) < 1 || len(v) > 8 {
				continue
			}
			switch o.kind {
			case kSamplingRate:
				rate = uintN(v)
			case kSamplingInterval:
				interval = uintN(v)
			case kSamplingSpace:
				space = uintN(v)
			case kSysInitMs:
				state.sysInitMs = uintN(v)
			}
		}
		if t.fixedLen > 0 {
			p = t.fixedLen
		}
		body = body[p:]
		switch {
		case interval != 0 && t.samplingPair:
			state.samplingRate = clamp32((interval + space) / interval)
		case interval != 0:
			state.samplingRate = clamp32(interval)
		case rate != 0:
			state.samplingRate = clamp32(rate)
		}
		if state != ctx.domain {
			ctx.domain = state
			d.setDomain(ctx.dk, state)
		}
	}
	return n, nil
}

// uptimeToNs converts a timestamp in exporter uptime milliseconds to Unix
// ns, given the export time base (Unix ns) and the uptime at export. The
// difference is taken modulo 2^32 as a signed number, so uptime wrapping
// (every 49.7 days) and flows stamped just after export both come out right.
func uptimeToNs(base uint64, uptimeMs, ms uint32) uint64 {
	return uint64(int64(base) + int64(int32(ms-uptimeMs))*1e6)
}

// ntpToNs converts an NTP timestamp (RFC 7011 dateTimeMicroseconds and
// dateTimeNanoseconds) to Unix ns; times before 1970 give 0.
func ntpToNs(v uint64) uint64 {
	sec := v >> 32
	if sec < ntpEpochOffset {
		return 0
	}
	return (sec-ntpEpochOffset)*1e9 + (v&0xffffffff)*1e9>>32
}

// uintN reads a big-endian unsigned integer of 1 to 8 bytes (reduced-size
// encoding, RFC 7011 §6.2); longer values keep their last 8 bytes.
func uintN(v []byte) uint64 {
	switch len(v) {
	case 1:
		return uint64(v[0])
	case 2:
		return uint64(be.Uint16(v))
	case 4:
		return uint64(be.Uint32(v))
	case 8:
		return be.Uint64(v)
	}
	var x uint64
	for _, c := range v {
		x = x<<8 | uint64(c)
	}
	return x
}

func clamp32(v uint64) uint32 {
	if v > 0xffffffff {
		return 0xffffffff
	}
	return uint32(v)
}

func addr4(b []byte) schemas.Addr {
	return schemas.Addr{10: 0xff, 11: 0xff, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}
}

// zero16 reports whether a 16-byte value is all zero.
func zero16(v []byte) bool {
	return be.Uint64(v)|be.Uint64(v[8:]) == 0
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// growFlows makes room for n more flows with at most one allocation.
func growFlows(flows []schemas.Flow, n int) []schemas.Flow {
	if n <= 0 || cap(flows)-len(flows) >= n {
		return flows
	}
	grown := make([]schemas.Flow, len(flows), len(flows)+n+len(flows))
	copy(grown, flows)
	return grown
}
