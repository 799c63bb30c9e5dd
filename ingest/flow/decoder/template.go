package decoder

import (
	"fmt"
	"maps"
	"slices"

	"github.com/flowaudit/flowaudit/schemas"
)

// templateKey identifies a template. The version is part of the key
// because an exporter may speak v9 and IPFIX with the same domain numbers,
// and the same template ID then means different things.
type templateKey struct {
	exporter schemas.Addr
	domain   uint32
	id       uint16
	version  uint16
}

// domainKey identifies an exporter's observation domain (v9 source ID).
type domainKey struct {
	exporter schemas.Addr
	domain   uint32
	version  uint16
}

// domainState is what options data records tell us about a domain.
type domainState struct {
	samplingRate uint32 // 1-in-N, 0 when unknown
	sysInitMs    uint64 // IPFIX systemInitTimeMilliseconds, 0 when unknown
}

// fieldSpec is one field specifier as sent by the exporter. Templates are
// persisted and compared in this raw form; the compiled plan is derived.
type fieldSpec struct {
	Type   uint16 `json:"t"`
	Length uint16 `json:"l"`
	PEN    uint32 `json:"e,omitempty"`
}

// varLength marks an IPFIX variable-length field (RFC 7011 §7).
const varLength = 0xffff

// kind is what a field contributes to a flow or to the domain state.
type kind uint8

const (
	kSkip kind = iota
	kBytes
	kPackets
	kSrc4
	kDst4
	kSrc6
	kDst6
	kNextHop4
	kNextHop6
	kSrcPort
	kDstPort
	kProto
	kTCPFlags
	kTos
	kDirection
	kIPVersion
	kInIf
	kOutIf
	kSrcAS
	kDstAS
	kStartUptime // v9 FIRST_SWITCHED / IPFIX flowStartSysUpTime, ms
	kEndUptime
	kStartSec
	kEndSec
	kStartMs
	kEndMs
	kStartNTP // micro- and nanoseconds: both NTP timestamps
	kEndNTP
	kStartDeltaUs
	kEndDeltaUs
	kSamplingRate     // 34 samplingInterval, 50 samplerRandomInterval
	kSamplingInterval // 305 samplingPacketInterval
	kSamplingSpace    // 306 samplingPacketSpace
	kSysInitMs        // 160 systemInitTimeMilliseconds

	kRevBytes   // responder / reverse octets: 232, RFC 5103 reverse 1 and 85
	kRevPackets // responder / reverse packets: 299, RFC 5103 reverse 2 and 86
	kSta4       // 366 staIPv4Address: the wireless client, source or destination by direction
	kSrcXlate4  // 225 postNATSourceIPv4Address, NSEL 40001
	kDstXlate4  // 226 postNATDestinationIPv4Address, NSEL 40002
	kSrcXlate6  // 281 postNATSourceIPv6Address
	kDstXlate6  // 282 postNATDestinationIPv6Address
	kSrcPortXlate
	kDstPortXlate // 227/228 postNAPT ports, NSEL 40003/40004
	kFwdStatus    // 89 forwardingStatus (RFC 7270)
	kFwEvent      // 233 firewallEvent, NSEL 40005
	kFwExtEvent   // NSEL 33002 extended firewall event
	kObsSec       // 322 observationTimeSeconds: dates event records without flow times
	kObsMs        // 323 observationTimeMilliseconds
	kObsNTP       // 324/325 observationTime Micro-/Nanoseconds
)

// penReverse is the IANA enterprise number of RFC 5103 reverse elements
// (biflows): the reverse direction's counterpart of each IE.
const penReverse = 29305

// op is one compiled step: read len bytes at off and store them as kind.
// For variable-length templates off is unused and fields are walked in
// order.
type op struct {
	off  uint16
	len  uint16
	kind kind
}

// template is a compiled (options) template.
type template struct {
	fields     []fieldSpec
	scopeCount uint16
	options    bool

	// fixedLen is the record length, or 0 when a field is variable-length.
	fixedLen int
	// minLen is the smallest possible record (1 byte per variable field),
	// used to tell padding from a record.
	minLen int
	// ops holds only useful fields for fixed-length templates and every
	// field (kSkip for the useless ones) for variable-length templates.
	ops []op
	// etype is the EtherType implied by the address fields; ipVersion
	// fields override it per record.
	etype uint16
	// samplingPair is set when the template carries 305 and 306, whose
	// ratio gives the rate.
	samplingPair bool
}

