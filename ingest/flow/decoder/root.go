// Package decoder turns NetFlow v5, NetFlow v9, IPFIX and sFlow v5
// datagrams into schemas.FlowBatch values.
//
// The decoder is pure: bytes in, flows out, no I/O on the decode path.
// Templates and per-exporter sampling rates learnt from NetFlow v9 and IPFIX
// are kept in sharded copy-on-write maps behind atomic pointers, so the
// many datagrams that only carry data cost one atomic load and a map lookup
// per set; only a new or changed template takes a lock and copies one
// shard. Templates are bounded per exporter and in all, and records per
// datagram are bounded too: what one hostile datagram can cost is fixed.
// Each
// template is compiled once into a flat list of (offset, length, target)
// operations, so decoding a record is a loop over that list with
// binary.BigEndian reads and no allocation.
//
// Decode failures are reported as *DecodeError, whose Reason is a stable
// label for metrics. A datagram that is only partly decodable (for
// example one data set with an unknown template beside others that are
// known) still yields the flows that could be decoded together with the
// error: callers should count both.
package decoder

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// Reason classifies a decode failure. The values are stable snake_case
// strings meant to be used as metrics labels.
type Reason string

// Decode failure reasons.
const (
	// ReasonTruncated: the datagram ends before a header, set or record it
	// announces.
	ReasonTruncated Reason = "truncated"
	// ReasonBadVersion: the version field names a protocol this entry
	// point does not decode.
	ReasonBadVersion Reason = "bad_version"
	// ReasonUnknownTemplate: a NetFlow v9/IPFIX data set refers to a
	// template the exporter has not sent (yet).
	ReasonUnknownTemplate Reason = "unknown_template"
	// ReasonMalformed: lengths or counts that contradict each other or
	// the specification.
	ReasonMalformed Reason = "malformed"
	// ReasonTooManyRecords: the datagram holds more records than
	// MaxRecordsPerDatagram; the records beyond the bound are dropped.
	ReasonTooManyRecords Reason = "too_many_records"
	// ReasonTemplateTooSmall: a data template describes records shorter
	// than MinRecordBytes, which would turn every few bytes of a datagram
	// into a flow. The template is refused.
	ReasonTemplateTooSmall Reason = "template_too_small"
	// ReasonTemplateNoFlowFields: a data template has no field a flow is
	// made of (only unknown or enterprise fields), so its records are no
	// flows. The template is refused.
	ReasonTemplateNoFlowFields Reason = "template_no_flow_fields"
	// ReasonTemplateLimit: a new template beyond the exporter's or the
	// global template limit (WithTemplateLimits). The template is
	// refused.
	ReasonTemplateLimit Reason = "template_limit"
)

// Bounds against hostile or broken exporters. A 64 KiB datagram of
// plausible records (addresses, ports, counters: 20 bytes and more) holds
// at most a few thousand of them.
const (
	// MaxRecordsPerDatagram bounds the data and options records decoded
	// from one datagram.
	MaxRecordsPerDatagram = 4096
	// MinRecordBytes is the smallest data record a template may describe
	// (two IPv4 addresses, or one address and a counter).
	MinRecordBytes = 8
)

// Sentinel errors wrapped by DecodeError.Err, usable with errors.Is.
var (
	ErrTruncated       = errors.New("datagram truncated")
	ErrBadVersion      = errors.New("unsupported version")
	ErrUnknownTemplate = errors.New("unknown template")
	ErrMalformed       = errors.New("malformed datagram")
	ErrTooManyRecords  = errors.New("too many records")
	// ErrImplausibleTemplate is wrapped by the errors of refused
	// templates (ReasonTemplateTooSmall, ReasonTemplateNoFlowFields).
	ErrImplausibleTemplate = errors.New("implausible template")
	ErrTemplateLimit       = errors.New("template limit reached")
)

// reasonError carries its Reason up to decodeSets, which wraps it in a
// DecodeError.
type reasonError struct {
	reason Reason
	err    error
}

