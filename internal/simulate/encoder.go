package simulate

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// Encoder turns flows into export datagrams of one protocol for one
// exporter, keeping that exporter's sequence numbers and template cadence
// across calls. An Encoder is not safe for concurrent use.
type Encoder interface {
	// Encode appends one datagram carrying flows to dst and returns the
	// extended slice; pass dst[:0] to reuse a buffer. len(flows) must not
	// exceed the protocol's limit (30 for NetFlow v5; Run enforces 400 for
	// the others). Encoders read the fields the protocol carries and ignore
	// Flow.SamplingRate (EncoderOptions.SamplingRate is exported instead);
	// see each protocol's constructor for what is not carried.
	Encode(dst []byte, flows []schemas.Flow) []byte
}

// EncoderOptions configures NewEncoder. The zero value works.
type EncoderOptions struct {
	// ObservationID identifies the exporter's observation domain: the v9
	// source ID, the IPFIX observation domain ID, the sFlow sub-agent ID,
	// and for v5 engine_type (bits 8-15) and engine_id (bits 0-7).
	ObservationID uint32
	// SamplingRate is the 1-in-N packet sampling rate to announce; 0 means
	// 1 (no sampling). v5: header sampling_interval (mode 01, 14 bits, so
	// at most 16383); v9 and IPFIX: an options template scoped to the
	// exporter (v9 scope System, IPFIX observationDomainId) with
	// samplingInterval (34) and samplingAlgorithm (35) and its options
	// data record; sFlow: each flow sample's sampling_rate.
	SamplingRate uint32
	// TemplateEvery makes v9 and IPFIX encoders resend their templates and
	// the sampling options data every TemplateEvery datagrams (datagram 0,
	// N, 2N…). 0 sends them only in the first datagram.
	TemplateEvery int
	// AgentAddress is the sFlow agent address (default 127.0.0.1).
	AgentAddress netip.Addr
	// Clock gives export times (default time.Now).
	Clock func() time.Time
	// BootTime is when the simulated exporter booted; NetFlow v5/v9
	// timestamps and the sFlow uptime are relative to it. Default: one hour
	// before Clock() when the encoder is created. Flows that start before
	// BootTime are exported as starting at BootTime.
	BootTime time.Time
}

// NewEncoder returns an encoder for p. It panics on a protocol that
// ParseProtocol would not return: that is a programming error.
func NewEncoder(p Protocol, opts EncoderOptions) Encoder {
	if opts.SamplingRate == 0 {
		opts.SamplingRate = 1
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.BootTime.IsZero() {
		opts.BootTime = opts.Clock().Add(-time.Hour)
	}
	if !opts.AgentAddress.IsValid() {
		opts.AgentAddress = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	base := encoderBase{opts: opts, bootMs: opts.BootTime.UnixMilli()}
	switch p {
	case ProtocolNetFlowV5:
		return &v5Encoder{encoderBase: base}
	case ProtocolNetFlowV9:
		return &netflowEncoder{encoderBase: base, version: 9}
	case ProtocolIPFIX:
		return &netflowEncoder{encoderBase: base, version: 10}
	case ProtocolSFlow:
		return &sflowEncoder{encoderBase: base, sources: make(map[uint32]*sflowSource)}
	}
	panic(fmt.Sprintf("simulate: NewEncoder: unknown protocol %q", string(p)))
}

// encoderBase holds what every encoder needs.
type encoderBase struct {
	opts   EncoderOptions
	bootMs int64 // BootTime in Unix ms
}

// uptimeMs converts a Unix-ns timestamp to ms since boot, clamped to
// [0, 2^32-1].
func (e *encoderBase) uptimeMs(unixNs uint64) uint32 {
	ms := int64(unixNs/1e6) - e.bootMs
	return uint32(max(0, min(ms, 1<<32-1)))
}

// sampledCounters is what a decoder counts for one flow exported in p:
// sFlow counts one packet of frame_length bytes per sample, the NetFlow
// family counts the record's counters.
func sampledCounters(p Protocol, f *schemas.Flow) (bytes, packets uint64) {
	switch p {
	case ProtocolSFlow:
		return uint64(uint32(f.Bytes)), 1
	case ProtocolNetFlowV5:
		return uint64(uint32(f.Bytes)), uint64(uint32(f.Packets))
	}
	return f.Bytes, f.Packets
}

// addr6 returns 2001:db8:site:subnet::host.
func addr6(site, subnet, host uint16) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint16(b[0:], 0x2001)
	binary.BigEndian.PutUint16(b[2:], 0x0db8)
	binary.BigEndian.PutUint16(b[4:], site)
	binary.BigEndian.PutUint16(b[6:], subnet)
	binary.BigEndian.PutUint16(b[14:], host)
	return netip.AddrFrom16(b)
}

// Big-endian append helpers.
func put8(b []byte, v uint8) []byte   { return append(b, v) }
func put16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func put32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func put64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
