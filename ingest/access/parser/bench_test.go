package parser

import (
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// The benchmarks parse every line of a testdata sample per iteration
// (junk lines included, as a real stream has some) and report lines/s on
// one goroutine.

func benchmarkParse(b *testing.B, f Format, file string) {
	p, err := New(f)
	if err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	for _, l := range testLines(b, file) {
		lines = append(lines, []byte(l))
	}
	var ev schemas.AccessEvent
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, l := range lines {
			_ = p.Parse(l, testMeta, &ev)
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkParseSSHD(b *testing.B)     { benchmarkParse(b, FormatSSHD, "sshd.log") }
func BenchmarkParseNginx(b *testing.B)    { benchmarkParse(b, FormatNginx, "nginx.log") }
func BenchmarkParseK8sAudit(b *testing.B) { benchmarkParse(b, FormatK8sAudit, "k8s_audit.jsonl") }
func BenchmarkParseGateway(b *testing.B)  { benchmarkParse(b, FormatGateway, "gateway.jsonl") }
func BenchmarkParseJSON(b *testing.B)     { benchmarkParse(b, FormatJSON, "json.jsonl") }

// BenchmarkParseSSHDAccepted and BenchmarkParseNginxCombined measure the
// common case alone: one valid line, no errors.
func BenchmarkParseSSHDAccepted(b *testing.B) {
	benchmarkLine(b, FormatSSHD, "Accepted publickey for alice from 203.0.113.7 port 51234 ssh2: ED25519 SHA256:3f0rXq1yq8p6YbJcQ0m5Wc4a2Hc9k1LwV7ZsE0t2Nq4")
}

func BenchmarkParseNginxCombined(b *testing.B) {
	benchmarkLine(b, FormatNginx, `203.0.113.7 - - [10/Mar/2024:11:59:58 +0000] "GET /index.html HTTP/1.1" 200 5120 "https://example.org/" "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"`)
}

func benchmarkLine(b *testing.B, f Format, line string) {
	p, _ := New(f)
	l := []byte(line)
	var ev schemas.AccessEvent
	if err := p.Parse(l, testMeta, &ev); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = p.Parse(l, testMeta, &ev)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkParseSyslog3164(b *testing.B) {
	line := []byte("<38>Mar 10 11:59:58 bastion-1 sshd[4242]: Accepted publickey for alice from 203.0.113.7 port 51234 ssh2")
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	var m SyslogMessage
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := ParseSyslog(line, now, nil, &m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkParseSyslog5424(b *testing.B) {
	line := []byte(`<38>1 2024-03-10T11:59:58.123456Z bastion-1 sshd 4242 - [meta x="1"] Accepted password for bob from 198.51.100.23 port 40022 ssh2`)
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	var m SyslogMessage
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := ParseSyslog(line, now, nil, &m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkParseK8sAuditLine is one typical Metadata-level event (about
// 800 bytes) decoded with encoding/json.
func BenchmarkParseK8sAuditLine(b *testing.B) {
	benchmarkLine(b, FormatK8sAudit, testLines(b, "k8s_audit.jsonl")[0])
}
