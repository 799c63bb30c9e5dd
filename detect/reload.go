package detect

import (
	"github.com/flowaudit/flowaudit/policy"
)

// ApplyPolicy hands a reloaded policy to the detection loop, which
// swaps it in between two polls (the engine is used by that goroutine
// only). The process's one policy loader calls it, with the same Matcher
// it gives the enrich stage, so both judge by one version. Safe to call
// from any goroutine.
func (c *Component) ApplyPolicy(m *policy.Matcher, content []byte) {
	if m != nil {
		c.nextPolicy.Store(&appliedPolicy{m: m, content: content})
		c.nextMatcher.Store(m)
	}
}

// RejectPolicy counts a changed policy file the loader refused; the
// current policy stays in force.
func (c *Component) RejectPolicy(error) {
	c.metrics.policyReloads.WithLabelValues("invalid").Inc()
}

// applyReload swaps in a Matcher ApplyPolicy handed over, if any. Called
// by the detection loop between polls.
func (c *Component) applyReload() {
	if ap := c.nextPolicy.Swap(nil); ap != nil {
		c.checkPolicyDrift(ap)
	}
	if m := c.nextMatcher.Swap(nil); m != nil {
		c.engine.SetMatcher(m)
		c.metrics.policyReloads.WithLabelValues("ok").Inc()
		c.log.Info("policy reloaded", "summary", m.Policy().Summary())
	}
}
