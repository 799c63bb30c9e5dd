package flow

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowaudit/flowaudit/schemas"
)

// otherExporter labels the series shared by exporters without their own.
const otherExporter = "other"

// exporterSeries decides which exporters get metric series of their own.
// Anyone can send a datagram from any address, so an exporter is only
// given its own label once it sent valid data (a datagram that decoded,
// or yielded records), and only while fewer than max exporters have one;
// the rest share exporter="other". The series of an exporter silent for
// ttl are deleted and its slot freed. Safe for concurrent use; each
// reader keeps a cache of the exporters it sees so the hot path takes no
// lock.
type exporterSeries struct {
	m   *metrics
	max int
	ttl time.Duration

	mu     sync.Mutex
	byAddr map[schemas.Addr]*exporterCounters
	other  *exporterCounters
}

// exporterCounters are one label's counters. The per-type counters are
// created on first use: an exporter speaks one or two protocols, not five.
type exporterCounters struct {
	label    string
	lastSeen atomic.Int64 // Unix seconds
	expired  atomic.Bool
	types    [5]atomic.Pointer[typeCounters]
}

type typeCounters struct{ datagrams, flows prometheus.Counter }

func newExporterSeries(m *metrics, max int, ttl time.Duration) *exporterSeries {
	return &exporterSeries{m: m, max: max, ttl: ttl, byAddr: map[schemas.Addr]*exporterCounters{},
		other: &exporterCounters{label: otherExporter}}
}

// lookup returns the counters for a datagram from a; valid says whether
// the datagram decoded. cache is the calling reader's own.
func (s *exporterSeries) lookup(cache map[schemas.Addr]*exporterCounters, a schemas.Addr, valid bool, now int64) *exporterCounters {
	if ec := cache[a]; ec != nil {
		if !ec.expired.Load() {
			if ec.lastSeen.Load() != now {
				ec.lastSeen.Store(now)
			}
			return ec
		}
		delete(cache, a)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ec := s.byAddr[a]
	if ec == nil {
		if !valid || len(s.byAddr) >= s.max {
			return s.other
		}
		ec = &exporterCounters{label: a.String()}
		s.byAddr[a] = ec
		s.m.exporterSeries.Set(float64(len(s.byAddr)))
	}
	ec.lastSeen.Store(now)
	if len(cache) >= 2*s.max {
		// Exporters that expired and never came back.
		for k, v := range cache {
			if v.expired.Load() {
				delete(cache, k)
			}
		}
	}
	cache[a] = ec
	return ec
}

// typed returns ec's counters for flow type t.
func (s *exporterSeries) typed(ec *exporterCounters, t schemas.FlowType) *typeCounters {
	if int(t) >= len(ec.types) {
		t = schemas.FlowTypeUnknown
	}
	if tc := ec.types[t].Load(); tc != nil {
		return tc
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if tc := ec.types[t].Load(); tc != nil {
		return tc
	}
	label := s.liveLabel(ec)
	ft := t.String()
	tc := &typeCounters{datagrams: s.m.datagrams.WithLabelValues(label, ft), flows: s.m.flows.WithLabelValues(label, ft)}
	ec.types[t].Store(tc)
	return tc
}

// add adds v to the series of vec for ec and the other label values. It
// takes the lock, so that no series is created for an exporter being
// expired: it is for the rarer events (errors, loss, clamped times).
func (s *exporterSeries) add(vec *prometheus.CounterVec, ec *exporterCounters, v float64, lvs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vec.WithLabelValues(append([]string{s.liveLabel(ec)}, lvs...)...).Add(v)
}

// liveLabel is ec's label, or "other" once ec expired (a reader may
// still hold it). Called with s.mu held.
func (s *exporterSeries) liveLabel(ec *exporterCounters) string {
	if ec.expired.Load() {
		return otherExporter
	}
	return ec.label
}

// expire deletes the series of exporters not seen since now-ttl and
// returns how many there were.
func (s *exporterSeries) expire(now int64) int {
	cutoff := now - int64(s.ttl/time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for a, ec := range s.byAddr {
		if ec.lastSeen.Load() >= cutoff {
			continue
		}
		ec.expired.Store(true)
		delete(s.byAddr, a)
		for _, vec := range s.m.perExporter() {
			vec.DeletePartialMatch(prometheus.Labels{"exporter": ec.label})
		}
		n++
	}
	s.m.exporterSeries.Set(float64(len(s.byAddr)))
	return n
}

// admitted returns how many exporters have series of their own.
func (s *exporterSeries) admitted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byAddr)
}
