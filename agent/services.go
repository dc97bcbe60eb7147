package agent

import (
	"errors"
	"net/http"

	"agent/config"
	"agent/internal/clip"
	"agent/monitor"
	"agent/orchestrator"
)

// newOrchestrator builds the orchestrator and declares the services the
// config watcher found at start.
func (a *Agent) newOrchestrator(snap config.Snapshot) error {
	cfg := a.Config()
	o, err := orchestrator.New(orchestrator.Config{
		Store:        a.store,
		ClusterNodes: cfg.Cluster.Nodes,
		Quorum:       cfg.Cluster.Quorum,
		SplitAction:  cfg.Cluster.SplitAction,
		ReadyPeriod:  a.opts.ReadyPeriod,
		Prober:       prober{a},
		Lease:        a.opts.QuorumLease,
		Forgetter:    forgetter{a},
		Bell:         a.bell,
		Logger:       a.log,
	})
	if err != nil {
		return err
	}
	a.ext.orch = o
	for name := range snap.Services {
		s := snap.Services[name]
		if err := o.SetService(&s); err != nil {
			a.log.Error("service refused", "service", name, "err", err)
		}
	}
	for path, err := range snap.ServiceErrs {
		o.InvalidService(path, err)
	}
	return nil
}

// serviceChange applies a svc/NAME.conf change: added, changed, removed,
// or refused (the previous version keeps running).
func (a *Agent) serviceChange(ch config.Change) {
	o := a.ext.orch
	switch {
	case ch.Err != nil:
		a.log.Error("service config refused, previous version kept", "path", ch.Path, "err", ch.Err)
		o.InvalidService(ch.Path, ch.Err)
	case ch.Removed:
		o.RemoveService(ch.Service)
	default:
		svc := ch.Svc
		if err := o.SetService(&svc); err != nil {
			a.log.Error("service refused", "service", ch.Service, "err", err)
			o.InvalidService(ch.Path, err)
		}
	}
}

// postServiceOrder serves POST /v1/services/NAME/start|stop|freeze|thaw.
// The order becomes this node's instance's global expect; it replicates
// with this node's data and the latest order wins everywhere.
func (a *Agent) postServiceOrder(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	err := a.ext.orch.Order(name, action)
	switch {
	case errors.Is(err, orchestrator.ErrNoService):
		name = clip.String(name)
		writeError(w, http.StatusNotFound, "no service "+name+" on "+a.Name()+" (no svc/"+name+".conf)")
	case errors.Is(err, orchestrator.ErrBadAction):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, monitor.ErrDataTooLarge):
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	case err != nil:
		writeError(w, http.StatusConflict, err.Error())
	default:
		writeJSON(w, map[string]string{"service": name, "action": action, "global_expect": globalExpect[action]})
	}
}

// globalExpect is the global expect an order sets.
var globalExpect = map[string]string{
	"start":  orchestrator.ExpectStarted,
	"stop":   orchestrator.ExpectStopped,
	"freeze": orchestrator.ExpectFrozen,
	"thaw":   orchestrator.ExpectThawed,
}
