package probe

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	runs     prometheus.Counter
	failures prometheus.Counter
	results  *prometheus.CounterVec
	skipped  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowaudit_probe_runs_total",
			Help: "Scheduled probe runs finished."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowaudit_probe_run_failures_total",
			Help: "Scheduled probe runs that could not be planned, run or stored."}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowaudit_probe_results_total",
			Help: "Probe attempts by result (pass, breach, blocked)."}, []string{"result"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowaudit_probe_skipped_total",
			Help: "Planned attempts not made because the run's bound was reached."}),
	}
	reg.MustRegister(m.runs, m.failures, m.results, m.skipped)
	return m
}

func (m *metrics) observe(rep *Report) {
	m.runs.Inc()
	m.results.WithLabelValues(string(OutcomePass)).Add(float64(rep.Summary.Pass))
	m.results.WithLabelValues(string(OutcomeBreach)).Add(float64(rep.Summary.Breach))
	m.results.WithLabelValues(string(OutcomeBlocked)).Add(float64(rep.Summary.Blocked))
	m.skipped.Add(float64(rep.Summary.Skipped))
}
