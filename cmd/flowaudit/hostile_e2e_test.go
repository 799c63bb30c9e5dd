package main

import (
	"context"
	encbin "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas/pb"
)

// poisonDatagram is the datagram of issue 10: an IPFIX message of size
// bytes whose template describes 1-byte records of an unknown field
// (paddingOctets), then a data set filling the rest, so that every byte
// would become a flow.
func poisonDatagram(size int) []byte {
	msg := make([]byte, 16, size)
	encbin.BigEndian.PutUint16(msg[0:], 10)
	encbin.BigEndian.PutUint32(msg[4:], uint32(time.Now().Unix()))
	encbin.BigEndian.PutUint32(msg[12:], 1)
	// Template set: template 300, one field: type 210, length 1.
	msg = append(msg, 0, 2, 0, 12, 0x01, 0x2c, 0, 1, 0, 210, 0, 1)
	dataLen := size - len(msg)
	msg = encbin.BigEndian.AppendUint16(msg, 300)
	msg = encbin.BigEndian.AppendUint16(msg, uint16(dataLen))
	msg = append(msg, make([]byte, dataLen-4)...)
	encbin.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
	return msg
}

// deadLetters reads the dead-letter topic from its start until match has
// seen what it wants or timeout passes.
func deadLetters(t *testing.T, broker string, timeout time.Duration, done func([]*pb.DeadLetter) bool) []*pb.DeadLetter {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics("flowaudit.deadletter.v1"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*pb.DeadLetter
	for !done(out) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			var dl pb.DeadLetter
			if err := proto.Unmarshal(rec.Value, &dl); err != nil {
				t.Errorf("undecodable dead letter: %v", err)
				return
			}
			out = append(out, &dl)
		})
	}
	return out
}

// TestPoisonDatagram: the 65 KB datagram that used to crash-loop the
// pipeline is dead-lettered with its reason; "run" stays up and the
// 10,000 good flows sent after it all land in ClickHouse.
func TestPoisonDatagram(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	p.Start()

	poison := poisonDatagram(65000)
	c, err := net.Dial("udp", p.NetFlowAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(poison); err != nil {
		t.Fatal(err)
	}
	p.WaitMetric("flowaudit_ingest_dead_letters_total", 1, 30*time.Second)

	exp := newExporter(t, p.NetFlowAddr, simulate.ProtocolIPFIX, 21)
	var want typeTotals
	want.add(exp.send(10000))
	if got := waitFlows(t, ch, want.Flows, 60*time.Second); got != want.Flows {
		t.Fatalf("rows = %d, want exactly %d", got, want.Flows)
	}
	if diff := cmp.Diff(flowTotals(t, ch), map[string]typeTotals{"ipfix": want}); diff != "" {
		t.Errorf("flows in ClickHouse (-got +want):\n%s", diff)
	}
	select {
	case <-p.done:
		t.Fatalf("flowaudit exited:\n%s", p.Logs())
	default:
	}

	dls := deadLetters(t, p.KafkaAddr, 30*time.Second, func(d []*pb.DeadLetter) bool { return len(d) >= 1 })
	type letter struct {
		Stage, Reason string
		Payload       int
	}
	var got []letter
	for _, dl := range dls {
		got = append(got, letter{dl.Stage, dl.Reason, len(dl.Payload)})
	}
	if diff := cmp.Diff(got, []letter{{"ingest.flows", "template_too_small", len(poison)}}); diff != "" {
		t.Errorf("dead letters (-got +want):\n%s", diff)
	}
	// Sent before the exporter's first valid datagram: counted as "other".
	if n := p.Metric(`flowaudit_ingest_decode_errors_total{exporter="other",reason="template_too_small"}`); n != 1 {
		t.Errorf("template_too_small decode errors = %v, want 1", n)
	}
}

// memory returns the current and peak resident set size of the running
// flowaudit process, in bytes.
func (p *pipeline) memory() (rss, peak uint64) {
	p.t.Helper()
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		p.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// metricsSize returns the size of one /metrics scrape.
func (p *pipeline) metricsSize() int {
	p.t.Helper()
	resp, err := http.Get("http://" + p.MetricsAddr + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return len(b)
}

// TestJunkFromManySources sends one 8-byte junk datagram from each of
// 100,000 loopback addresses (127.1.0.0 onwards; Linux routes all of
// 127/8 to lo, so binding them needs no setup): the metric series, the
// log sampler and memory stay bounded, and a real exporter sending
// meanwhile keeps its own series and loses nothing.
func TestJunkFromManySources(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	p.Start()
	target, err := net.ResolveUDPAddr("udp", p.NetFlowAddr)
	if err != nil {
		t.Fatal(err)
	}
	good := newExporter(t, p.NetFlowAddr, simulate.ProtocolIPFIX, 31)
	var want typeTotals
	want.add(good.send(3000))
	p.WaitMetric("flowaudit_ingest_produced_flows_total", 3000, 30*time.Second)
	goodDatagrams := p.Metric("flowaudit_ingest_datagrams_read_total")
	rss0, _ := p.memory()
	size0 := p.metricsSize()

	const senders = 100000
	junk := []byte{0, 10, 0, 8, 0, 0, 0, 1} // an IPFIX header cut at 8 bytes
	for i := 0; i < senders; i++ {
		n := 1<<16 + i
		src := &net.UDPAddr{IP: net.IPv4(127, byte(n>>16), byte(n>>8), byte(n))}
		c, err := net.ListenUDP("udp", src)
		if err != nil {
			t.Fatalf("binding %s: %v", src, err)
		}
		if _, err := c.WriteToUDP(junk, target); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if i%5000 == 4999 {
			// Paced, so that the kernel drops none and counts are exact.
			p.WaitMetric("flowaudit_ingest_datagrams_read_total", goodDatagrams+float64(i+1-2000), 60*time.Second)
		}
		if i == senders/2 {
			want.add(good.send(3000))
		}
	}
	p.WaitMetric("flowaudit_ingest_datagrams_read_total", goodDatagrams+senders+100, 60*time.Second)
	rss1, peak := p.memory()
	size1 := p.metricsSize()
	t.Logf("RSS %.1f MB before, %.1f MB after (peak %.1f MB); /metrics %d bytes before, %d after",
		float64(rss0)/1e6, float64(rss1)/1e6, float64(peak)/1e6, size0, size1)
	if peak >= 300<<20 {
		t.Errorf("peak RSS %d bytes, want under 300 MB", peak)
	}
	if size1 >= 1<<20 {
		t.Errorf("/metrics is %d bytes, want under 1 MB", size1)
	}
	if got := p.Metric(`flowaudit_ingest_decode_errors_total{exporter="other",reason="truncated"}`); got != senders {
		t.Errorf(`decode errors counted as exporter="other" = %v, want %d`, got, senders)
	}
	if got := p.Metric("flowaudit_ingest_exporter_series"); got != 1 {
		t.Errorf("exporters with series of their own = %v, want 1 (the real exporter)", got)
	}
	if got := p.Metric(`flowaudit_ingest_flows_total{exporter="127.0.0.1",flow_type="ipfix"}`); got != float64(want.Flows) {
		t.Errorf("flows of the real exporter = %v, want %d", got, want.Flows)
	}
	if got := waitFlows(t, ch, want.Flows, 60*time.Second); got != want.Flows {
		t.Errorf("rows = %d, want exactly %d", got, want.Flows)
	}
	if n := strings.Count(p.Logs(), "undecodable flow datagram"); n > 10 {
		t.Errorf("%d log lines about undecodable datagrams, want a handful (sampled)", n)
	}
}
