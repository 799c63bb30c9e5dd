package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// wantID computes the documented alert id independently of alertID.
func wantID(kind, key string, win uint64) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + key + "\x00" + fmt.Sprint(win)))
	return hex.EncodeToString(sum[:16])
}

// only returns the default config with just the named detectors enabled.
func only(kinds ...string) Configuration {
	c := DefaultConfiguration()
	c.PolicyViolation.Enabled, c.NewEdge.Enabled, c.AddressScan.Enabled, c.PortScan.Enabled = false, false, false, false
	c.VolumeSpike.Enabled, c.AuthBruteforce.Enabled, c.UnattributedAccess.Enabled, c.LateralChain.Enabled = false, false, false, false
	for _, k := range kinds {
		switch k {
		case schemas.AlertPolicyViolation:
			c.PolicyViolation.Enabled = true
		case schemas.AlertNewEdge:
			c.NewEdge.Enabled = true
		case schemas.AlertAddressScan:
			c.AddressScan.Enabled = true
		case schemas.AlertPortScan:
			c.PortScan.Enabled = true
		case schemas.AlertVolumeSpike:
			c.VolumeSpike.Enabled = true
		case schemas.AlertAuthBruteforce:
			c.AuthBruteforce.Enabled = true
		case schemas.AlertUnattributedAccess:
			c.UnattributedAccess.Enabled = true
		case schemas.AlertLateralChain:
			c.LateralChain.Enabled = true
		}
	}
	return c
}

// got is the part of an alert the table asserts.
type got struct {
	ID       string
	Kind     string
	Severity schemas.Severity
	Time     uint64
	Count    uint64
	Update   bool
	Summary  string
}

func project(as []*schemas.Alert) []got {
	out := []got{}
	for _, a := range as {
		s := a.Summary
		if a.Kind == schemas.AlertVolumeSpike {
			s, _, _ = strings.Cut(s, ", above") // the rest holds float statistics
		}
		out = append(out, got{a.ID, a.Kind, a.Severity, a.Time, a.Count, a.Update, s})
	}
	return out
}

func failedLogin(src, user string, t uint64) schemas.AccessEvent {
	return schemas.AccessEvent{Time: t, Source: "sshd", User: user, SrcAddr: addr(src), DstAddr: addr("10.1.0.20"),
		DstPort: 22, Action: schemas.ActionLogin, Outcome: schemas.OutcomeFailure}
}

