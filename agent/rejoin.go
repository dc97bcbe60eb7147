package agent

import (
	"context"
	"time"

	"agent/monitor"
)

// rejoin holds the node in status "rejoin" until it has found its peers
// (every configured cluster node alive, or, without [cluster] nodes, any
// peer), or RejoinGrace has passed, and until the first check of every
// service has finished and is in its data (each bounded by the service's
// timeout); then it sets the node idle. The orchestrator acts only on an
// idle node, and its peers count only idle nodes in their decisions, so a
// restarting agent neither starts a failover service that already runs
// elsewhere nor judges quorum before it has seen the cluster, and the
// cluster sees what runs on it before deciding anything.
func (a *Agent) rejoin(ctx context.Context) {
	cfg := a.Config()
	set := func(status string) {
		if _, _, err := a.store.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = status }); err != nil {
			a.log.Error("set node status", "status", status, "err", err)
		}
	}
	alone := len(cfg.Cluster.Seeds) == 0
	if !alone {
		set(monitor.StatusRejoin)
	}
	deadline := time.NewTimer(a.opts.RejoinGrace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	found, graceOver := alone, false
	for {
		if !found && a.peersFound(cfg.Cluster.Nodes) {
			found = true
		}
		if (found || graceOver) && a.ext.orch.Checked() {
			set(monitor.StatusIdle)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			if !found {
				a.log.Warn("rejoin grace expired before every peer was seen", "grace", a.opts.RejoinGrace)
			}
			graceOver = true
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
