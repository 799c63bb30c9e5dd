package enrich

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/schemas"
	"github.com/flowaudit/flowaudit/schemas/pb"
)

// TestStageSplitsAndDeadLetters: an input record whose enriched form is
// over the broker's limit is split, not fatal; an enriched record the
// broker refuses for good is dead-lettered with its reason, the stage
// goes on and commits past it.
func TestStageSplitsAndDeadLetters(t *testing.T) {
	kcfg := kafka.DefaultConfiguration()
	kcfg.Partitions = 2
	flowsT, enrichedT, deadT := kcfg.Topic(kafka.TopicFlows), kcfg.Topic(kafka.TopicEnriched), kcfg.Topic(kafka.TopicDeadLetter)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, flowsT, kcfg.Topic(kafka.TopicAccess), enrichedT, deadT))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	kcfg.Brokers = []string{addr}
	// Long labels: the enriched record is much larger than its input.
	long := strings.Repeat("s", 40)
	pol := "segments:\n  - name: web" + long + "\n    cidrs: [10.1.0.0/16]\n  - name: db" + long + "\n    cidrs: [10.2.0.0/16]\n"
	policyPath := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(enrichedT, deadT), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	td, err := kadm.NewClient(cl).ListTopics(ctx, enrichedT)
	if err != nil {
		t.Fatal(err)
	}
	enrichedID := td[enrichedT].ID

	cfg := DefaultConfiguration()
	cfg.ConsumerGroup = "enrich-hostile"
	s, err := New(reporter.New(slog.New(slog.NewTextHandler(io.Discard, nil))), cfg, Dependencies{Kafka: kcfg, Policy: compilePolicy(t, pol), PolicyContent: []byte(pol), PolicyFile: policyPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	src := addr4(10, 1, 0, 5) // one source: one output partition
	batch := func(n int, bytes uint64) []byte {
		b := schemas.FlowBatch{TimeReceived: uint64(time.Now().UnixNano()), Exporter: addr4(192, 0, 2, 1), Type: schemas.FlowTypeIPFIX}
		for i := 0; i < n; i++ {
			b.Flows = append(b.Flows, schemas.Flow{SrcAddr: src, DstAddr: addr4(10, 2, 0, byte(i)), Bytes: bytes, Packets: 1, Proto: 6})
		}
		return schemas.AppendFlowBatch(nil, &b)
	}
	// 1. 12,000 flows: ~600 KB in, over 1.5 MB enriched.
	big := batch(12000, 1)
	if len(big) > kafka.MaxRecordBytes {
		t.Fatalf("input record of %d bytes does not fit the broker itself", len(big))
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: flowsT, Value: big}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var records, flows int
	var dead []*pb.DeadLetter
	poll := func(until func() bool) {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for !until() && pctx.Err() == nil {
			cl.PollFetches(pctx).EachRecord(func(rec *kgo.Record) {
				if rec.Topic == deadT {
					var dl pb.DeadLetter
					if err := proto.Unmarshal(rec.Value, &dl); err != nil {
						t.Fatal(err)
					}
					dead = append(dead, &dl)
					return
				}
				if len(rec.Value) > kafka.MaxRecordBytes {
					t.Errorf("enriched record of %d bytes, limit %d", len(rec.Value), kafka.MaxRecordBytes)
				}
				var b schemas.FlowBatch
				if err := schemas.UnmarshalFlowBatch(rec.Value, &b); err != nil {
					t.Fatal(err)
				}
				records++
				flows += len(b.Flows)
			})
		}
	}
	poll(func() bool { return flows >= 12000 })
	if flows != 12000 || records < 2 {
		t.Fatalf("enriched %d flows in %d records, want 12000 in at least 2", flows, records)
	}

	// 2. The broker refuses the next enriched record for good, once.
	var refused atomic.Int32
	cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.ProduceRequest)
		hit := false
		for _, rt := range req.Topics {
			if rt.Topic == enrichedT || rt.TopicID == enrichedID {
				hit = true
			}
		}
		cluster.KeepControl()
		if !hit || !refused.CompareAndSwap(0, 1) {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.MessageTooLarge.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: flowsT, Value: batch(3, 2)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	poll(func() bool { return len(dead) > 0 })
	// 3. The stage is still up: the next record goes through.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: flowsT, Value: batch(5, 3)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	poll(func() bool { return flows >= 12005 })
	select {
	case err := <-s.Done():
		t.Fatalf("stage stopped: %v", err)
	default:
	}
	if refused.Load() != 1 || flows != 12005 || len(dead) != 1 {
		t.Fatalf("refused %d produce requests; %d flows enriched, %d dead letters; want 1, 12005, 1", refused.Load(), flows, len(dead))
	}
	type letter struct {
		Stage, Reason string
		NamesInput    bool
	}
	got := letter{dead[0].Stage, dead[0].Reason, strings.HasPrefix(dead[0].Source, flowsT+" partition ") && strings.Contains(dead[0].Source, " offset ")}
	if diff := cmp.Diff(got, letter{"enrich", "record_too_large", true}); diff != "" {
		t.Errorf("dead letter (-got +want):\n%s", diff)
	}
	if !strings.Contains(dead[0].Error, "MESSAGE_TOO_LARGE") || len(dead[0].Payload) == 0 {
		t.Errorf("dead letter has no error or payload: %+v", dead[0])
	}
	// Offsets committed past all three input records.
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(30 * time.Second)
	for {
		offs, err := adm.FetchOffsets(ctx, cfg.ConsumerGroup)
		var committed int64
		if err == nil {
			offs.Each(func(o kadm.OffsetResponse) {
				if o.Topic == flowsT {
					committed += o.At
				}
			})
		}
		if committed == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets sum to %d, want 3 (err %v)", committed, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
