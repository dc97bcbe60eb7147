package agent

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/tidwall/gjson"

	"agent/config"
	"agent/events"
	"agent/heartbeat"
	"agent/metrics"
	"agent/monitor"
	"agent/stream"
	"agent/web"
)

// extensions are the parts built on the core: hooks, orchestration,
// metrics and the web page.
type extensions struct {
	metrics *metrics.Metrics
}

// newMetrics builds the Prometheus exposition; its sources are read at
// scrape time, once the agent is running.
func (a *Agent) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Sources{
		Bus:       func() events.Stats { return a.bus.Stats() },
		Heartbeat: func() heartbeat.Stats { return a.hb.Stats() },
		Stream:    func() stream.Stats { return a.stream.Stats() },
		Members:   func() map[string]monitor.Member { return a.store.Members() },
	})
}

// publish puts a record of the monitor store on the bus and counts events
// by id.
func (a *Agent) publish(nodename, kind string, data json.RawMessage) {
	a.bus.Publish(nodename, kind, data)
	if kind == events.KindEvent {
		a.ext.metrics.CountEvent(gjson.GetBytes(data, "id").String())
	}
}

func (a *Agent) initExtensions() error { return nil }

func (a *Agent) startExtensions(ctx context.Context) {}
func (a *Agent) stopExtensions()                     {}
func (a *Agent) closeExtensions()                    {}

// routeExtensions adds the web page and /metrics to the API.
func (a *Agent) routeExtensions(mux *http.ServeMux) {
	mux.Handle("GET /metrics", a.ext.metrics.Handler())
	mux.Handle("GET /", web.Handler())
}

func (a *Agent) handleExtensionOrder(o heartbeat.Order) bool { return false }
func (a *Agent) reloadHooks(hooks []config.Hook)             {}
func (a *Agent) serviceChange(ch config.Change)              {}
