package flow

import (
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowaudit/flowaudit/schemas"
)

// exporterLabels returns, per metric family with an exporter label, the
// sorted exporter values present in reg.
func exporterLabels(t *testing.T, reg *prometheus.Registry) map[string][]string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, mf := range mfs {
		seen := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "exporter" && !seen[lp.GetValue()] {
					seen[lp.GetValue()] = true
					out[mf.GetName()] = append(out[mf.GetName()], lp.GetValue())
				}
			}
		}
		sort.Strings(out[mf.GetName()])
	}
	return out
}

func TestExporterSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	s := newExporterSeries(m, 2, time.Hour)
	addr := func(i int) schemas.Addr { return schemas.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)}) }
	const t0 = 1_700_000_000
	cache := map[schemas.Addr]*exporterCounters{}
	count := func(ec *exporterCounters, valid bool) {
		s.typed(ec, schemas.FlowTypeIPFIX).datagrams.Add(1)
		if !valid {
			s.add(m.decodeErrors, ec, 1, "truncated")
		}
	}
	// 1,000 junk senders: no series of their own, and no cache entries.
	for i := 0; i < 1000; i++ {
		count(s.lookup(cache, addr(i), false, t0), false)
	}
	// Three valid exporters, cap 2: the third shares "other".
	for i := 1; i <= 3; i++ {
		count(s.lookup(cache, addr(5000+i), true, t0), true)
	}
	// An admitted exporter's later junk is still its own.
	count(s.lookup(cache, addr(5001), false, t0+1), false)
	want := map[string][]string{
		"flowaudit_ingest_datagrams_total":     {"127.0.19.137", "127.0.19.138", "other"},
		"flowaudit_ingest_decode_errors_total": {"127.0.19.137", "other"},
		"flowaudit_ingest_flows_total":         {"127.0.19.137", "127.0.19.138", "other"},
	}
	if diff := cmp.Diff(exporterLabels(t, reg), want); diff != "" {
		t.Errorf("series (-got +want):\n%s", diff)
	}
	if len(cache) != 2 || s.admitted() != 2 {
		t.Errorf("reader cache %d entries, %d admitted; want 2 and 2", len(cache), s.admitted())
	}

	// 127.0.19.138 goes silent: after the ttl its series go, the slot is
	// free again and a reader's cached entry is not used any more.
	if n := s.expire(t0 + 3599); n != 0 {
		t.Errorf("expired %d exporters before the ttl", n)
	}
	s.lookup(cache, addr(5001), true, t0+3000)
	if n := s.expire(t0 + 3601); n != 1 {
		t.Errorf("expired %d exporters, want 1", n)
	}
	count(s.lookup(cache, addr(5003), true, t0+3602), true)
	want = map[string][]string{
		"flowaudit_ingest_datagrams_total":     {"127.0.19.137", "127.0.19.139", "other"},
		"flowaudit_ingest_decode_errors_total": {"127.0.19.137", "other"},
		"flowaudit_ingest_flows_total":         {"127.0.19.137", "127.0.19.139", "other"},
	}
	if diff := cmp.Diff(exporterLabels(t, reg), want); diff != "" {
		t.Errorf("series after expiry (-got +want):\n%s", diff)
	}
	if ec := s.lookup(cache, addr(5002), true, t0+3603); ec.label != otherExporter {
		t.Errorf("expired exporter came back as %q with no free slot, want other", ec.label)
	}
}
