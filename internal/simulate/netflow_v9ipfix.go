package simulate

import (
	"encoding/binary"

	"github.com/flowaudit/flowaudit/schemas"
)

// Template IDs used by the v9 and IPFIX encoders.
const (
	TemplateIDIPv4     = 256 // IPv4 flow records
	TemplateIDIPv6     = 257 // IPv6 flow records
	TemplateIDSampling = 258 // options: sampling interval and algorithm
)

// Information element IDs (shared by NetFlow v9 and IPFIX).
const (
	ieOctetDeltaCount   = 1
	iePacketDeltaCount  = 2
	ieIPClassOfService  = 5
	ieProtocol          = 4
	ieTCPControlBits    = 6
	ieSrcPort           = 7
	ieSrcIPv4           = 8
	ieIngressInterface  = 10
	ieDstPort           = 11
	ieDstIPv4           = 12
	ieEgressInterface   = 14
	ieNextHopIPv4       = 15
	ieSrcAS             = 16
	ieDstAS             = 17
	ieLastSwitched      = 21 // v9: sysUptime ms of the last packet
	ieFirstSwitched     = 22 // v9: sysUptime ms of the first packet
	ieSrcIPv6           = 27
	ieDstIPv6           = 28
	ieSamplingInterval  = 34
	ieSamplingAlgorithm = 35
	ieFlowDirection     = 61
	ieNextHopIPv6       = 62
	ieObservationDomain = 149 // IPFIX scope
	ieFlowStartMs       = 152 // IPFIX: Unix ms
	ieFlowEndMs         = 153 // IPFIX: Unix ms
	v9ScopeSystem       = 1
)

type ieField struct{ id, length uint16 }

var zero16 [16]byte

// flowFields returns the template fields for one address family; the
// record layout written by appendRecord follows this order.
func flowFields(version uint16, v6 bool) []ieField {
	var f []ieField
	if v6 {
		f = append(f, ieField{ieSrcIPv6, 16}, ieField{ieDstIPv6, 16}, ieField{ieNextHopIPv6, 16})
	} else {
		f = append(f, ieField{ieSrcIPv4, 4}, ieField{ieDstIPv4, 4}, ieField{ieNextHopIPv4, 4})
	}
	f = append(f,
		ieField{ieSrcPort, 2}, ieField{ieDstPort, 2},
		ieField{ieProtocol, 1}, ieField{ieTCPControlBits, 1},
		ieField{ieIPClassOfService, 1}, ieField{ieFlowDirection, 1},
		ieField{ieIngressInterface, 4}, ieField{ieEgressInterface, 4},
		ieField{ieOctetDeltaCount, 8}, ieField{iePacketDeltaCount, 8},
		ieField{ieSrcAS, 4}, ieField{ieDstAS, 4},
	)
	if version == 10 {
		f = append(f, ieField{ieFlowStartMs, 8}, ieField{ieFlowEndMs, 8})
	} else {
		f = append(f, ieField{ieFirstSwitched, 4}, ieField{ieLastSwitched, 4})
	}
	return f
}

// netflowEncoder writes NetFlow v9 (version 9) or IPFIX (version 10)
// datagrams.
//
// Each datagram holds, when templates are due (first datagram, then every
// TemplateEvery): a template set with the IPv4 and IPv6 templates, an
// options template set for sampling, and the sampling options data record;
// then one data set per run of same-family flows, so records keep the
// order of the flows passed in. Every field of schemas.Flow except
// SamplingRate and EtherType (implied by the template) is carried; times
// are v9 sysUptime ms (header unix_secs is the export time rounded up to
// the second and sys_uptime is chosen so that unix_secs*1000 - sys_uptime
// is exactly BootTime) or IPFIX
// flowStart/EndMilliseconds.
//
// Sequence numbers: v9 counts datagrams (the first is 0); IPFIX counts the
// data records sent before this message, options data records included
// (RFC 7011 section 3.1). The v9 header count is the number of records
// (template, options template, data and options data) in the datagram.
type netflowEncoder struct {
	encoderBase
	version   uint16 // 9 or 10
	datagrams uint64
	seq       uint32
	templates []byte // template and options template sets, built once
}

func (e *netflowEncoder) Encode(dst []byte, flows []schemas.Flow) []byte {
	now := e.opts.Clock()
	nowMs := now.UnixMilli()
	start := len(dst)
	records := 0     // v9 header count
	dataRecords := 0 // IPFIX sequence increment
	dst = put16(dst, e.version)
	if e.version == 9 {
		// unix_secs is rounded up so that sys_uptime is at or after every
		// flow's last_switched, and sys_uptime is chosen so that
		// unix_secs*1000 - sys_uptime is exactly BootTime: decoders then
		// recover flow times to the millisecond.
		secs := (nowMs + 999) / 1000
		dst = put16(dst, 0) // count, patched below
		dst = put32(dst, uint32(max(0, secs*1000-e.bootMs)))
		dst = put32(dst, uint32(secs))
		dst = put32(dst, e.seq)
		dst = put32(dst, e.opts.ObservationID)
	} else {
		dst = put16(dst, 0) // length, patched below
		dst = put32(dst, uint32(nowMs/1000))
		dst = put32(dst, e.seq)
		dst = put32(dst, e.opts.ObservationID)
	}

	every := uint64(e.opts.TemplateEvery)
	if e.datagrams == 0 || (every > 0 && e.datagrams%every == 0) {
		if e.templates == nil {
			e.templates = e.appendTemplates(nil)
		}
		dst = append(dst, e.templates...)
		records += 3 // IPv4, IPv6 and sampling options templates
		dst = e.appendSamplingData(dst)
		records++
		dataRecords++
	}

	for i := 0; i < len(flows); {
		v6 := !flows[i].SrcAddr.Is4()
		j := i + 1
		for j < len(flows) && !flows[j].SrcAddr.Is4() == v6 {
			j++
		}
		id := uint16(TemplateIDIPv4)
		if v6 {
			id = TemplateIDIPv6
		}
		set := len(dst)
		dst = put16(dst, id)
		dst = put16(dst, 0)
		for k := i; k < j; k++ {
			dst = e.appendRecord(dst, &flows[k], v6)
		}
		binary.BigEndian.PutUint16(dst[set+2:], uint16(len(dst)-set))
		records += j - i
		dataRecords += j - i
		i = j
	}

	if e.version == 9 {
		binary.BigEndian.PutUint16(dst[start+2:], uint16(records))
		e.seq++
	} else {
		binary.BigEndian.PutUint16(dst[start+2:], uint16(len(dst)-start))
		e.seq += uint32(dataRecords)
	}
	e.datagrams++
	return dst
}

