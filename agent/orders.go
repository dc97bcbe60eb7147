package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"agent/heartbeat"
	"agent/internal/clip"
	"agent/monitor"
)

// Node order actions.
const (
	actionFreeze = "freeze"
	actionThaw   = "thaw"
)

// postNodeOrder serves POST /v1/nodes/NAME/freeze|thaw. An order for this
// node is applied at once; an order for a peer is forwarded to it over the
// heartbeat (only a node changes its own data) and the answer waits until
// the peer's data, as replicated here, shows it.
func (a *Agent) postNodeOrder(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	if action != actionFreeze && action != actionThaw {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown node action %s: want freeze or thaw", clip.Quote(action)))
		return
	}
	if name == a.Name() {
		d, err := a.applyNodeOrder(action, "cli")
		if errors.Is(err, monitor.ErrDataTooLarge) {
			writeError(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, map[string]any{"node": name, "frozen": d.Frozen})
		return
	}
	if _, ok := a.store.Node(name); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %s is not in the cluster data", clip.String(name)))
		return
	}
	if err := a.hb.SendOrder(heartbeat.Order{Target: name, Action: action}); err != nil {
		writeError(w, http.StatusBadGateway, fmt.Sprintf("forward %s to %s: %v", action, name, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.OrderTimeout)
	defer cancel()
	d, ok := a.waitNode(ctx, name, func(d monitor.NodeData) bool { return (d.Frozen != 0) == (action == actionFreeze) })
	if !ok {
		writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("%s sent to %s, but its data did not show it within %s", action, name, a.opts.OrderTimeout))
		return
	}
	writeJSON(w, map[string]any{"node": name, "frozen": d.Frozen})
}

// applyNodeOrder freezes or thaws this node.
func (a *Agent) applyNodeOrder(action, reason string) (monitor.NodeData, error) {
	_, _, err := a.store.UpdateLocal(reason, func(d *monitor.NodeData) {
		switch action {
		case actionFreeze:
			if d.Frozen == 0 {
				d.Frozen = time.Now().Unix()
			}
		case actionThaw:
			d.Frozen = 0
		}
	})
	if err != nil {
		return monitor.NodeData{}, err
	}
	_, _, d := a.store.Local()
	return d, nil
}

// onOrder applies an order a peer forwarded to this node.
func (a *Agent) onOrder(o heartbeat.Order) {
	switch o.Action {
	case actionFreeze, actionThaw:
		if _, err := a.applyNodeOrder(o.Action, "cli"); err != nil {
			a.log.Error("apply forwarded order", "from", o.From, "action", o.Action, "err", err)
		}
	default:
		a.log.Warn("unknown order from peer", "from", o.From, "action", o.Action)
	}
}

// waitNode polls the replicated data of node until cond holds or ctx ends.
func (a *Agent) waitNode(ctx context.Context, node string, cond func(monitor.NodeData) bool) (monitor.NodeData, bool) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if d, ok := a.store.Node(node); ok && cond(d) {
			return d, true
		}
		select {
		case <-ctx.Done():
			return monitor.NodeData{}, false
		case <-t.C:
		}
	}
}