func (e *reasonError) Error() string { return e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

// reasonOf returns the Reason err carries, or def.
func reasonOf(err error, def Reason) Reason {
	var re *reasonError
	if errors.As(err, &re) {
		return re.reason
	}
	return def
}

// DecodeError describes why (part of) a datagram could not be decoded. It
// carries enough context to label a metric and to find the exporter.
// TemplateID is 0 when the failure is not tied to a template.
type DecodeError struct {
	Exporter      schemas.Addr
	Version       uint16
	ObservationID uint32
	TemplateID    uint16
	Reason        Reason
	Err           error
}

// Error formats e as "decode vN from ADDR domain D template T: REASON: ERR".
func (e *DecodeError) Error() string {
	if e.TemplateID != 0 {
		return fmt.Sprintf("decode v%d from %s domain %d template %d: %s: %v",
			e.Version, e.Exporter, e.ObservationID, e.TemplateID, e.Reason, e.Err)
	}
	return fmt.Sprintf("decode v%d from %s domain %d: %s: %v",
		e.Version, e.Exporter, e.ObservationID, e.Reason, e.Err)
}

// Unwrap returns the underlying error (one of the Err* sentinels, possibly
// wrapped with detail).
func (e *DecodeError) Unwrap() error { return e.Err }

// Option configures a Decoder in New.
type Option func(*Decoder)

// WithTemplateFile makes the Decoder load templates and sampling rates from
// path in New and write them back there in SaveTemplates. A restarted
// collector can then decode data sets at once instead of dropping them
// until each exporter resends its templates. A missing file is not an
// error; a corrupt one is logged as a warning and ignored (see
// LoadTemplates to get the error instead).
func WithTemplateFile(path string) Option {
	return func(d *Decoder) { d.path = path }
}

// Default template limits (WithTemplateLimits).
const (
	DefaultMaxTemplatesPerExporter = 4096
	DefaultMaxTemplates            = 100000
)

// WithTemplateLimits bounds the templates kept per exporter address (all
// its ports and domains together) and in all. A template beyond either
// limit is refused with ReasonTemplateLimit; refreshes of known
// templates always pass. Values below 1 keep the defaults.
func WithTemplateLimits(perExporter, total int) Option {
	return func(d *Decoder) {
		if perExporter > 0 {
			d.maxPerExporter = perExporter
		}
		if total > 0 {
			d.maxTemplates = total
		}
	}
}

// TemplatesChanged returns a channel that receives (at most one pending
// value) after templates or sampling state changed: a writer goroutine
// waits on it and calls SaveTemplates, so that persistence stays off the
// decode path.
func (d *Decoder) TemplatesChanged() <-chan struct{} { return d.changedCh }

// TemplateCount returns how many templates are known.
func (d *Decoder) TemplateCount() int { return d.templates.len() }

// WithLogger sets the logger used for the rare, non-hot-path events
// (template file problems). The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(d *Decoder) {
		if l != nil {
			d.logger = l
		}
	}
}

// WithMaxTimeSkew makes the Decoder clamp flow times further than bound
// from their datagram's export time to export time ± bound, counting the
// flows in FlowBatch.ClampedPast and ClampedFuture. 0 (the default) never
// clamps.
func WithMaxTimeSkew(bound time.Duration) Option {
	return func(d *Decoder) {
		if bound > 0 {
			d.maxSkewNs = uint64(bound)
		}
	}
}

// Decoder decodes flow datagrams. It is safe for concurrent use by several
// reader goroutines: template state is shared between them, so a template
// received by one reader is immediately usable by the others.
type Decoder struct {
	logger    *slog.Logger
	path      string
	maxSkewNs uint64

	maxPerExporter, maxTemplates int

	// writeMu serializes template and domain writers; readers never take it.
	writeMu     sync.Mutex
	templates   *shardedMap[templateKey, *template]
	domains     *shardedMap[domainKey, domainState]
	perExporter map[schemas.Addr]int // templates per exporter address, under writeMu
	// generation counts template/domain changes, so SaveTemplates knows
	// whether there is anything new to write; changedCh wakes the writer.
	generation atomic.Uint64
	changedCh  chan struct{}

	saveMu   sync.Mutex
	savedGen uint64
}

// New returns a Decoder. With WithTemplateFile, the file's templates are
// loaded before New returns; a load failure is logged and New still
// returns a working, empty Decoder.
func New(opts ...Option) *Decoder {
	d := &Decoder{
		logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		maxPerExporter: DefaultMaxTemplatesPerExporter,
		maxTemplates:   DefaultMaxTemplates,
		templates:      newTemplateMap(),
		domains:        newDomainMap(),
		perExporter:    map[schemas.Addr]int{},
		changedCh:      make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(d)
	}
	if d.path != "" {
		if err := d.LoadTemplates(); err != nil {
			d.logger.Warn("ignoring flow template file", slog.String("path", d.path), slog.Any("error", err))
		}
	}
	return d
}

// DecodeNetFlow decodes one NetFlow v5, NetFlow v9 or IPFIX datagram
// (chosen by its version field) received from exporter:port at received
// (Unix ns). out is Reset and its Flows appended to, reusing their
// capacity; out also gets TimeReceived, Exporter, ExporterPort, Type,
// ObservationID and SequenceNumber.
//
// On a partial failure out holds the flows that could be decoded and the
// returned error is a *DecodeError; data is not retained after return.
func (d *Decoder) DecodeNetFlow(exporter schemas.Addr, port uint16, received uint64, data []byte, out *schemas.FlowBatch) error {
	out.Reset()
	out.TimeReceived = received
	out.Exporter = exporter
	out.ExporterPort = port
	if len(data) < 2 {
		return &DecodeError{Exporter: exporter, Reason: ReasonTruncated, Err: fmt.Errorf("%w: %d bytes, no version", ErrTruncated, len(data))}
	}
	switch v := uint16(data[0])<<8 | uint16(data[1]); v {
	case 5:
		err := d.decodeV5(data, out)
		out.Records = uint32(len(out.Flows))
		return err
	case 9:
		return d.decodeV9(data, out)
	case 10:
		return d.decodeIPFIX(data, out)
	default:
		return &DecodeError{Exporter: exporter, Version: v, Reason: ReasonBadVersion, Err: fmt.Errorf("%w: netflow version %d", ErrBadVersion, v)}
	}
}
