package simulate

import (
	"encoding/binary"

	"github.com/flowaudit/flowaudit/schemas"
)

const (
	v5HeaderLen  = 24
	v5RecordLen  = 48
	v5MaxRecords = 30
	// v5MaxSamplingInterval is the largest interval the header's 14 bits hold.
	v5MaxSamplingInterval = 1<<14 - 1
)

// v5Encoder writes NetFlow v5 datagrams.
//
// Header: sys_uptime and unix_secs/unix_nsecs give the export time at
// millisecond precision, flow_sequence counts the flows sent before this
// datagram, sampling_interval is mode 01 (packet interval) with
// EncoderOptions.SamplingRate (clamped to 16383). Records carry addresses,
// next hop, interfaces (low 16 bits), counters (low 32 bits), first/last
// as uptime ms, ports, TCP flags, protocol, ToS and AS numbers (low 16
// bits). Masks are 0. Flows that are not IPv4 cannot be carried and are
// skipped; the header count says how many were written.
type v5Encoder struct {
	encoderBase
	flowSeq uint32
}

func (e *v5Encoder) Encode(dst []byte, flows []schemas.Flow) []byte {
	nowMs := e.opts.Clock().UnixMilli()
	start := len(dst)
	dst = put16(dst, 5)
	dst = put16(dst, 0) // count, patched below
	dst = put32(dst, uint32(max(0, nowMs-e.bootMs)))
	dst = put32(dst, uint32(nowMs/1000))
	dst = put32(dst, uint32(nowMs%1000)*1e6)
	dst = put32(dst, e.flowSeq)
	dst = put8(dst, uint8(e.opts.ObservationID>>8))
	dst = put8(dst, uint8(e.opts.ObservationID))
	dst = put16(dst, 1<<14|uint16(min(e.opts.SamplingRate, v5MaxSamplingInterval)))

	count := 0
	for i := range flows {
		f := &flows[i]
		if !f.SrcAddr.Is4() || !f.DstAddr.Is4() || count == v5MaxRecords {
			continue
		}
		count++
		dst = append(dst, f.SrcAddr[12:16]...)
		dst = append(dst, f.DstAddr[12:16]...)
		if f.NextHop.Is4() {
			dst = append(dst, f.NextHop[12:16]...)
		} else {
			dst = put32(dst, 0)
		}
		dst = put16(dst, uint16(f.InIf))
		dst = put16(dst, uint16(f.OutIf))
		dst = put32(dst, uint32(f.Packets))
		dst = put32(dst, uint32(f.Bytes))
		dst = put32(dst, e.uptimeMs(f.TimeStart))
		dst = put32(dst, e.uptimeMs(f.TimeEnd))
		dst = put16(dst, f.SrcPort)
		dst = put16(dst, f.DstPort)
		dst = put8(dst, 0) // pad1
		dst = put8(dst, f.TCPFlags)
		dst = put8(dst, f.Proto)
		dst = put8(dst, f.IPTos)
		dst = put16(dst, uint16(f.SrcAS))
		dst = put16(dst, uint16(f.DstAS))
		dst = put8(dst, 0)  // src_mask
		dst = put8(dst, 0)  // dst_mask
		dst = put16(dst, 0) // pad2
	}
	binary.BigEndian.PutUint16(dst[start+2:], uint16(count))
	e.flowSeq += uint32(count)
	return dst
}