// byteSource and packetSource rank counters: the first present wins, so a
// template carrying both inbound and outbound counters reports inbound.
// initiatorOctets/Packets (231/298, Cisco NSEL and AVC) come last: they
// are this record's forward counters when no plain counter is present.
var (
	byteSources   = [...]uint16{1, 85, 23, 231}
	packetSources = [...]uint16{2, 86, 24, 298}
)

// compileTemplate builds the decoding plan for fields. scopeCount leading
// fields are option scopes (never decoded: in v9 their type numbers clash
// with ordinary fields). It returns nil when the template cannot describe
// a record (empty, or a record longer than any datagram).
func compileTemplate(version uint16, fields []fieldSpec, scopeCount uint16, options bool) *template {
	t := &template{fields: fields, scopeCount: scopeCount, options: options}
	variable := false
	minLen, fixed := 0, 0
	for _, f := range fields {
		// Variable length (RFC 7011 §7): IPFIX, and NetFlow v9 exporters
		// that borrowed it (H3C).
		if f.Length == varLength {
			variable = true
			minLen++
			continue
		}
		minLen += int(f.Length)
		fixed += int(f.Length)
	}
	if minLen == 0 || minLen > 65535 {
		return nil
	}
	t.minLen = minLen
	if !variable {
		t.fixedLen = fixed
	}

	// Pick the best counter sources once, so records do not compare.
	bytesFrom, packetsFrom := uint16(0), uint16(0)
	has := func(typ uint16) bool {
		for i, f := range fields {
			if i >= int(scopeCount) && f.PEN == 0 && f.Type == typ {
				return true
			}
		}
		return false
	}
	for _, s := range byteSources {
		if has(s) {
			bytesFrom = s
			break
		}
	}
	for _, s := range packetSources {
		if has(s) {
			packetsFrom = s
			break
		}
	}
	t.samplingPair = has(305) && has(306)

	off := 0
	for i, f := range fields {
		k := kSkip
		if i >= int(scopeCount) && f.PEN == 0 {
			if options {
				k = optionKind(f.Type)
			} else {
				k = dataKind(version, f.Type, bytesFrom, packetsFrom)
			}
		} else if i >= int(scopeCount) && f.PEN == penReverse && !options {
			k = reverseKind(f.Type)
		}
		if k != kSkip && !variable && !validLength(k, f.Length) {
			k = kSkip
		}
		switch k {
		case kSrc4, kDst4:
			if t.etype == 0 {
				t.etype = 0x0800
			}
		case kSrc6, kDst6:
			t.etype = 0x86dd
		}
		if variable || k != kSkip {
			t.ops = append(t.ops, op{off: uint16(off), len: f.Length, kind: k})
		}
		off += int(f.Length)
	}
	return t
}

// validLength reports whether a field of length n can hold kind k; other
// lengths are skipped rather than misread.
func validLength(k kind, n uint16) bool {
	switch k {
	case kSrc4, kDst4, kNextHop4, kSta4, kSrcXlate4, kDstXlate4:
		return n == 4
	case kSrc6, kDst6, kNextHop6, kSrcXlate6, kDstXlate6:
		return n == 16
	}
	return n >= 1 && n <= 8
}

func dataKind(version, typ, bytesFrom, packetsFrom uint16) kind {
	switch typ {
	case 1, 85, 23:
		if typ == bytesFrom {
			return kBytes
		}
	case 2, 86, 24:
		if typ == packetsFrom {
			return kPackets
		}
	case 231:
		if typ == bytesFrom {
			return kBytes
		}
	case 298:
		if typ == packetsFrom {
			return kPackets
		}
	case 232:
		return kRevBytes
	case 299:
		return kRevPackets
	case 366:
		return kSta4
	case 225, 40001:
		return kSrcXlate4
	case 226, 40002:
		return kDstXlate4
	case 281:
		return kSrcXlate6
	case 282:
		return kDstXlate6
	case 227, 40003:
		return kSrcPortXlate
	case 228, 40004:
		return kDstPortXlate
	case 89:
		return kFwdStatus
	case 233, 40005:
		return kFwEvent
	case 33002:
		return kFwExtEvent
	case 322:
		return kObsSec
	case 323:
		return kObsMs
	case 324, 325:
		return kObsNTP
	case 4:
		return kProto
	case 5:
		return kTos
	case 6:
		return kTCPFlags
	case 7:
		return kSrcPort
	case 8:
		return kSrc4
	case 10:
		return kInIf
	case 11:
		return kDstPort
	case 12:
		return kDst4
	case 14:
		return kOutIf
	case 15:
		return kNextHop4
	case 16:
		return kSrcAS
	case 17:
		return kDstAS
	case 21:
		return kEndUptime
	case 22:
		return kStartUptime
	case 27:
		return kSrc6
	case 28:
		return kDst6
	case 34, 50:
		return kSamplingRate
	case 60:
		return kIPVersion
	case 61:
		return kDirection
	case 62:
		return kNextHop6
	case 305:
		return kSamplingInterval
	case 306:
		return kSamplingSpace
	// Absolute times (IANA IPFIX elements, sent in v9 too: Cisco ASA and
	// ASR, Juniper, Palo Alto).
	case 150:
		return kStartSec
	case 151:
		return kEndSec
	case 152:
		return kStartMs
	case 153:
		return kEndMs
	case 154, 156:
		return kStartNTP
	case 155, 157:
		return kEndNTP
	case 158:
		return kStartDeltaUs
	case 159:
		return kEndDeltaUs
	}
	return kSkip
}

