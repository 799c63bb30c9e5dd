package detect

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flowaudit/flowaudit/policy"
)

// policyReloadInterval is how often detect checks the policy file for a
// change (SIGHUP forces a check). The enrich stage has its own, configured
// interval (enrich.policy_reload_interval); detect only reads segment tags
// and names from the policy, so a fixed, short one is enough.
const policyReloadInterval = 2 * time.Second

type policyStamp struct {
	mod  time.Time
	size int64
}

// reloadLoop re-reads the policy file when it changes or on SIGHUP and
// hands the compiled Matcher to the detection loop, which applies it
// between two polls (the engine is used by that goroutine only). An
// invalid file keeps the current policy and says why.
func (c *Component) reloadLoop() {
	defer c.wg.Done()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(policyReloadInterval)
	defer t.Stop()
	stamp := c.policyStamp
	for {
		force := false
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-hup:
			force = true
		}
		st, err := os.Stat(c.deps.PolicyFile)
		if err != nil {
			if ok, _ := c.sampler.Allow("reload-stat"); ok {
				c.log.Warn("cannot read policy file; keeping the current policy", "file", c.deps.PolicyFile, "err", err)
			}
			continue
		}
		now := policyStamp{st.ModTime(), st.Size()}
		if !force && now == stamp {
			continue
		}
		stamp = now
		p, err := policy.Load(c.deps.PolicyFile)
		var m *policy.Matcher
		if err == nil {
			m, err = policy.Compile(p)
		}
		if err != nil {
			c.metrics.policyReloads.WithLabelValues("invalid").Inc()
			c.log.Error("new policy is invalid; keeping the current one", "file", c.deps.PolicyFile, "err", err)
			continue
		}
		c.nextMatcher.Store(m)
	}
}

// applyReload swaps in a Matcher reloadLoop compiled, if any. Called by
// the detection loop between polls.
func (c *Component) applyReload() {
	if m := c.nextMatcher.Swap(nil); m != nil {
		c.engine.SetMatcher(m)
		c.metrics.policyReloads.WithLabelValues("ok").Inc()
		c.log.Info("policy reloaded", "file", c.deps.PolicyFile, "summary", m.Policy().Summary())
	}
}