// appendTemplates appends the flow template set (two templates) and the
// sampling options template set (one).
func (e *netflowEncoder) appendTemplates(dst []byte) []byte {
	setID, optSetID := uint16(0), uint16(1)
	if e.version == 10 {
		setID, optSetID = 2, 3
	}
	set := len(dst)
	dst = put16(dst, setID)
	dst = put16(dst, 0)
	for _, t := range []struct {
		id uint16
		v6 bool
	}{{TemplateIDIPv4, false}, {TemplateIDIPv6, true}} {
		fields := flowFields(e.version, t.v6)
		dst = put16(dst, t.id)
		dst = put16(dst, uint16(len(fields)))
		for _, f := range fields {
			dst = put16(dst, f.id)
			dst = put16(dst, f.length)
		}
	}
	binary.BigEndian.PutUint16(dst[set+2:], uint16(len(dst)-set))

	set = len(dst)
	dst = put16(dst, optSetID)
	dst = put16(dst, 0)
	dst = put16(dst, TemplateIDSampling)
	if e.version == 9 {
		dst = put16(dst, 4) // scope length in bytes
		dst = put16(dst, 8) // options length in bytes
		dst = put16(dst, v9ScopeSystem)
		dst = put16(dst, 4)
	} else {
		dst = put16(dst, 3) // field count
		dst = put16(dst, 1) // scope field count
		dst = put16(dst, ieObservationDomain)
		dst = put16(dst, 4)
	}
	dst = put16(dst, ieSamplingInterval)
	dst = put16(dst, 4)
	dst = put16(dst, ieSamplingAlgorithm)
	dst = put16(dst, 1)
	dst = e.pad(dst, set)
	binary.BigEndian.PutUint16(dst[set+2:], uint16(len(dst)-set))
	return dst
}

// appendSamplingData appends the options data set announcing the sampling
// rate. samplingAlgorithm is 1 (deterministic) for 1-in-1, else 2 (random).
func (e *netflowEncoder) appendSamplingData(dst []byte) []byte {
	set := len(dst)
	dst = put16(dst, TemplateIDSampling)
	dst = put16(dst, 0)
	dst = put32(dst, e.opts.ObservationID)
	dst = put32(dst, e.opts.SamplingRate)
	algo := uint8(2)
	if e.opts.SamplingRate == 1 {
		algo = 1
	}
	dst = put8(dst, algo)
	dst = e.pad(dst, set)
	binary.BigEndian.PutUint16(dst[set+2:], uint16(len(dst)-set))
	return dst
}

// pad pads a v9 flowset to a 4-byte boundary, as RFC 3954 asks. The
// padding is shorter than any record, so decoders skip it. IPFIX sets are
// left unpadded (padding is optional there).
func (e *netflowEncoder) pad(dst []byte, set int) []byte {
	if e.version != 9 {
		return dst
	}
	for (len(dst)-set)%4 != 0 {
		dst = append(dst, 0)
	}
	return dst
}

// appendRecord appends one data record in flowFields order.
func (e *netflowEncoder) appendRecord(dst []byte, f *schemas.Flow, v6 bool) []byte {
	if v6 {
		dst = append(dst, f.SrcAddr[:]...)
		dst = append(dst, f.DstAddr[:]...)
		if f.NextHop.Is4() {
			dst = append(dst, zero16[:]...)
		} else {
			dst = append(dst, f.NextHop[:]...)
		}
	} else {
		dst = append(dst, f.SrcAddr[12:16]...)
		dst = append(dst, f.DstAddr[12:16]...)
		if f.NextHop.Is4() {
			dst = append(dst, f.NextHop[12:16]...)
		} else {
			dst = put32(dst, 0)
		}
	}
	dst = put16(dst, f.SrcPort)
	dst = put16(dst, f.DstPort)
	dst = put8(dst, f.Proto)
	dst = put8(dst, f.TCPFlags)
	dst = put8(dst, f.IPTos)
	dst = put8(dst, f.Direction)
	dst = put32(dst, f.InIf)
	dst = put32(dst, f.OutIf)
	dst = put64(dst, f.Bytes)
	dst = put64(dst, f.Packets)
	dst = put32(dst, f.SrcAS)
	dst = put32(dst, f.DstAS)
	if e.version == 10 {
		dst = put64(dst, f.TimeStart/1e6)
		dst = put64(dst, f.TimeEnd/1e6)
	} else {
		dst = put32(dst, e.uptimeMs(f.TimeStart))
		dst = put32(dst, e.uptimeMs(f.TimeEnd))
	}
	return dst
}
