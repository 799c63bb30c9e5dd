package main

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flowaudit/flowaudit/internal/testutil"
)

// produceRefused answers a produce request with a retriable error for
// every partition in it, as a broker whose leadership moved does.
func produceRefused(req kmsg.Request, code int16) kmsg.Response {
	r := req.(*kmsg.ProduceRequest)
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range r.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// faults fails every request of one key for a while through kfake's
// ControlKey and counts them.
type faults struct {
	mu       sync.Mutex
	injected map[string]int
}

func (f *faults) add(b *testutil.PersistentBroker, name string, key kmsg.Key, window time.Duration, answer func(kmsg.Request) (kmsg.Response, error)) {
	c := b.Cluster
	end := time.Now().Add(window)
	c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if time.Now().After(end) {
			c.DropControl() // the broker answers from now on
			return nil, nil, false
		}
		c.KeepControl()
		f.mu.Lock()
		f.injected[name]++
		f.mu.Unlock()
		resp, err := answer(req)
		return resp, err, true
	})
}

// TestBrokerFaultsLoseNothing runs "flowaudit run" against an external
// kfake broker under a steady flow load while the broker refuses
// produce requests (NOT_LEADER_FOR_PARTITION), drops fetch connections,
// and is stopped for 10 s and started again: every flow sent reaches
// ClickHouse once.
func TestBrokerFaultsLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("broker faults under load take about a minute")
	}
	ch := testutil.StartClickHouse(t)
	b := testutil.StartPersistentBroker(t, 2)
	p := newPipeline(t, ch, pipelineOptions{kafkaYAML: "  brokers: [" + b.Addr + "]"})
	p.Start()

	f := &faults{injected: map[string]int{}}
	stop := make(chan struct{})
	var sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); loadSender(t, p.NetFlowAddr, 5000, stop, &sent) }()
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			wg.Wait()
		}
	}()
	injected := func(name string) int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.injected[name]
	}
	p.WaitMetric("flowaudit_sink_rows_total", 1, 60*time.Second)

	// Produce errors: for 5 s the broker refuses every produce request
	// (NOT_LEADER_FOR_PARTITION: stage producers retry them).
	f.add(b, "produce", kmsg.Produce, 5*time.Second, func(req kmsg.Request) (kmsg.Response, error) {
		return produceRefused(req, kerr.NotLeaderForPartition.Code), nil
	})
	time.Sleep(5 * time.Second) // the fault window, under load
	// Fetch errors: for 5 s every fetch request has its connection cut.
	f.add(b, "fetch", kmsg.Fetch, 5*time.Second, func(kmsg.Request) (kmsg.Response, error) {
		return nil, errors.New("injected fetch fault")
	})
	time.Sleep(5 * time.Second)
	if injected("produce") == 0 || injected("fetch") == 0 {
		t.Fatalf("faults injected %v, want produce and fetch requests refused", f.injected)
	}

	// The broker stopped for 10 s under load, then started again from
	// its directory on the same port.
	before := sent.Load()
	b.Stop()
	time.Sleep(10 * time.Second) // the outage itself: its length is the test's input
	b.Start()
	t.Logf("broker down for 10 s while %d flows were sent", sent.Load()-before)
	time.Sleep(3 * time.Second) // load after the restart
	close(stop)
	wg.Wait()
	stopped = true
	total := sent.Load()

	waitFlows(t, ch, total, 120*time.Second)
	p.waitSinkDrained(60 * time.Second)
	got := ch.QueryUint64(t, countFlows)
	received := uint64(p.Metric("flowaudit_ingest_flows_total"))
	t.Logf("sent %d flows, collector received %d, ClickHouse has %d; faults injected: %v", total, received, got, f.injected)
	if received != total {
		t.Errorf("collector received %d of %d flows sent: UDP loss on the test machine, not a broker fault", received, total)
	}
	if got != total {
		t.Errorf("ClickHouse has %d flows, want %d sent (%d lost)", got, total, int64(total)-int64(got))
	}
	p.Stop() // and exits 0
}
