package enrich

import (
	"sync/atomic"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

// Result is the enrichment of one flow; the caller copies it into the
// flow's enrichment fields. Its strings point into the policy Matcher's
// tables and the IdentityStore's events: they are never modified, only
// shared.
type Result struct {
	SrcSegment, DstSegment   string
	SrcWorkload, DstWorkload string
	SrcIdentity, DstIdentity string
	// SrcIdentitySource and DstIdentitySource: the source that attributed
	// the identity (the access event's Source, "inventory" for the
	// inventory's service account), else the device's source; SrcDevice
	// and DstDevice: the device behind each address.
	SrcIdentitySource, DstIdentitySource string
	SrcDevice, DstDevice                 string
	Verdict                              policy.Verdict
	Rule                                 string
	// StagedVerdict and StagedRule: the verdict had the staged rules been
	// enforced too (policy.Matcher.DecideStaged).
	StagedVerdict policy.Verdict
	StagedRule    string
	// ServiceSide and ServicePort: which end offers the service
	// (policy.DecideServiceSide), independent of the policy.
	ServiceSide schemas.ServiceSide
	ServicePort uint16
}

// Enricher enriches flows with a policy Matcher and an IdentityStore. One
// Enricher may be shared by several workers: EnrichFlow only reads, and
// SetMatcher swaps the matcher atomically (hot reload); a flow is enriched
// entirely with the old or entirely with the new policy.
type Enricher struct {
	m         atomic.Pointer[policy.Matcher]
	ids       *IdentityStore
	listeners *listenerTable
}

// NewEnricher returns an Enricher. m may be nil (no policy file: every
// address is external, every verdict unknown); ids may be nil (no
// identities but the inventory's service accounts).
func NewEnricher(m *policy.Matcher, ids *IdentityStore) *Enricher {
	e := &Enricher{ids: ids, listeners: newListenerTable()}
	e.m.Store(m)
	return e
}

// SetMatcher replaces the policy, for hot reload. m may be nil.
func (e *Enricher) SetMatcher(m *policy.Matcher) { e.m.Store(m) }

// Matcher returns the policy in use, nil when none.
func (e *Enricher) Matcher() *policy.Matcher { return e.m.Load() }

// EnrichFlow computes r for flow f of batch b. Identity: the user bound to
// the address at the flow's time (FlowBatch.FlowTime), else the service account of the
// address's inventory entry. Workload: the address's inventory entry.
// Service side: policy.DecideServiceSide, with the enricher's history of
// the flow's ends. Verdict and rule: policy.Matcher.Decide with that
// side; staged verdict and rule: Matcher.DecideStaged (the same when the
// policy has no staged rules). Without a matcher both segments are
// external and the verdicts unknown. It does not allocate.
func (e *Enricher) EnrichFlow(b *schemas.FlowBatch, f *schemas.Flow, r *Result) {
	var fb FlowBindings
	if e.ids != nil {
		t := b.FlowTime(f)
		fb.Src = e.ids.LookupBinding(f.SrcAddr, t)
		fb.Dst = e.ids.LookupBinding(f.DstAddr, t)
	}
	e.enrich(f, &fb, r)
}

// enrichGroup is how many flows EnrichFlows looks identities up for at
// once.
const enrichGroup = 64

// EnrichFlows is EnrichFlow for each of flows (flows of b) into the same
// index of res (len(res) ≥ len(flows)), with the identities of each
// enrichGroup flows looked up together (IdentityStore.LookupFlows): the
// way to enrich a batch. It does not allocate.
func (e *Enricher) EnrichFlows(b *schemas.FlowBatch, flows []schemas.Flow, res []Result) {
	var fb [enrichGroup]FlowBindings
	for base := 0; base < len(flows); base += enrichGroup {
		fl := flows[base:min(base+enrichGroup, len(flows))]
		if e.ids != nil {
			e.ids.LookupFlows(b, fl, fb[:len(fl)])
		}
		for j := range fl {
			e.enrich(&fl[j], &fb[j], &res[base+j])
		}
	}
}

// enrich computes r for f whose ends' bindings are fb (see EnrichFlow).
func (e *Enricher) enrich(f *schemas.Flow, fb *FlowBindings, r *Result) {
	srcB, dstB := &fb.Src, &fb.Dst
	srcUser, dstUser := srcB.User, dstB.User
	side, port := e.serviceSide(f)
	m := e.m.Load()
	if m == nil {
		*r = Result{
			SrcSegment: policy.External, DstSegment: policy.External,
			SrcIdentity: srcUser, DstIdentity: dstUser,
			SrcIdentitySource: srcB.attribution(), DstIdentitySource: dstB.attribution(),
			SrcDevice: srcB.Device, DstDevice: dstB.Device,
			Verdict: policy.VerdictUnknown, StagedVerdict: policy.VerdictUnknown,
			ServiceSide: side, ServicePort: port,
		}
		return
	}
	src, dst := m.Lookup(f.SrcAddr), m.Lookup(f.DstAddr)
	// A binding (a session, a login, a lease) beats the inventory's
	// static service account.
	if srcUser == "" && src.ServiceAccount != "" {
		srcUser, srcB.Source = src.ServiceAccount, SourceInventory
	}
	if dstUser == "" && dst.ServiceAccount != "" {
		dstUser, dstB.Source = dst.ServiceAccount, SourceInventory
	}
	k := policy.FlowKey{
		Src: src, Dst: dst,
		SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto,
		SrcIdentity: srcUser, DstIdentity: dstUser,
		ServiceSide: side,
		SrcLabels:   srcB.Labels, DstLabels: dstB.Labels,
	}
	v, rule := m.Decide(&k)
	sv, srule := v, rule
	if m.HasStaged() {
		sv, srule = m.DecideStaged(&k)
	}
	*r = Result{
		SrcSegment: src.Segment, DstSegment: dst.Segment,
		SrcWorkload: src.Workload, DstWorkload: dst.Workload,
		SrcIdentity: srcUser, DstIdentity: dstUser,
		SrcIdentitySource: srcB.attribution(), DstIdentitySource: dstB.attribution(),
		SrcDevice: srcB.Device, DstDevice: dstB.Device,
		Verdict: v, Rule: rule,
		StagedVerdict: sv, StagedRule: srule,
		ServiceSide: side, ServicePort: port,
	}
}

// SourceInventory is the identity source of the policy inventory's static
// service accounts.
const SourceInventory = "inventory"

// attribution is the identity source a flow end records: the user's
// source, else (no user known) the device's.
func (b *Binding) attribution() string {
	if b.Source != "" {
		return b.Source
	}
	return b.DeviceSource
}

// serviceSide decides which end of f offers the service. The listener
// history is consulted (and fed) only when the ports do not decide, so the
// common flow (an ephemeral port to a service port) costs no table access;
// a SYN without ACK to a port that is not a known service marks that end
// as listening, so the rest of the connection, replies included, follows.
func (e *Enricher) serviceSide(f *schemas.Flow) (schemas.ServiceSide, uint16) {
	q := policy.ServiceQuery{SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto, TCPFlags: f.TCPFlags}
	if policy.HasPorts(f.Proto) && !policy.PortsDecide(&q) {
		if f.Proto == policy.ProtoTCP && f.TCPFlags&0x12 == 0x02 {
			e.listeners.markListening(endHash(&f.DstAddr, f.DstPort, f.Proto))
		}
		q.SrcListens = e.listeners.observe(endHash(&f.SrcAddr, f.SrcPort, f.Proto), &f.DstAddr)
		q.DstListens = e.listeners.observe(endHash(&f.DstAddr, f.DstPort, f.Proto), &f.SrcAddr)
	}
	return policy.DecideServiceSide(&q)
}
