package decoder

import (
	"fmt"
	"slices"

	"github.com/flowaudit/flowaudit/schemas"
)

// templateKey identifies a template. Templates are scoped as the RFCs
// say: IPFIX by transport session and observation domain (RFC 7011 §8:
// over UDP the session is the exporter's address and port, so two
// exporters behind one address do not share templates), NetFlow v9 by
// exporter address and source ID (RFC 3954 §5.1; port is 0). The version
// is part of the key because an exporter may speak v9 and IPFIX with the
// same domain numbers, and the same template ID then means different
// things.
type templateKey struct {
	exporter schemas.Addr
	port     uint16 // IPFIX only
	domain   uint32
	id       uint16
	version  uint16
}

// domainKey identifies an exporter's observation domain (v9 source ID),
// scoped like templateKey.
type domainKey struct {
	exporter schemas.Addr
	port     uint16 // IPFIX only
	domain   uint32
	version  uint16
}

// template returns the key of template id in this domain.
func (k domainKey) template(id uint16) templateKey {
	return templateKey{exporter: k.exporter, port: k.port, domain: k.domain, id: id, version: k.version}
}

// domain returns the key of the domain of k.
func (k templateKey) domainKey() domainKey {
	return domainKey{exporter: k.exporter, port: k.port, domain: k.domain, version: k.version}
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
	t, _ := d.templates.get(k)
	return t
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
	if err := d.storeTemplate(k, t); err != nil {
		return nil, err
	}
	d.changed()
	return t, nil
}

// storeTemplate stores t under k within the template limits. Called with
// writeMu held.
func (d *Decoder) storeTemplate(k templateKey, t *template) error {
	if _, ok := d.templates.get(k); !ok {
		if n := d.perExporter[k.exporter]; n >= d.maxPerExporter {
			return &reasonError{ReasonTemplateLimit, fmt.Errorf("%w: exporter %s has %d templates, the limit (ingest.flows.max_templates_per_exporter)",
				ErrTemplateLimit, k.exporter, n)}
		}
		if n := d.templates.len(); n >= d.maxTemplates {
			return &reasonError{ReasonTemplateLimit, fmt.Errorf("%w: %d templates in all, the limit (ingest.flows.max_templates)",
				ErrTemplateLimit, n)}
		}
		d.perExporter[k.exporter]++
	}
	d.templates.set(k, t)
	return nil
}

// forgetTemplates updates the per-exporter counts for removed templates.
// Called with writeMu held.
func (d *Decoder) forgetTemplate(k templateKey) {
	if d.perExporter[k.exporter]--; d.perExporter[k.exporter] <= 0 {
		delete(d.perExporter, k.exporter)
	}
}

// removeTemplate handles IPFIX template withdrawals.
func (d *Decoder) removeTemplate(k templateKey) {
	if d.lookupTemplate(k) == nil {
		return
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	if d.templates.delete(k) {
		d.forgetTemplate(k)
		d.changed()
	}
}

// removeDomainTemplates drops every template of a domain.
func (d *Decoder) removeDomainTemplates(dk domainKey) {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	n := d.templates.deleteIf(func(k templateKey, _ *template) bool {
		if k.domainKey() == dk {
			d.forgetTemplate(k)
			return true
		}
		return false
	})
	if n > 0 {
		d.changed()
	}
}

// lookupDomain returns what is known about a domain.
func (d *Decoder) lookupDomain(k domainKey) domainState {
	s, _ := d.domains.get(k)
	return s
}

// setDomain stores s for k when it differs from what is known. Domains
// are bounded like templates (a domain's state comes from options data,
// which needs an options template): beyond the limit the new state is
// used for the datagram at hand but not kept.
func (d *Decoder) setDomain(k domainKey, s domainState) {
	if d.lookupDomain(k) == s {
		return
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	if _, ok := d.domains.get(k); !ok && d.domains.len() >= d.maxTemplates {
		return
	}
	d.domains.set(k, s)
	d.changed()
}

// changed records a change of templates or domains and wakes the writer
// that persists them (TemplatesChanged), never blocking.
func (d *Decoder) changed() {
	d.generation.Add(1)
	select {
	case d.changedCh <- struct{}{}:
	default:
	}
}