func TestDetectors(t *testing.T) {
	m := testMatcher(t, testPolicy)
	const (
		pv = schemas.AlertPolicyViolation
		ne = schemas.AlertNewEdge
		as = schemas.AlertAddressScan
		ps = schemas.AlertPortScan
		vs = schemas.AlertVolumeSpike
		ab = schemas.AlertAuthBruteforce
		ua = schemas.AlertUnattributedAccess
		lc = schemas.AlertLateralChain
	)
	hi, med, crit, low := schemas.SeverityHigh, schemas.SeverityMedium, schemas.SeverityCritical, schemas.SeverityLow
	_ = low
	cases := []struct {
		name string
		cfg  Configuration
		run  func(h *harness)
		want []got
	}{
		{
			name: "policy_violation aggregated per window",
			cfg:  only(pv),
			run: func(h *harness) {
				for _, s := range []time.Duration{1, 10, 20} {
					h.flow(flowSpec{src: "10.1.0.5", dst: "10.2.0.10", dport: 22, at: at(s * time.Second)})
				}
				h.flow(flowSpec{src: "10.3.0.7", dst: "10.2.0.10", dport: 5432, at: at(time.Second)}) // allowed
				h.advance(at(2 * time.Minute))
			},
			want: []got{
				{wantID(pv, "10.1.0.5|db|22|6", t0), pv, hi, at(time.Second), 1, false,
					"10.1.0.5 (web) sent 1 flow to db on 22/tcp that no rule allows, within 1m"},
				{wantID(pv, "10.1.0.5|db|22|6", t0), pv, hi, at(time.Second), 3, true,
					"10.1.0.5 (web) sent 3 flows to db on 22/tcp that no rule allows, within 1m"},
			},
		},
		{
			name: "address_scan fires at threshold, updates at close",
			cfg:  only(as),
			run: func(h *harness) {
				for i := 1; i <= 30; i++ {
					h.flow(syn("10.1.0.5", fmt.Sprintf("10.2.1.%d", i), 5432, at(time.Duration(i)*time.Second)))
				}
				h.advance(at(6 * time.Minute))
			},
			want: []got{
				{wantID(as, "10.1.0.5|db|5432|6", t0), as, crit, at(25 * time.Second), 25, false,
					"10.1.0.5 (web) reached 25 hosts in db on 5432/tcp within 5m"},
				{wantID(as, "10.1.0.5|db|5432|6", t0), as, crit, at(25 * time.Second), 30, true,
					"10.1.0.5 (web) reached 30 hosts in db on 5432/tcp within 5m"},
			},
		},
		{
			name: "address_scan below threshold",
			cfg:  only(as),
			run: func(h *harness) {
				for i := 1; i <= 24; i++ {
					h.flow(syn("10.1.0.5", fmt.Sprintf("10.2.1.%d", i), 5432, at(time.Duration(i)*time.Second)))
				}
				h.advance(at(6 * time.Minute))
			},
		},
		{
			name: "address_scan quiet for a busy client with a few unanswered SYNs",
			cfg:  only(as),
			run: func(h *harness) {
				for i := 1; i <= 40; i++ {
					dst := fmt.Sprintf("10.3.1.%d", i)
					for j := 0; j < 4; j++ {
						h.flow(flowSpec{src: "10.1.0.6", dst: dst, dport: 8080, at: at(time.Duration(i) * time.Second)})
					}
					h.flow(syn("10.1.0.6", dst, 8080, at(time.Duration(i)*time.Second)))
				}
				h.advance(at(6 * time.Minute))
			},
		},
		{
			name: "address_scan ignores the source's own segment",
			cfg:  only(as),
			run: func(h *harness) {
				for i := 1; i <= 30; i++ {
					h.flow(syn("10.1.0.5", fmt.Sprintf("10.1.1.%d", i), 5432, at(time.Duration(i)*time.Second)))
				}
			},
		},
		{
			name: "port_scan",
			cfg:  only(ps),
			run: func(h *harness) {
				for i := 0; i < 20; i++ {
					h.flow(syn("192.0.2.7", "10.1.0.20", uint16(1000+i), at(time.Duration(i)*time.Second)))
				}
				h.advance(at(6 * time.Minute))
			},
			want: []got{
				{wantID(ps, "192.0.2.7|10.1.0.20", t0), ps, med, at(14 * time.Second), 15, false,
					"192.0.2.7 (external) probed 15 ports of 10.1.0.20 (web) within 5m"},
				{wantID(ps, "192.0.2.7|10.1.0.20", t0), ps, med, at(14 * time.Second), 20, true,
					"192.0.2.7 (external) probed 20 ports of 10.1.0.20 (web) within 5m"},
			},
		},
		{
			name: "port_scan below threshold",
			cfg:  only(ps),
			run: func(h *harness) {
				for i := 0; i < 14; i++ {
					h.flow(syn("192.0.2.7", "10.1.0.20", uint16(1000+i), at(time.Duration(i)*time.Second)))
				}
				h.advance(at(6 * time.Minute))
			},
		},
		{
			name: "unattributed_access into a sensitive segment",
			cfg:  only(ua),
			run: func(h *harness) {
				h.flow(flowSpec{src: "10.3.0.7", dst: "10.2.0.10", dport: 5432, at: at(time.Second)})
				h.flow(flowSpec{src: "10.3.0.10", dst: "10.2.0.10", dport: 5432, at: at(time.Second)}) // svc-checkout
				h.flow(flowSpec{src: "10.3.0.7", dst: "10.1.0.10", dport: 5432, at: at(time.Second)})  // web: not tagged
				h.flow(flowSpec{src: "10.2.0.10", dst: "10.2.0.11", dport: 5432, at: at(time.Second)}) // inside db
				h.advance(at(2 * time.Minute))
			},
			want: []got{{wantID(ua, "10.3.0.7|db|5432|6", t0), ua, hi, at(time.Second), 1, false,
				"10.3.0.7 (app) sent 1 flow to db (tagged sensitive) on 5432/tcp without an identity, within 1m"}},
		},
		{
			name: "auth_bruteforce per source, then success after failures",
			cfg:  only(ab),
			run: func(h *harness) {
				for i := 1; i <= 12; i++ {
					h.access(failedLogin("203.0.113.9", "root", at(time.Duration(i)*time.Second)))
				}
				ok := failedLogin("203.0.113.9", "root", at(20*time.Second))
				ok.Outcome = schemas.OutcomeSuccess
				h.access(ok)
				h.advance(at(6 * time.Minute))
			},
			want: []got{
				{wantID(ab, "src|203.0.113.9", t0), ab, med, at(10 * time.Second), 10, false,
					"203.0.113.9 failed 10 logins within 5m"},
				{wantID(ab, "src|203.0.113.9|success", t0), ab, hi, at(20 * time.Second), 12, false,
					"203.0.113.9 logged in as root after 12 failed logins within 5m"},
				{wantID(ab, "src|203.0.113.9", t0), ab, med, at(10 * time.Second), 12, true,
					"203.0.113.9 failed 12 logins within 5m"},
			},
		},
		{
			name: "auth_bruteforce per user across sources",
			cfg:  only(ab),
			run: func(h *harness) {
				for i := 1; i <= 10; i++ {
					h.access(failedLogin(fmt.Sprintf("192.0.2.%d", i), "alice", at(time.Duration(i)*time.Second)))
				}
				h.access(failedLogin("192.0.2.99", "", at(11*time.Second)))
				h.advance(at(6 * time.Minute))
			},
			want: []got{{wantID(ab, "user|alice", t0), ab, med, at(10 * time.Second), 10, false,
				"user alice failed 10 logins from 10 sources within 5m"}},
		},
		{
			name: "auth_bruteforce below threshold",
			cfg:  only(ab),
			run: func(h *harness) {
				for i := 1; i <= 9; i++ {
					h.access(failedLogin("203.0.113.9", "root", at(time.Duration(i)*time.Second)))
				}
				ok := failedLogin("203.0.113.9", "root", at(20*time.Second))
				ok.Outcome = schemas.OutcomeSuccess
				h.access(ok)
				h.advance(at(6 * time.Minute))
			},
		},
		{
			name: "new_edge against a baseline, replies skipped",
			cfg: func() Configuration {
				c := only(ne)
				c.NewEdge.Learning = 0
				return c
			}(),
			run: func(h *harness) {
				for _, e := range h.engines {
					e.LoadBaseline([]Edge{{"web", "app", 8080, 6, at(-time.Hour)}})
				}
				h.flow(flowSpec{src: "10.1.0.5", dst: "10.3.0.7", dport: 8080, at: at(time.Second)})
				for i := 0; i < 3; i++ {
					h.flow(flowSpec{src: "10.3.0.7", dst: "10.2.0.10", dport: 3306, at: at(2 * time.Second)})
				}
				h.flow(flowSpec{src: "10.2.0.10", dst: "10.3.0.7", sport: 3306, dport: 40000, at: at(3 * time.Second)})
			},
			want: []got{{wantID(ne, "app|db|3306|6", t0), ne, med, at(2 * time.Second), 1, false,
				"new edge app → db on 3306/tcp, not seen in the last 168h (e.g. 10.3.0.7 → 10.2.0.10)"}},
		},
		{
			name: "new_edge silent while learning",
			cfg:  only(ne),
			run: func(h *harness) {
				h.flow(flowSpec{src: "10.1.0.5", dst: "10.3.0.7", dport: 8080, at: at(0)})
				h.flow(flowSpec{src: "10.3.0.7", dst: "10.2.0.10", dport: 3306, at: at(30 * time.Minute)})
				h.flow(flowSpec{src: "10.3.0.7", dst: "10.9.0.1", dport: 22, at: at(61 * time.Minute)})
			},
			want: []got{{wantID(ne, "app|mgmt|22|6", at(time.Hour)), ne, crit, at(61 * time.Minute), 1, false,
				"new edge app → mgmt on 22/tcp, not seen in the last 168h (e.g. 10.3.0.7 → 10.9.0.1)"}},
		},
		{
			name: "volume_spike after enough minutes",
			cfg:  only(vs),
			run: func(h *harness) {
				for i := 0; i < 14; i++ {
					b := uint64(20_000_000 + i%3*1_000_000)
					if i >= 12 {
						b = 200_000_000
					}
					h.flow(flowSpec{src: "10.3.0.7", dst: "10.2.0.10", dport: 5432, bytes: b, packets: b / 1000,
						at: at(time.Duration(i)*time.Minute + time.Second)})
					h.advance(at(time.Duration(i+1)*time.Minute + 2*time.Minute))
				}
			},
			want: []got{{wantID(vs, "app|db", at(12*time.Minute)), vs, hi, at(13*time.Minute + time.Second), 2, false,
				"app → db carried 400.0 MB in 2m from 12:12 UTC"}},
		},
		{
			name: "volume_spike quiet on steady traffic",
			cfg:  only(vs),
			run: func(h *harness) {
				for i := 0; i < 20; i++ {
					b := uint64(20_000_000 + i%3*1_000_000)
					h.flow(flowSpec{src: "10.3.0.7", dst: "10.2.0.10", dport: 5432, bytes: b, packets: b / 1000,
						at: at(time.Duration(i)*time.Minute + time.Second)})
					h.advance(at(time.Duration(i+1)*time.Minute + 2*time.Minute))
				}
			},
		},
		{
			name: "lateral_chain web → app → db",
			cfg:  only(lc),
			run: func(h *harness) {
				h.flow(flowSpec{src: "10.1.0.5", dst: "10.3.0.20", dport: 8080, identity: "alice", at: at(time.Minute)})
				h.flow(flowSpec{src: "10.1.0.5", dst: "10.3.0.20", dport: 8080, identity: "alice", at: at(2 * time.Minute)})
				h.flow(flowSpec{src: "10.3.0.20", dst: "10.2.0.10", dport: 5432, identity: "alice", at: at(10 * time.Minute)})
				h.flow(flowSpec{src: "10.3.0.20", dst: "10.2.0.10", dport: 5432, identity: "alice", at: at(30 * time.Minute)})
				// Wrong order for bob: B→C before A→B.
				h.flow(flowSpec{src: "10.3.0.21", dst: "10.2.0.10", dport: 5432, identity: "bob", at: at(time.Minute)})
				h.flow(flowSpec{src: "10.1.0.6", dst: "10.3.0.21", dport: 8080, identity: "bob", at: at(10 * time.Minute)})
				// Too slow for carol.
				h.flow(flowSpec{src: "10.1.0.7", dst: "10.3.0.22", dport: 8080, identity: "carol", at: at(time.Minute)})
				h.flow(flowSpec{src: "10.3.0.22", dst: "10.2.0.10", dport: 5432, identity: "carol", at: at(70 * time.Minute)})
			},
			want: []got{{wantID(lc, "alice|web|app|db", t0), lc, crit, at(10 * time.Minute), 2, false,
				"alice moved web → app → db within 1h (10.1.0.5 → 10.3.0.20 on 8080/tcp, then 10.3.0.20 → 10.2.0.10 on 5432/tcp)"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, 1, tc.cfg, m)
			tc.run(h)
			want := tc.want
			if want == nil {
				want = []got{}
			}
			if diff := cmp.Diff(project(h.alerts), want); diff != "" {
				t.Errorf("alerts (-got +want):\n%s", diff)
			}
			for _, a := range h.alerts {
				if !strings.HasPrefix(a.Evidence, "{") {
					t.Errorf("evidence %q is not a JSON object", a.Evidence)
				}
			}
		})
	}
}
