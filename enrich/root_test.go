package enrich

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

func TestDefaultConfiguration(t *testing.T) {
	cfg := DefaultConfiguration()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.IdentityTTL != 8*time.Hour {
		t.Errorf("identity_ttl = %v, want 8h (DESIGN.md)", cfg.IdentityTTL)
	}
	bad := cfg
	bad.GeoIPCountryDB = "/nonexistent/country.mmdb"
	bad.IdentityTTL = 0
	err := bad.Validate()
	for _, key := range []string{"enrich.identity_ttl", "enrich.geoip_country_db"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate() = %v, want an error naming %s", err, key)
		}
	}
}

const stagePolicy = `segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
rules:
  - name: web-to-db
    from: [web]
    to: [db]
    ports: ["5432/tcp"]
`

// TestStage runs the stage against an in-process broker: a login on the
// access topic, then a flow batch on the flows topic; the enriched topic
// gets the flows labelled, partitioned by source, with GeoIP fields.
func TestStage(t *testing.T) {
	kcfg := kafka.DefaultConfiguration()
	kcfg.Partitions = 3
	_, addr := testutil.StartBroker(t, 3, kcfg.Topic(kafka.TopicFlows), kcfg.Topic(kafka.TopicAccess), kcfg.Topic(kafka.TopicEnriched))
	kcfg.Brokers = []string{addr}
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(stagePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	countryDB, asnDB := writeGeoDBs(t, dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(kcfg.Topic(kafka.TopicEnriched)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	now := time.Now()
	login := schemas.AccessEvent{Time: uint64(now.Add(-time.Minute).UnixNano()), Source: "sshd", User: "alice",
		SrcAddr: addr4(10, 1, 0, 5), Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: kcfg.Topic(kafka.TopicAccess), Value: schemas.AppendAccessEvent(nil, &login)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfiguration()
	cfg.GeoIPCountryDB, cfg.GeoIPASNDB = countryDB, asnDB
	r := reporter.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s, err := New(r, cfg, Dependencies{Kafka: kcfg, Policy: compilePolicy(t, stagePolicy), PolicyContent: []byte(stagePolicy), PolicyFile: policyPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	ts := uint64(now.UnixNano())
	in := schemas.FlowBatch{TimeReceived: ts, Exporter: addr4(192, 0, 2, 1), Type: schemas.FlowTypeIPFIX, Flows: []schemas.Flow{
		{SrcAddr: addr4(10, 1, 0, 5), DstAddr: addr4(10, 2, 0, 9), SrcPort: 50000, DstPort: 5432, Proto: 6, Bytes: 10, TimeStart: ts},
		{SrcAddr: addr4(10, 1, 0, 5), DstAddr: addr4(10, 2, 0, 9), SrcPort: 50001, DstPort: 22, Proto: 6, Bytes: 20, TimeStart: ts},
		{SrcAddr: addr4(203, 0, 113, 7), DstAddr: addr4(198, 51, 100, 1), SrcPort: 50002, DstPort: 443, Proto: 6, Bytes: 30, TimeStart: ts},
	}}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: kcfg.Topic(kafka.TopicFlows), Value: schemas.AppendFlowBatch(nil, &in)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	type out struct {
		Bytes                   uint64
		SrcSeg, DstSeg, Verdict string
		Rule, SrcID, SrcC, DstC string
		DstAS                   uint32
		Partition               int32
	}
	var got []out
	deadline, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for len(got) < 3 && deadline.Err() == nil {
		fetches := cl.PollFetches(deadline)
		fetches.EachRecord(func(rec *kgo.Record) {
			var b schemas.FlowBatch
			if err := schemas.UnmarshalFlowBatch(rec.Value, &b); err != nil {
				t.Fatal(err)
			}
			for _, f := range b.Flows {
				if want := int32(partitionOf(f.SrcAddr, 3)); rec.Partition != want {
					t.Errorf("flow from %v on partition %d, want %d", f.SrcAddr, rec.Partition, want)
				}
				got = append(got, out{f.Bytes, f.SrcSegment, f.DstSegment, f.Verdict.String(), f.Rule, f.SrcIdentity, f.SrcCountry, f.DstCountry, f.DstAS, 0})
			}
		})
	}
	want := []out{
		{Bytes: 10, SrcSeg: "web", DstSeg: "db", Verdict: "allowed", Rule: "web-to-db", SrcID: "alice"},
		{Bytes: 20, SrcSeg: "web", DstSeg: "db", Verdict: "violation", SrcID: "alice"},
		{Bytes: 30, SrcSeg: "external", DstSeg: "external", Verdict: "intra_segment", SrcC: "AU", DstAS: 64500},
	}
	if diff := cmp.Diff(got, want, cmp.Transformer("sort", func(o []out) []out {
		c := append([]out(nil), o...)
		for i := range c {
			for j := i + 1; j < len(c); j++ {
				if c[j].Bytes < c[i].Bytes {
					c[i], c[j] = c[j], c[i]
				}
			}
		}
		return c
	})); diff != "" {
		t.Errorf("enriched flows (-got +want):\n%s", diff)
	}
}

func addr4(a, b, c, d byte) schemas.Addr { return schemas.AddrFrom4([4]byte{a, b, c, d}) }
