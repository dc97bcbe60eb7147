package agent

import (
	"context"
	"net/http"

	"agent/config"
	"agent/heartbeat"
)

// extensions are the parts built on the core: hooks, orchestration,
// metrics and the web page. Each is wired in its own file.
type extensions struct{}

func (a *Agent) initExtensions() error                       { return nil }
func (a *Agent) startExtensions(ctx context.Context)         {}
func (a *Agent) stopExtensions()                             {}
func (a *Agent) closeExtensions()                            {}
func (a *Agent) routeExtensions(mux *http.ServeMux)          {}
func (a *Agent) handleExtensionOrder(o heartbeat.Order) bool { return false }
func (a *Agent) reloadHooks(hooks []config.Hook)             {}
func (a *Agent) serviceChange(ch config.Change)              {}
