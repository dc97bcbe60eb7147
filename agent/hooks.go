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
	_ = a.reloadHooks(a.Config().Hooks) // logged
	return nil
}

// reloadHooks applies a hook set. The config watcher has refused a
// node.conf that fails the permission rules before it gets here. A hook
// whose filter does not compile keeps its running version; the error says
// which.
func (a *Agent) reloadHooks(list []config.Hook) error {
	if len(list) == 0 && a.ext.hooksApplied == 0 {
		return nil // nothing declared, nothing running
	}
	err := a.ext.hooks.Update(list)
	if err != nil {
		a.log.Error("some hooks refused", "err", err)
	}
	a.ext.hooksApplied++
	return err
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
