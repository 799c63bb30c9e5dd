package sink

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/schemas"
)

// topicWriter moves the records of one topic into one table. Rows are
// buffered per partition so that a partition taken away by a rebalance
// can be dropped without touching the others. A topicWriter is used by one
// goroutine at a time (the sink's lock).
type topicWriter interface {
	topic() string
	table() string
	// add decodes rec into its partition's rows and returns how many.
	add(rec *kgo.Record) (int, error)
	// rows is the number of buffered rows.
	rows() int
	// ready is the number of buffered rows the next insert takes (rows
	// may hold some back, see flowWriter).
	ready() int
	// offsets returns, for every partition with buffered records (also
	// those whose records held no row), the offset to commit once the
	// ready rows are inserted.
	offsets() map[int32]int64
	// insert sends every ready row in one INSERT.
	insert(ctx context.Context, conn driver.Conn, database string) error
	// clear forgets the ready rows: they are inserted.
	clear()
	// drop forgets the given partitions' rows and returns how many.
	drop(partitions []int32) int
}

// partitionBuffer is the generic per-partition row store behind writers.
type partitionBuffer[R any] struct {
	parts map[int32]*partitionRows[R]
	n     int
}

type partitionRows[R any] struct {
	rows []R
	next int64
}

func (b *partitionBuffer[R]) partition(p int32, offset int64) *partitionRows[R] {
	if b.parts == nil {
		b.parts = map[int32]*partitionRows[R]{}
	}
	pr := b.parts[p]
	if pr == nil {
		pr = &partitionRows[R]{}
		b.parts[p] = pr
	}
	pr.next = offset + 1
	return pr
}

func (b *partitionBuffer[R]) rows() int { return b.n }

func (b *partitionBuffer[R]) ready() int { return b.n }

func (b *partitionBuffer[R]) offsets() map[int32]int64 {
	out := make(map[int32]int64, len(b.parts))
	for p, pr := range b.parts {
		out[p] = pr.next
	}
	return out
}

func (b *partitionBuffer[R]) clear() {
	clear(b.parts)
	b.n = 0
}

func (b *partitionBuffer[R]) drop(partitions []int32) int {
	dropped := 0
	for _, p := range partitions {
		if pr := b.parts[p]; pr != nil {
			dropped += len(pr.rows)
			delete(b.parts, p)
		}
	}
	b.n -= dropped
	return dropped
}

func (b *partitionBuffer[R]) each(fn func(*R)) {
	for _, pr := range b.parts {
		for i := range pr.rows {
			fn(&pr.rows[i])
		}
	}
}

// accessWriter writes flowaudit.access.v1 into the access_events table.
type accessWriter struct {
	partitionBuffer[schemas.AccessEvent]
	name   string
	modern bool
}

var accessColumns = []string{
	"time", "received", "source", "host", "user", "src_addr", "src_port", "dst_addr", "dst_host",
	"dst_port", "resource", "action", "outcome", "session_id", "auth_method", "status", "user_agent",
	"forwarded_for",
	"peer_addr", "listener", "trusted",
	"binding", "device", "device_name", "expires", "outer_addr", "labels",
}

func (w *accessWriter) topic() string { return w.name }
func (w *accessWriter) table() string { return "access_events" }

func (w *accessWriter) add(rec *kgo.Record) (int, error) {
	pr := w.partition(rec.Partition, rec.Offset)
	var ev schemas.AccessEvent
	if err := schemas.UnmarshalAccessEvent(rec.Value, &ev); err != nil {
		return 0, err
	}
	if ev.Time == 0 {
		ev.Time = ev.Received
	}
	pr.rows = append(pr.rows, ev)
	w.n++
	return 1, nil
}

func (w *accessWriter) insert(ctx context.Context, conn driver.Conn, database string) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+database+".access_events ("+strings.Join(accessColumns, ", ")+")")
	if err != nil {
		return fmt.Errorf("prepare insert into access_events: %w", err)
	}
	defer batch.Abort()
	var appendErr error
	w.each(func(e *schemas.AccessEvent) {
		if appendErr != nil {
			return
		}
		var src, dst, peer, outer any = e.SrcAddr[:], e.DstAddr[:], e.PeerAddr[:], e.OuterAddr[:]
		if w.modern {
			src, dst, peer, outer = netip.AddrFrom16(e.SrcAddr), netip.AddrFrom16(e.DstAddr), netip.AddrFrom16(e.PeerAddr), netip.AddrFrom16(e.OuterAddr)
		}
		trusted := uint8(1)
		if e.Untrusted {
			trusted = 0
		}
		status := uint16(0)
		if e.Status > 0 && e.Status <= 65535 {
			status = uint16(e.Status)
		}
		appendErr = batch.Append(time.Unix(0, int64(e.Time)), time.Unix(0, int64(e.Received)), e.Source, e.Host, e.User, src, e.SrcPort, dst, e.DstHost,
			e.DstPort, e.Resource, e.Action, e.Outcome.String(), e.SessionID, e.AuthMethod, status, e.UserAgent, e.ForwardedFor,
			peer, e.Listener, trusted,
			e.Binding.String(), e.Device, e.DeviceName, time.Unix(0, int64(e.Expires)), outer, e.Labels)
	})
	if appendErr != nil {
		return fmt.Errorf("access_events row: %w", appendErr)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send %d rows to access_events: %w", w.n, err)
	}
	return nil
}

