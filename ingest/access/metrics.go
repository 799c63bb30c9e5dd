package access

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowaudit/flowaudit/internal/udpsock"
)

type metrics struct {
	lines          *prometheus.CounterVec // listener, format
	events         *prometheus.CounterVec // format, outcome
	rejected       *prometheus.CounterVec // format, reason
	ignored        *prometheus.CounterVec // format
	produced       prometheus.Counter
	produceErrors  prometheus.Counter
	deadLetters    prometheus.Counter
	httpRequests   *prometheus.CounterVec // code
	tcpConnections prometheus.Gauge
	untrusted      *prometheus.CounterVec // listener
	tcpEvictions   *prometheus.CounterVec // reason
	udpDrops       *dropCollector
	receiveBuffer  *prometheus.GaugeVec // listener
	httpInFlight   prometheus.Gauge
	httpWaiting    prometheus.Gauge
	tailOffset     *prometheus.GaugeVec // path
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_access_lines_total", Help: "Log lines or syslog messages received, per listener and format (syslog until the tag picked one).",
		}, []string{"listener", "format"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_access_events_total", Help: "Access events parsed, per format and outcome.",
		}, []string{"format", "outcome"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_access_rejected_total", Help: "Lines no parser accepted (dead-lettered), per format and reason.",
		}, []string{"format", "reason"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_access_ignored_total", Help: "Valid lines that are no access event (sshd noise, health checks…), per format.",
		}, []string{"format"}),
		produced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_access_produced_total", Help: "Access events acknowledged by the broker (accepted).",
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_access_produce_errors_total", Help: "Records (events or dead letters) the broker did not accept.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowaudit_access_dead_letters_total", Help: "Rejected lines acknowledged on the dead-letter topic.",
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_access_http_requests_total", Help: "HTTP intake requests, per response code.",
		}, []string{"code"}),
		tcpConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowaudit_access_tcp_connections", Help: "Open TCP (and TLS) syslog connections.",
		}),
		untrusted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_access_untrusted_events_total", Help: "Access events flagged untrusted (sender not in ingest.access.trusted_senders, or a host/source its token may not claim): stored, never bound to an identity, per listener.",
		}, []string{"listener"}),
		tcpEvictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_access_tcp_evictions_total", Help: "TCP syslog connections closed to admit a new one, per reason: listener_full (syslog_max_connections) or source_full (syslog_max_connections_per_source); the one idle longest goes.",
		}, []string{"reason"}),
		udpDrops: &dropCollector{
			desc:  prometheus.NewDesc("flowaudit_access_udp_socket_drops_total", "Syslog datagrams the kernel dropped on this UDP listener's socket because its receive buffer was full (from /proc/net/udp, read at scrape).", []string{"listener"}, nil),
			ports: map[string]int{},
		},
		receiveBuffer: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowaudit_access_udp_receive_buffer_bytes", Help: "Effective kernel receive buffer of a UDP syslog listener's socket (ingest.access.syslog_receive_buffer asks).",
		}, []string{"listener"}),
		httpInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowaudit_access_http_in_flight", Help: "POST /v1/access requests being read and parsed (at most ingest.access.http_max_concurrent).",
		}),
		httpWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowaudit_access_http_waiting", Help: "POST /v1/access requests waiting for a slot (http_max_concurrent reached).",
		}),
		tailOffset: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowaudit_access_tail_offset_bytes", Help: "Acknowledged read position in the tailed file.",
		}, []string{"path"}),
	}
	reg.MustRegister(m.lines, m.events, m.rejected, m.ignored, m.produced, m.produceErrors,
		m.deadLetters, m.httpRequests, m.tcpConnections, m.untrusted, m.tcpEvictions, m.udpDrops, m.receiveBuffer, m.httpInFlight, m.httpWaiting, m.tailOffset)
	return m
}

// dropCollector reports the kernel's drop counter of each UDP syslog
// socket when scraped.
type dropCollector struct {
	desc  *prometheus.Desc
	mu    sync.Mutex
	ports map[string]int // listener -> bound port
}

func (d *dropCollector) add(listener string, port int) {
	d.mu.Lock()
	d.ports[listener] = port
	d.mu.Unlock()
}

func (d *dropCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *dropCollector) Collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	names := make([]string, 0, len(d.ports))
	for l := range d.ports {
		names = append(names, l)
	}
	ports := make(map[string]int, len(d.ports))
	for l, p := range d.ports {
		ports[l] = p
	}
	d.mu.Unlock()
	sort.Strings(names)
	for _, l := range names {
		if n, err := udpsock.Drops(ports[l]); err == nil {
			ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(n), l)
		}
	}
}
