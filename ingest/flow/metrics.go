package flow

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	datagrams      *prometheus.CounterVec // exporter, flow_type
	flows          *prometheus.CounterVec // exporter, flow_type
	decodeErrors   *prometheus.CounterVec // exporter, reason
	clampedTimes   *prometheus.CounterVec // exporter, reason
	lostDatagrams  *prometheus.CounterVec // exporter
	lostFlows      *prometheus.CounterVec // exporter
	socketDrops    *prometheus.GaugeVec   // listener
	receiveBuffer  *prometheus.GaugeVec   // listener
	producedFlows  prometheus.Counter
	producedRecs   prometheus.Counter
	produceErrors  prometheus.Counter
	deadLetters    *prometheus.CounterVec // reason
	deadDropped    *prometheus.CounterVec // reason
	templateSaves  *prometheus.CounterVec // outcome
	templates      prometheus.Gauge
	datagramsTotal prometheus.Counter
	exporterSeries prometheus.Gauge
}

// perExporter returns the vectors with an exporter label, whose series
// are deleted when an exporter expires.
func (m *metrics) perExporter() []*prometheus.CounterVec {
	return []*prometheus.CounterVec{m.datagrams, m.flows, m.decodeErrors, m.clampedTimes, m.lostDatagrams, m.lostFlows}
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_ingest_datagrams_total", Help: "Flow datagrams received, per exporter and protocol.",
		}, []string{"exporter", "flow_type"}),
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_ingest_flows_total", Help: "Flows decoded, per exporter and protocol.",
		}, []string{"exporter", "flow_type"}),
		decodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_ingest_decode_errors_total", Help: "Datagrams (or parts of them) that could not be decoded, per exporter and reason.",
		}, []string{"exporter", "reason"}),
		clampedTimes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_ingest_flow_times_clamped_total", Help: "Flows whose start or end lay further than ingest.flows.max_time_skew before (reason past) or after (reason future) the export time, and were clamped to that bound, per exporter.",
		}, []string{"exporter", "reason"}),
		lostDatagrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_ingest_lost_datagrams_total", Help: "Datagrams the exporter sent that never arrived, from sequence-number gaps (NetFlow v9, sFlow).",
		}, []string{"exporter"}),
		lostFlows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_ingest_lost_flows_total", Help: "Flows the exporter sent that never arrived, from sequence-number gaps (NetFlow v5, IPFIX).",
		}, []string{"exporter"}),
		socketDrops: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowaudit_ingest_socket_drops", Help: "Datagrams the kernel dropped on this listener's sockets because the receive buffer was full (from /proc/net/udp).",
		}, []string{"listener"}),
		receiveBuffer: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowaudit_ingest_receive_buffer_bytes", Help: "Effective kernel receive buffer of one socket of this listener.",
		}, []string{"listener"}),
		producedFlows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_ingest_produced_flows_total", Help: "Flows acknowledged by the broker (accepted).",
		}),
		producedRecs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_ingest_produced_records_total", Help: "Flow batch records acknowledged by the broker.",
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_ingest_produce_errors_total", Help: "Records the broker did not accept (only at shutdown: produce retries forever).",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_ingest_dead_letters_total", Help: "Undecodable datagrams, and flows records the broker refused, sent to the dead-letter topic, per reason.",
		}, []string{"reason"}),
		deadDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_ingest_dead_letters_dropped_total", Help: "Undecodable datagrams counted but not copied to the dead-letter topic (past ingest.flows.dead_letter_rate), per reason.",
		}, []string{"reason"}),
		templateSaves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_ingest_template_saves_total", Help: "Writes of the NetFlow v9/IPFIX template file, per outcome.",
		}, []string{"outcome"}),
		exporterSeries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowaudit_ingest_exporter_series", Help: "Exporters with metric series of their own (at most ingest.flows.max_exporter_series; the others are counted as exporter=\"other\").",
		}),
		templates: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowaudit_ingest_templates", Help: "NetFlow v9/IPFIX templates known, as of the last save of the template file.",
		}),
		datagramsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_ingest_datagrams_read_total", Help: "Datagrams read from all sockets, decodable or not.",
		}),
	}
	reg.MustRegister(m.datagrams, m.flows, m.decodeErrors, m.clampedTimes, m.lostDatagrams, m.lostFlows, m.socketDrops,
		m.receiveBuffer, m.producedFlows, m.producedRecs, m.produceErrors, m.deadLetters, m.deadDropped, m.templateSaves, m.datagramsTotal, m.exporterSeries, m.templates)
	return m
}