// alertWriter writes flowaudit.alerts.v1 into the alerts table.
type alertWriter struct {
	partitionBuffer[schemas.Alert]
	name   string
	modern bool
}

var alertColumns = []string{
	"alert_id", "time", "kind", "severity", "src_addr", "dst_addr", "src_segment", "dst_segment", "src_identity",
	"dst_port", "proto", "first_seen", "last_seen", "count", "bytes", "summary", "evidence", "version",
}

func (w *alertWriter) topic() string { return w.name }
func (w *alertWriter) table() string { return "alerts" }

func (w *alertWriter) add(rec *kgo.Record) (int, error) {
	pr := w.partition(rec.Partition, rec.Offset)
	var a schemas.Alert
	if err := schemas.UnmarshalAlert(rec.Value, &a); err != nil {
		return 0, err
	}
	if a.ID == "" {
		return 0, fmt.Errorf("%w: alert without id", schemas.ErrMalformed)
	}
	pr.rows = append(pr.rows, a)
	w.n++
	return 1, nil
}

func (w *alertWriter) insert(ctx context.Context, conn driver.Conn, database string) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+database+".alerts ("+strings.Join(alertColumns, ", ")+")")
	if err != nil {
		return fmt.Errorf("prepare insert into alerts: %w", err)
	}
	defer batch.Abort()
	var appendErr error
	w.each(func(a *schemas.Alert) {
		if appendErr != nil {
			return
		}
		var src, dst any = a.SrcAddr[:], a.DstAddr[:]
		if w.modern {
			src, dst = netip.AddrFrom16(a.SrcAddr), netip.AddrFrom16(a.DstAddr)
		}
		appendErr = batch.Append(a.ID, time.Unix(0, int64(a.Time)), a.Kind, a.Severity.String(), src, dst, a.SrcSegment, a.DstSegment,
			a.SrcIdentity, a.DstPort, a.Proto, time.Unix(0, int64(a.FirstSeen)), time.Unix(0, int64(a.LastSeen)), a.Count, a.Bytes,
			a.Summary, a.Evidence, a.LastSeen)
	})
	if appendErr != nil {
		return fmt.Errorf("alerts row: %w", appendErr)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send %d rows to alerts: %w", w.n, err)
	}
	return nil
}

// policyVersionWriter writes flowaudit.policy.v1 into policy_versions.
type policyVersionWriter struct {
	partitionBuffer[schemas.PolicyVersion]
	name string
}

var policyVersionColumns = []string{"version", "loaded_at", "path", "content", "host", "summary"}

func (w *policyVersionWriter) topic() string { return w.name }
func (w *policyVersionWriter) table() string { return "policy_versions" }

func (w *policyVersionWriter) add(rec *kgo.Record) (int, error) {
	pr := w.partition(rec.Partition, rec.Offset)
	var v schemas.PolicyVersion
	if err := schemas.UnmarshalPolicyVersion(rec.Value, &v); err != nil {
		return 0, err
	}
	pr.rows = append(pr.rows, v)
	w.n++
	return 1, nil
}

func (w *policyVersionWriter) insert(ctx context.Context, conn driver.Conn, database string) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+database+".policy_versions ("+strings.Join(policyVersionColumns, ", ")+")")
	if err != nil {
		return fmt.Errorf("prepare insert into policy_versions: %w", err)
	}
	defer batch.Abort()
	var appendErr error
	w.each(func(v *schemas.PolicyVersion) {
		if appendErr == nil {
			appendErr = batch.Append(v.Version, time.Unix(0, int64(v.LoadedAt)), v.Path, string(v.Content), v.Host, v.Summary)
		}
	})
	if appendErr != nil {
		return fmt.Errorf("policy_versions row: %w", appendErr)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send %d rows to policy_versions: %w", w.n, err)
	}
	return nil
}
