package sink

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	rows           *prometheus.CounterVec   // table
	batches        *prometheus.CounterVec   // table
	insertDuration *prometheus.HistogramVec // table
	commitErrors   prometheus.Counter
	malformed      prometheus.Counter
	lag            *prometheus.GaugeVec // topic, partition
	pending        prometheus.Gauge
	skippedDup     prometheus.Counter
	duplicates     prometheus.Counter
	chErrors       *prometheus.CounterVec // what
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_sink_rows_total", Help: "Rows ClickHouse accepted, per table.",
		}, []string{"table"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_sink_batches_total", Help: "Batches ClickHouse accepted, per table.",
		}, []string{"table"}),
		insertDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flowaudit_sink_insert_duration_seconds", Help: "Duration of successful batch inserts, per table.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"table"}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_sink_commit_errors_total", Help: "Kafka offset commits that failed after the rows were inserted.",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_sink_malformed_records_total", Help: "Records that could not be decoded and were skipped.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowaudit_sink_consumer_lag", Help: "Records behind the partition's end, as of the last fetch.",
		}, []string{"topic", "partition"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowaudit_sink_pending_rows", Help: "Rows buffered, not yet inserted.",
		}),
		skippedDup: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_sink_resumed_partitions_total", Help: "Partitions resumed from ClickHouse's own offset record because it was ahead of Kafka's committed offset (a crash between insert and commit).",
		}),
	}
	m.duplicates = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "flowaudit_sink_duplicate_records_total", Help: "Flow records skipped because ClickHouse already has their source record (read again after a crash, or produced again by enrich).",
	})
	reg.MustRegister(m.duplicates)
	m.chErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowaudit_sink_clickhouse_errors_total", Help: "Failed ClickHouse calls (each is retried), per call.",
	}, []string{"what"})
	reg.MustRegister(m.chErrors)
	reg.MustRegister(m.rows, m.batches, m.insertDuration, m.commitErrors, m.malformed, m.lag, m.pending, m.skippedDup)
	return m
}
