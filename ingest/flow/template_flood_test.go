package flow

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/internal/simulate"
	fatestutil "github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// templateFlood returns an IPFIX message announcing n new templates,
// IDs first to first+n-1.
func templateFlood(first, n int) []byte {
	msg := make([]byte, 16, 16+4+n*12)
	binary.BigEndian.PutUint16(msg, 10)
	set := []byte{0, 2, 0, 0}
	for i := 0; i < n; i++ {
		set = binary.BigEndian.AppendUint16(set, uint16(first+i))
		set = append(set, 0, 2, 0, 8, 0, 4, 0, 1, 0, 4) // two fields: src (4), bytes (4)
	}
	binary.BigEndian.PutUint16(set[2:], uint16(len(set)))
	msg = append(msg, set...)
	binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
	return msg
}

// TestTemplateFlood: a flood of new templates on the reader that also
// carries a real exporter's flows. Persistence is held inside its first
// save for the whole flood: every good flow still reaches the broker
// meanwhile (the reader never waits for the writer), the flooding
// exporter keeps only max_templates_per_exporter templates, and the file
// is written a few times (debounced), not once per datagram.
func TestTemplateFlood(t *testing.T) {
	kcfg := kafka.DefaultConfiguration()
	flowsTopic := kcfg.Topic(kafka.TopicFlows)
	_, addr := fatestutil.StartBroker(t, 1, flowsTopic, kcfg.Topic(kafka.TopicDeadLetter))
	kcfg.Brokers = []string{addr}
	cfg := DefaultConfiguration()
	cfg.Listen = []string{"netflow://127.0.0.1:0"}
	cfg.Readers = 1 // one reader: the flood and the good flows share it
	cfg.MaxTemplatesPerExporter = 50
	dataDir := t.TempDir()
	c, err := New(reporter.New(slog.New(slog.NewTextHandler(io.Discard, nil))), cfg, Dependencies{Kafka: kcfg, DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	var saves, saved atomic.Int32
	entered, release := make(chan struct{}, 100), make(chan struct{})
	save := c.save
	c.save = func() error {
		saves.Add(1)
		entered <- struct{}{}
		<-release
		defer saved.Add(1)
		return save()
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
		_ = c.Stop()
	}()
	target, err := net.ResolveUDPAddr("udp", c.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	flooder, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, target)
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	good, err := net.DialUDP("udp", nil, target)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()

	// The first template change wakes the writer, which then blocks
	// inside its save until the end of the test.
	const perDatagram = 4
	if _, err := flooder.Write(templateFlood(256, perDatagram)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the template writer never started a save")
	}

	enc := simulate.NewEncoder(simulate.ProtocolIPFIX, simulate.EncoderOptions{ObservationID: 1})
	gen := simulate.NewGenerator(3, simulate.ForProtocol(simulate.ProtocolIPFIX))
	flows := make([]schemas.Flow, 30)
	var buf []byte
	const floodDatagrams, goodEvery = 2000, 10
	wantFlows := 0
	for i := 1; i < floodDatagrams; i++ {
		if _, err := flooder.Write(templateFlood(256+i*perDatagram, perDatagram)); err != nil {
			t.Fatal(err)
		}
		if i%goodEvery == 0 {
			for j := range flows {
				gen.Next(&flows[j])
			}
			buf = enc.Encode(buf[:0], flows)
			if _, err := good.Write(buf); err != nil {
				t.Fatal(err)
			}
			wantFlows += len(flows)
		}
	}

	// Every good flow reaches the broker while the writer is still stuck.
	consumer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(flowsTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gotFlows := 0
	for gotFlows < wantFlows && ctx.Err() == nil {
		consumer.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			var b schemas.FlowBatch
			if err := schemas.UnmarshalFlowBatch(rec.Value, &b); err != nil {
				t.Fatal(err)
			}
			gotFlows += len(b.Flows)
		})
	}
	if gotFlows != wantFlows {
		t.Fatalf("%d good flows reached the broker during the flood, want %d", gotFlows, wantFlows)
	}
	if n := saved.Load(); n != 0 {
		t.Fatalf("%d saves finished; the test needs the writer held", n)
	}
	// The flood was decoded too (same reader, sent before the last good
	// datagram): all but the first 50 templates refused.
	refusedDatagrams := floodDatagrams - 50/perDatagram
	if got := readCounter(c.metrics.decodeErrors.WithLabelValues("127.0.0.2", "template_limit")); got != float64(refusedDatagrams) {
		t.Errorf("template_limit errors of the flooder = %v, want %d", got, refusedDatagrams)
	}

	close(release)
	released = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	var file struct {
		Templates []struct {
			Exporter string `json:"exporter"`
		} `json:"templates"`
	}
	data, err := os.ReadFile(filepath.Join(dataDir, "templates", "templates.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, tr := range file.Templates {
		per[tr.Exporter]++
	}
	if per["127.0.0.2"] != 50 || per["127.0.0.1"] == 0 {
		t.Errorf("templates saved per exporter %v, want 50 for the flooder and the real exporter's", per)
	}
	// One save held through the flood, at most one more after it, and
	// the one at Stop: debounced, not one per datagram.
	if n := saves.Load(); n > 3 {
		t.Errorf("%d template saves for %d changed datagrams, want at most 3", n, floodDatagrams)
	}
}
