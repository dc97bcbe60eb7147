package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"agent/internal/clip"
	"agent/orchestrator"
)

// prober probes a peer with a memberlist ping over the heartbeat: one UDP
// round trip bounded by memberlist's probe timeout. The orchestrator's
// quorum counts a peer only while it answers (see orchestrator.Prober).
type prober struct{ a *Agent }

var _ orchestrator.Prober = prober{}

// Probe pings node at the address the membership view holds for it.
func (p prober) Probe(_ context.Context, node string) error {
	hb := p.a.hb
	if hb == nil {
		return errors.New("heartbeat not started")
	}
	m, ok := p.a.store.Members()[node]
	if !ok || m.Addr == "" {
		return fmt.Errorf("no address for %s", node)
	}
	addr, err := net.ResolveUDPAddr("udp", m.Addr)
	if err != nil {
		return fmt.Errorf("address of %s: %w", node, err)
	}
	_, err = hb.Memberlist().Ping(node, addr)
	return err
}

// forgetter passes the nodes removed by `agent node forget` on to the
// heartbeat, so that it stops reconnecting to them, when the heartbeat
// keeps a reconnect set (a Forget method). Without one, dropping the
// node's membership entry is what stops the reconnects.
type forgetter struct{ a *Agent }

var _ orchestrator.Forgetter = forgetter{}

// Forget tells the heartbeat to stop reconnecting to node.
func (f forgetter) Forget(node string) error {
	if hf, ok := any(f.a.hb).(orchestrator.Forgetter); ok && f.a.hb != nil {
		return hf.Forget(node)
	}
	return nil
}

// postForget serves POST /v1/nodes/NAME/forget[?force=1]: removes a dead
// node from the cluster (its data, its reconnect address, its place in
// the quorum's high-water mark), on this node and, through this node's
// data, on every other.
func (a *Agent) postForget(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
	err := a.ext.orch.Forget(name, force)
	echo := clip.String(name) // error bodies echo a bounded part of the input
	switch {
	case errors.Is(err, orchestrator.ErrForgetUnknown):
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown node: %s (not a member, no data, not counted in the quorum)", echo))
	case errors.Is(err, orchestrator.ErrForgetSelf):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s is this node: stop its agent and forget it from another node", echo))
	case errors.Is(err, orchestrator.ErrForgetAlive):
		writeError(w, http.StatusConflict, fmt.Sprintf("cannot forget %s: %v; only a dead node can be forgotten: stop its agent and wait until the cluster sees it dead", echo, err))
	case errors.Is(err, orchestrator.ErrNoQuorum):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, map[string]any{"node": name, "forgotten": true})
	}
}
