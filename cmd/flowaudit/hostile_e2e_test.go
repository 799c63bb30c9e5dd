package main

import (
	"context"
	encbin "encoding/binary"
	"net"
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
	if got := waitCount(t, ch, countFlows, want.Flows, 60*time.Second); got != want.Flows {
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
	if n := p.Metric(`flowaudit_ingest_decode_errors_total{exporter="127.0.0.1",reason="template_too_small"}`); n != 1 {
		t.Errorf("template_too_small decode errors = %v, want 1", n)
	}
}
