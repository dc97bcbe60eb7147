package agent

import (
	"path/filepath"

	"agent/config"
	"agent/hooks"
	"agent/metrics"
)

// newHooks builds the hook runner and applies the hooks of node.conf.
func (a *Agent) newHooks() error {
	r, err := hooks.New(hooks.Config{
		Bus:      a.bus,
		Dir:      filepath.Join(a.paths.VarDir, "hooks"),
		Nodename: a.Name(),
		Publish:  a.publish,
		Logger:   a.log,
	})
	if err != nil {
		return err
	}
	a.ext.hooks = r
	a.reloadHooks(a.Config().Hooks)
	return nil
}

// reloadHooks applies a hook set. Hooks are refused while node.conf is
// writable by group or others (as sshd refuses loose key files): the
// running set stays, and the log says why.
func (a *Agent) reloadHooks(list []config.Hook) {
	if len(list) == 0 && a.ext.hooksApplied == 0 {
		return // nothing declared, nothing running
	}
	if err := hooks.CheckPerms(a.paths.NodeConf); err != nil {
		a.log.Error("hooks not applied", "err", err)
		return
	}
	if err := a.ext.hooks.Update(list); err != nil {
		a.log.Error("some hooks refused", "err", err)
	}
	a.ext.hooksApplied++
}

// hookStats converts the runner's figures for /metrics.
func (a *Agent) hookStats() []metrics.HookStats {
	st := a.ext.hooks.Stats()
	out := make([]metrics.HookStats, len(st.Hooks))
	for i, h := range st.Hooks {
		out[i] = metrics.HookStats{Name: h.Name, Runs: h.Runs, Failures: h.Failures, Timeouts: h.Timeouts,
			Skipped: h.Skipped, DurationSum: h.DurationSum, DurationCount: h.DurationCount}
	}
	return out
}
