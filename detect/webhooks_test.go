package detect

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/detect/webhook"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	ftestutil "github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// receiver is a healthy endpoint: it records when each alert id arrived
// and how many times.
type receiver struct {
	mu    sync.Mutex
	first map[string]time.Time
	count map[string]int
}

func newReceiver(t *testing.T) (*receiver, string) {
	r := &receiver{first: map[string]time.Time{}, count: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		id := req.Header.Get("X-Flowaudit-Alert-Id")
		r.mu.Lock()
		if _, ok := r.first[id]; !ok {
			r.first[id] = time.Now()
		}
		r.count[id]++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL + "/hook"
}

func (r *receiver) snapshot() (map[string]time.Time, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, c := map[string]time.Time{}, map[string]int{}
	for k, v := range r.first {
		f[k] = v
	}
	for k, v := range r.count {
		c[k] = v
	}
	return f, c
}

// hangingEndpoint accepts connections and never answers (nor reads).
func hangingEndpoint(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String() + "/never"
}

func waitFor(t *testing.T, deadline time.Time, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type hookRig struct {
	t       *testing.T
	kcfg    kafka.Configuration
	hooks   webhook.Configuration
	cl      *kgo.Client
	adm     *kadm.Client
	next    int
	stored  map[string]time.Time
	offsets map[string]int64
}

func newHookRig(t *testing.T, hooks webhook.Configuration) *hookRig {
	_, addr := ftestutil.StartBroker(t, 1)
	kcfg := kafka.DefaultConfiguration()
	kcfg.Brokers = []string{addr}
	kcfg.Partitions = 1
	// As run does: the stage topics exist before the stages start.
	if err := kafka.EnsureTopics(context.Background(), kcfg, slog.New(slog.NewTextHandler(io.Discard, nil)), 10*time.Second,
		kcfg.Topic(kafka.TopicAlerts), kcfg.Topic(kafka.TopicDeadLetter)); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &hookRig{t: t, kcfg: kcfg, hooks: hooks, cl: cl, adm: kadm.NewClient(cl),
		stored: map[string]time.Time{}, offsets: map[string]int64{}}
}

func (g *hookRig) start() (*Component, *prometheusRegistry) {
	cfg := DefaultConfiguration()
	cfg.Baseline = false
	cfg.InstanceID = "webhook-test"
	r := newTestReporter()
	c, err := New(r, cfg, Dependencies{Kafka: g.kcfg, Webhooks: g.hooks})
	if err != nil {
		g.t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		g.t.Fatal(err)
	}
	return c, &prometheusRegistry{r: r}
}

// produce stores n alerts on the alerts topic and notes when each was
// acknowledged (stored).
func (g *hookRig) produce(n int) []string {
	var ids []string
	for range n {
		g.next++
		a := schemas.Alert{ID: fmt.Sprintf("alert-%03d", g.next), Kind: "port_scan", Severity: schemas.SeverityHigh,
			Time: uint64(time.Now().UnixNano())}
		rec := &kgo.Record{Topic: g.kcfg.Topic(kafka.TopicAlerts), Value: schemas.AppendAlert(nil, &a)}
		if err := g.cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			g.t.Fatal(err)
		}
		g.stored[a.ID] = time.Now()
		g.offsets[a.ID] = rec.Offset
		ids = append(ids, a.ID)
	}
	return ids
}

func (g *hookRig) committed() int64 {
	resp, err := g.adm.FetchOffsets(context.Background(), DefaultConfiguration().WebhookConsumerGroup)
	if err != nil {
		return -1
	}
	o, ok := resp.Lookup(g.kcfg.Topic(kafka.TopicAlerts), 0)
	if !ok {
		return -1
	}
	return o.At
}

// TestWebhookHangingEndpointIsolated: beside an endpoint that accepts
// connections and never answers (each attempt runs into the 10 s default
// timeout, eight attempts per alert), every alert reaches the healthy
// endpoint within 10 s of being stored; the hanging endpoint's small
// queue drops its oldest alerts (flowaudit_webhook_dropped_total), and
// nothing is committed while it still holds alerts.
func TestWebhookHangingEndpointIsolated(t *testing.T) {
	healthy, healthyURL := newReceiver(t)
	g := newHookRig(t, webhook.Configuration{Webhooks: []webhook.Endpoint{
		{URL: hangingEndpoint(t), Name: "hanging", QueueSize: 4},
		{URL: healthyURL, Name: "healthy"},
	}})
	c, reg := g.start()
	defer c.Stop()

	ids := g.produce(10)
	waitFor(t, time.Now().Add(10*time.Second), "the first 10 alerts at the healthy endpoint", func() bool {
		f, _ := healthy.snapshot()
		return len(f) == 10
	})
	ids = append(ids, g.produce(10)...)
	waitFor(t, g.stored[ids[len(ids)-1]].Add(10*time.Second), "20 alerts at the healthy endpoint", func() bool {
		f, _ := healthy.snapshot()
		return len(f) == 20
	})
	first, count := healthy.snapshot()
	for _, id := range ids {
		if lag := first[id].Sub(g.stored[id]); lag > 10*time.Second {
			t.Errorf("%s reached the healthy endpoint %v after being stored, want <= 10s", id, lag)
		}
		if count[id] != 1 {
			t.Errorf("%s delivered %d times to the healthy endpoint, want 1", id, count[id])
		}
	}
	// 20 alerts: one in flight, 4 waiting, the others dropped oldest
	// first.
	if n := reg.counter(t, "flowaudit_webhook_dropped_total", "hanging"); n < 10 {
		t.Errorf("dropped_total{hanging} = %v, want >= 10", n)
	}
	// Dropped alerts are done (dead-lettered) for every endpoint, but the
	// hanging endpoint still holds at least 5 (one in flight, 4 queued):
	// nothing is committed past the oldest of them.
	if at := g.committed(); at > 15 {
		t.Errorf("committed offset = %d while the hanging endpoint holds 5 alerts, want <= 15", at)
	}
}

// TestWebhookRestartNoRedelivery: the at-least-once bound is "after a
// restart an endpoint may receive again the alerts at or after the
// committed offset, i.e. from the oldest alert some endpoint had not
// finished with at the stop". With a failing endpoint that gives up fast
// (refused connections, one attempt), every delivered alert is committed
// before the stop, so the healthy endpoint receives each alert exactly
// once across the restart; the given-up alerts are dead-lettered.
func TestWebhookRestartNoRedelivery(t *testing.T) {
	healthy, healthyURL := newReceiver(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String() + "/down"
	ln.Close()
	g := newHookRig(t, webhook.Configuration{Webhooks: []webhook.Endpoint{
		{URL: refused, Name: "down", MaxAttempts: 1, Timeout: time.Second},
		{URL: healthyURL, Name: "healthy"},
	}})
	c, _ := g.start()
	g.produce(10)
	waitFor(t, time.Now().Add(10*time.Second), "10 alerts delivered and committed", func() bool {
		f, _ := healthy.snapshot()
		return len(f) == 10 && g.committed() == 10
	})
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	c2, _ := g.start()
	defer c2.Stop()
	ids := g.produce(5)
	waitFor(t, g.stored[ids[len(ids)-1]].Add(10*time.Second), "15 alerts at the healthy endpoint, committed", func() bool {
		f, _ := healthy.snapshot()
		return len(f) == 15 && g.committed() == 15
	})
	_, count := healthy.snapshot()
	for id, n := range count {
		if n != 1 {
			t.Errorf("%s delivered %d times to the healthy endpoint, want 1 (committed offset %d)", id, n, g.committed())
		}
	}
	// The down endpoint gave up on every alert: one dead letter each.
	dl := g.deadLetters(15)
	if dl != 15 {
		t.Errorf("dead letters = %d, want 15", dl)
	}
}

func (g *hookRig) deadLetters(want int) int {
	cl, err := kgo.NewClient(kgo.SeedBrokers(g.kcfg.Brokers...), kgo.ConsumeTopics(g.kcfg.Topic(kafka.TopicDeadLetter)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		g.t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n < want && ctx.Err() == nil {
		n += len(cl.PollFetches(ctx).Records())
	}
	return n
}

func newTestReporter() *reporter.Reporter {
	return reporter.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

type prometheusRegistry struct{ r *reporter.Reporter }

// counter reads name{endpoint=endpoint}.
func (p *prometheusRegistry) counter(t *testing.T, name, endpoint string) float64 {
	t.Helper()
	mfs, err := p.r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "endpoint" && l.GetValue() == endpoint {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{endpoint=%q}", name, endpoint)
	return 0
}

// TestWebhookRestartWithHangingEndpoint: stopped while an endpoint hangs,
// the stage leaves that endpoint's alerts uncommitted; after the restart
// the healthy endpoint receives again only alerts at or after the offset
// committed at the stop (the documented at-least-once bound), and each of
// those at most once more.
func TestWebhookRestartWithHangingEndpoint(t *testing.T) {
	healthy, healthyURL := newReceiver(t)
	g := newHookRig(t, webhook.Configuration{Webhooks: []webhook.Endpoint{
		{URL: hangingEndpoint(t), Name: "hanging", QueueSize: 4},
		{URL: healthyURL, Name: "healthy"},
	}})
	c, _ := g.start()
	g.produce(10)
	waitFor(t, time.Now().Add(10*time.Second), "10 alerts at the healthy endpoint", func() bool {
		f, _ := healthy.snapshot()
		return len(f) == 10
	})
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	atStop := g.committed()
	c2, _ := g.start()
	defer c2.Stop()
	ids := g.produce(5)
	waitFor(t, g.stored[ids[len(ids)-1]].Add(10*time.Second), "the 5 new alerts at the healthy endpoint", func() bool {
		_, n := healthy.snapshot()
		for _, id := range ids {
			if n[id] == 0 {
				return false
			}
		}
		return true
	})
	_, count := healthy.snapshot()
	if len(count) != 15 {
		t.Errorf("healthy endpoint got %d distinct alerts, want 15", len(count))
	}
	for id, n := range count {
		off := g.offsets[id]
		switch {
		case off < atStop && n != 1:
			t.Errorf("%s (offset %d, committed %d at the stop) delivered %d times, want 1", id, off, atStop, n)
		case n > 2:
			t.Errorf("%s (offset %d) delivered %d times, want at most 2", id, off, n)
		}
	}
}

func TestCommitTracker(t *testing.T) {
	tr := newCommitTracker()
	var es []*trackEntry
	for off := range int64(5) {
		es = append(es, tr.add(&kgo.Record{Topic: "a", Partition: 0, Offset: off, LeaderEpoch: 1}))
	}
	other := tr.add(&kgo.Record{Topic: "a", Partition: 1, Offset: 7})
	type step struct {
		done  []int // indexes into es, all final
		stop  int   // index into es done with final=false, -1 none
		other bool
		want  map[string]map[int32]kgo.EpochOffset
	}
	steps := []step{
		{done: []int{1, 2}, stop: -1, want: nil},
		{done: []int{0}, stop: -1, want: map[string]map[int32]kgo.EpochOffset{"a": {0: {Epoch: 1, Offset: 3}}}},
		{done: nil, stop: 3, other: true, want: map[string]map[int32]kgo.EpochOffset{"a": {1: {Epoch: 0, Offset: 8}}}},
		{done: []int{4}, stop: -1, want: nil}, // stuck behind the stopped offset 3
	}
	for i, s := range steps {
		for _, j := range s.done {
			tr.done(es[j], true)
		}
		if s.stop >= 0 {
			tr.done(es[s.stop], false)
		}
		if s.other {
			tr.done(other, true)
		}
		if diff := cmp.Diff(tr.ready(), s.want); diff != "" {
			t.Errorf("step %d: ready() (-got +want):\n%s", i, diff)
		}
	}
}
