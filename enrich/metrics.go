package enrich

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	flows          *prometheus.CounterVec // verdict
	batches        prometheus.Counter
	malformed      prometheus.Counter
	accessEvents   prometheus.Counter
	untrusted      prometheus.Counter
	bindings       prometheus.Gauge
	policyReloads  *prometheus.CounterVec // outcome
	policyVersions prometheus.Counter
	produceErrors  prometheus.Counter
	attributed     prometheus.Counter
	deadLetters    *prometheus.CounterVec // reason
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_enrich_flows_total", Help: "Flows enriched, per verdict.",
		}, []string{"verdict"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_enrich_batches_total", Help: "Flow batches consumed.",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_enrich_malformed_records_total", Help: "Records that could not be decoded and were skipped.",
		}),
		accessEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_enrich_access_events_total", Help: "Access events applied to the identity bindings.",
		}),
		untrusted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_enrich_untrusted_access_events_total", Help: "Access events read but not applied: flagged untrusted by the collector (ingest.access.trusted_senders, http_token_hosts).",
		}),
		bindings: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowaudit_enrich_identity_bindings", Help: "Addresses with an identity binding.",
		}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_enrich_policy_reloads_total", Help: "Policy file reloads, per outcome (ok, invalid).",
		}, []string{"outcome"}),
		policyVersions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_enrich_policy_versions_recorded_total", Help: "Applied policy versions the broker acknowledged on the policy topic (for policy_versions).",
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_enrich_produce_errors_total", Help: "Enriched batches the broker did not accept (retried from the last commit).",
		}),
		attributed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_enrich_attributed_flows_total", Help: "Flows with a source identity.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_enrich_dead_letters_total", Help: "Input records whose enriched output the broker refused for good (record_too_large, invalid_record, invalid_timestamp), sent to the dead-letter topic and skipped.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.flows, m.batches, m.malformed, m.accessEvents, m.untrusted, m.bindings, m.policyReloads, m.policyVersions, m.produceErrors, m.attributed, m.deadLetters)
	return m
}
