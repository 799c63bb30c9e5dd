package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkBrokerProduce measures what kafka.embedded_sync_writes costs:
// records of 1,500 bytes (one datagram's batch of 30 flows) produced to
// the embedded broker on the local disk, with and without an fsync per
// record batch. "throughput" keeps every record in flight at once (large
// batches, few fsyncs); "ack" produces one record at a time and waits
// for its acknowledgement (one fsync each: the latency a lone record
// sees). Figures are in README.md.
func BenchmarkBrokerProduce(b *testing.B) {
	for _, mode := range []string{"throughput", "ack"} {
		for _, syncWrites := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/sync_writes=%v", mode, syncWrites), func(b *testing.B) { benchProduce(b, mode, syncWrites) })
		}
	}
}

func benchProduce(b *testing.B, mode string, syncWrites bool) {
	{
		{
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			cfg := DefaultConfiguration()
			cfg.EmbeddedListen = addr
			cfg.Partitions = 4
			cfg.EmbeddedSyncWrites = syncWrites
			br, err := NewBroker(nil, cfg, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			if err := br.Start(); err != nil {
				b.Fatal(err)
			}
			defer br.Stop()
			topic := cfg.Topic(TopicFlows)
			if err := EnsureTopics(context.Background(), cfg, slog.New(slog.DiscardHandler), 10*time.Second, topic); err != nil {
				b.Fatal(err)
			}
			cl, err := kgo.NewClient(append(ClientOptions(cfg, "bench"), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(cfg.ProduceLinger))...)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			value := make([]byte, 1500)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var firstErr error
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			start := time.Now()
			if mode == "ack" {
				for i := 0; i < b.N; i++ {
					if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte{byte(i)}, Value: value}).FirstErr(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/ack")
				return
			}
			for i := 0; i < b.N; i++ {
				wg.Add(1)
				key := []byte{byte(i), byte(i >> 8)}
				cl.Produce(context.Background(), &kgo.Record{Key: key, Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					wg.Done()
				})
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			if firstErr != nil {
				b.Fatal(firstErr)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
			b.ReportMetric(float64(b.N)*30/el.Seconds(), "flows/s")
		}
	}
}
