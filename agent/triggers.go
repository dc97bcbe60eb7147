package agent

import (
	"net/http"
	"path/filepath"

	"agent/config"
	"agent/metrics"
	"agent/triggers"
)

// newTriggers builds the trigger runner, which loads the streams the
// previous run left open, and applies the triggers of node.conf.
func (a *Agent) newTriggers() error {
	r, err := triggers.New(triggers.Config{
		Bus:      a.bus,
		Dir:      filepath.Join(a.paths.VarDir, "triggers"),
		Nodename: a.Name(),
		Publish:  a.publish,
		Logger:   a.log,
	})
	if err != nil {
		return err
	}
	a.ext.triggers = r
	a.reloadTriggers(a.Config().Triggers)
	return nil
}

// reloadTriggers applies a trigger set. The config watcher has refused a
// node.conf that fails the permission rules (the programs its triggers
// name included) before it gets here.
func (a *Agent) reloadTriggers(list []config.Trigger) {
	if err := a.ext.triggers.Update(list); err != nil {
		a.log.Error("some triggers refused", "err", err)
	}
}

// getTriggers serves GET /v1/triggers: the triggers and their open streams.
func (a *Agent) getTriggers(w http.ResponseWriter, r *http.Request) {
	list, err := a.ext.triggers.List(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "triggers: "+err.Error())
		return
	}
	writeJSON(w, list)
}

// triggerSources converts the runner's figures for /metrics.
func (a *Agent) triggerSources() metrics.TriggerSources {
	stats := func() triggers.Stats {
		if a.ext.triggers == nil {
			return triggers.Stats{}
		}
		return a.ext.triggers.Stats()
	}
	return metrics.TriggerSources{
		Triggers: func() []metrics.TriggerStats {
			st := stats()
			out := make([]metrics.TriggerStats, 0, len(st.Triggers))
			for _, t := range st.Triggers {
				out = append(out, metrics.TriggerStats{Name: t.Name, Open: t.Open, Pending: t.Pending, Fires: t.Fires,
					Expiries: t.Expiries, Runs: t.Runs, RunFailures: t.RunFailures, Failed: t.Failed,
					DurationSum: t.DurationSum, DurationCount: t.DurationCount})
			}
			return out
		},
		Skipped: func() uint64 { return stats().Skipped },
	}
}
