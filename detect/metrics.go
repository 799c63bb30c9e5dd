package detect

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	flows         prometheus.Counter
	accessEvents  prometheus.Counter
	keyed         prometheus.Counter
	alerts        *prometheus.CounterVec // kind
	malformed     prometheus.Counter
	checkpoints   *prometheus.CounterVec // outcome
	checkpointB   prometheus.Gauge
	delivered     prometheus.Counter
	policyReloads *prometheus.CounterVec // outcome
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		flows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_detect_flows_total", Help: "Enriched flows run through the detectors.",
		}),
		accessEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_detect_access_events_total", Help: "Access events run through the detectors.",
		}),
		keyed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_detect_keyed_events_total", Help: "Re-keyed detector events consumed (global-view detectors).",
		}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_detect_alerts_total", Help: "Alerts raised (first emissions), per kind.",
		}, []string{"kind"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_detect_malformed_records_total", Help: "Records that could not be decoded and were skipped.",
		}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_detect_checkpoints_total", Help: "Detector state checkpoints, per outcome.",
		}, []string{"outcome"}),
		checkpointB: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowaudit_detect_checkpoint_bytes", Help: "Size of the last detector state checkpoint.",
		}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_detect_policy_reloads_total", Help: "Policy file reloads applied by detect, per outcome (ok, invalid).",
		}, []string{"outcome"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_detect_alerts_dispatched_total", Help: "Alerts handed to the webhook dispatcher.",
		}),
	}
	reg.MustRegister(m.flows, m.accessEvents, m.keyed, m.alerts, m.malformed, m.checkpoints, m.checkpointB, m.delivered, m.policyReloads)
	return m
}