// reverseKind maps RFC 5103 reverse elements: only the counters, which
// become the reverse record's.
func reverseKind(typ uint16) kind {
	switch typ {
	case 1, 85:
		return kRevBytes
	case 2, 86:
		return kRevPackets
	}
	return kSkip
}

func optionKind(typ uint16) kind {
	switch typ {
	case 34, 50:
		return kSamplingRate
	case 305:
		return kSamplingInterval
	case 306:
		return kSamplingSpace
	case 160:
		return kSysInitMs
	}
	return kSkip
}

// sameFields reports whether t was compiled from exactly these fields, so
// that periodic template refreshes do not copy the map.
func (t *template) sameFields(fields []fieldSpec, scopeCount uint16, options bool) bool {
	return t.options == options && t.scopeCount == scopeCount && slices.Equal(t.fields, fields)
}

// lookupTemplate returns the template for k, or nil.
func (d *Decoder) lookupTemplate(k templateKey) *template {
	return (*d.templates.Load())[k]
}

// plausible refuses data templates whose records cannot be flows worth
// keeping: records so short that a datagram becomes thousands of rows, or
// records with no field the decoder reads. Options templates are not
// checked: their records are few and never become flows.
func (t *template) plausible(id uint16) error {
	if t.options {
		return nil
	}
	if t.minLen < MinRecordBytes {
		return &reasonError{ReasonTemplateTooSmall, fmt.Errorf("%w: template %d describes %d-byte records, the minimum is %d",
			ErrImplausibleTemplate, id, t.minLen, MinRecordBytes)}
	}
	for _, o := range t.ops {
		if o.kind != kSkip {
			return nil
		}
	}
	return &reasonError{ReasonTemplateNoFlowFields, fmt.Errorf("%w: template %d has no field a flow is made of (addresses, ports, counters, times...)",
		ErrImplausibleTemplate, id)}
}

// addTemplate stores a template unless the same one is already known.
// fields is copied: it may alias the caller's scratch space. It refuses
// templates that describe no usable record and implausible ones.
func (d *Decoder) addTemplate(k templateKey, fields []fieldSpec, scopeCount uint16, options bool) (*template, error) {
	if t := d.lookupTemplate(k); t != nil && t.sameFields(fields, scopeCount, options) {
		return t, nil
	}
	t := compileTemplate(k.version, slices.Clone(fields), scopeCount, options)
	if t == nil {
		kind := "template"
		if options {
			kind = "options template"
		}
		return nil, fmt.Errorf("%w: %s %d describes no usable record", ErrMalformed, kind, k.id)
	}
	if err := t.plausible(k.id); err != nil {
		// The exporter replaced the template: data sets must not be
		// decoded with the old one.
		d.removeTemplate(k)
		return nil, err
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	next := maps.Clone(*d.templates.Load())
	next[k] = t
	d.templates.Store(&next)
	d.generation.Add(1)
	return t, nil
}

// removeTemplate handles IPFIX template withdrawals.
func (d *Decoder) removeTemplate(k templateKey) {
	if d.lookupTemplate(k) == nil {
		return
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	next := maps.Clone(*d.templates.Load())
	delete(next, k)
	d.templates.Store(&next)
	d.generation.Add(1)
}

// lookupDomain returns what is known about a domain.
func (d *Decoder) lookupDomain(k domainKey) domainState {
	return (*d.domains.Load())[k]
}

// setDomain stores s for k when it differs from what is known.
func (d *Decoder) setDomain(k domainKey, s domainState) {
	if d.lookupDomain(k) == s {
		return
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	next := maps.Clone(*d.domains.Load())
	next[k] = s
	d.domains.Store(&next)
	d.generation.Add(1)
}
