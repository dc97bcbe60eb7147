package agent

import (
	"context"
	"time"

	"agent/monitor"
)

// rejoin holds the node in status "rejoin" until it has found its peers
// (every configured cluster node alive, or, without [cluster] nodes, any
// peer), or RejoinGrace has passed, then sets it idle. The orchestrator
// acts only on an idle node, so a restarting agent does not start a
// failover service that already runs elsewhere, nor judge quorum, before
// it has seen the cluster.
func (a *Agent) rejoin(ctx context.Context) {
	cfg := a.Config()
	set := func(status string) {
		if _, _, err := a.store.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = status }); err != nil {
			a.log.Error("set node status", "status", status, "err", err)
		}
	}
	if len(cfg.Cluster.Seeds) == 0 {
		set(monitor.StatusIdle)
		return
	}
	set(monitor.StatusRejoin)
	deadline := time.NewTimer(a.opts.RejoinGrace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if a.peersFound(cfg.Cluster.Nodes) {
			set(monitor.StatusIdle)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			a.log.Warn("rejoin grace expired before every peer was seen", "grace", a.opts.RejoinGrace)
			set(monitor.StatusIdle)
			return
		case <-tick.C:
		}
	}
}

// peersFound reports whether the expected peers are alive members with
// their data held here.
func (a *Agent) peersFound(expected []string) bool {
	members := a.store.Members()
	if len(expected) == 0 {
		for name, m := range members {
			if name != a.Name() && m.State == monitor.StateAlive {
				if _, ok := a.store.Node(name); ok {
					return true
				}
			}
		}
		return false
	}
	for _, name := range expected {
		if name == a.Name() {
			continue
		}
		if m, ok := members[name]; !ok || m.State != monitor.StateAlive {
			return false
		}
		if _, ok := a.store.Node(name); !ok {
			return false
		}
	}
	return true
}
