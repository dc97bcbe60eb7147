package agent

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/tidwall/gjson"

	"agent/config"
	"agent/events"
	"agent/heartbeat"
	"agent/hooks"
	"agent/metrics"
	"agent/monitor"
	"agent/orchestrator"
	"agent/stream"
	"agent/triggers"
	"agent/web"
)

// extensions are the parts built on the core: hooks, history sinks,
// orchestration, metrics and the web page.
type extensions struct {
	metrics *metrics.Metrics
	orch    *orchestrator.Orchestrator
	orchRun chan struct{} // closed when the orchestrator's Run returns
	hooks   *hooks.Runner
	// hooksApplied counts the hook sets given to the runner.
	hooksApplied int
	triggers     *triggers.Runner
	// history holds the sinks and the readers of their databases.
	history historyExt
}

// newMetrics builds the Prometheus exposition; its sources are read at
// scrape time, once the agent is running.
func (a *Agent) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Sources{
		Bus:       func() events.Stats { return a.bus.Stats() },
		Heartbeat: func() heartbeat.Stats { return a.hb.Stats() },
		Stream:    func() stream.Stats { return a.stream.Stats() },
		Members:   func() map[string]monitor.Member { return a.store.Members() },
		Hooks:     func() []metrics.HookStats { return a.hookStats() },
		Sinks:     func() []metrics.SinkStats { return a.sinkStats() },
		Orchestrator: func() metrics.OrchStats {
			c, g := a.ext.orch.Stats().Metrics()
			return metrics.OrchStats{Counters: c, Gauges: g}
		},
		PeerDataRefused: func() uint64 { return a.store.RefusedTooLarge() },
		Timers:          a.bell.Stats,
		Triggers:        a.triggerSources(),
	})
}

// publish puts a record of the monitor store on the bus and counts events
// by id.
func (a *Agent) publish(nodename, kind string, data json.RawMessage) {
	a.bus.Publish(nodename, kind, data)
	if o := a.ext.orch; o != nil {
		// Every change of the cluster data, membership included, may
		// change a decision. Notify never blocks.
		o.Notify()
	}
	if kind == events.KindEvent {
		a.ext.metrics.CountEvent(gjson.GetBytes(data, "id").String())
	}
}

func (a *Agent) initExtensions(snap config.Snapshot) error {
	if err := a.newHooks(); err != nil {
		return err
	}
	if err := a.newTriggers(); err != nil {
		return err
	}
	if err := a.newOrchestrator(snap); err != nil {
		return err
	}
	// Last: a sink publishes (sink_error) from its own goroutine, through
	// publish, which reads what the lines above set.
	return a.newSinks()
}

func (a *Agent) startExtensions(ctx context.Context) {
	a.ext.orchRun = make(chan struct{})
	go func() {
		defer close(a.ext.orchRun)
		if err := a.ext.orch.Run(ctx); err != nil {
			a.log.Error("orchestrator stopped", "err", err)
		}
	}()
}

// stopExtensions stops what runs on the cluster data before the agent
// leaves the cluster.
func (a *Agent) stopExtensions() {
	if a.ext.hooks != nil {
		_ = a.ext.hooks.Close()
	}
	if a.ext.triggers != nil {
		_ = a.ext.triggers.Close()
	}
	a.stopSinks()
	if a.ext.orch != nil {
		_ = a.ext.orch.Close()
	}
	if a.ext.orchRun != nil {
		<-a.ext.orchRun
	}
}

// closeExtensions releases what initExtensions built, whether or not
// the agent ran.
func (a *Agent) closeExtensions() { a.stopExtensions() }

// routeExtensions adds the web page and /metrics to the API.
func (a *Agent) routeExtensions(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/services/{name}/{action}", a.postServiceOrder)
	mux.HandleFunc("POST /v1/nodes/{name}/forget", a.postForget)
	mux.HandleFunc("GET /v1/triggers", a.getTriggers)
	mux.Handle("GET /metrics", a.ext.metrics.Handler())
	mux.Handle("GET /v1/history", a.historyHandler())
	mux.Handle("GET /v1/history/timeline", a.historyHandler())
	mux.HandleFunc("GET /v1/journal", a.getJournal)
	mux.Handle("GET /", web.Handler())
}
