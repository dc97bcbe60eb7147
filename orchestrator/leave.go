package orchestrator

import (
	"maps"
	"slices"
	"time"

	"agent/config"
	"agent/monitor"
)

// EventFailoverBlocked is emitted when a failover service cannot fail over
// because the node that ran it left gracefully with its instance up: the
// instance may still run there.
const EventFailoverBlocked = "failover_blocked"

// ReasonLeft: a node left gracefully while running the instance.
const ReasonLeft = "left"

// leftRunning keeps, in this node's instance of failover service s, the
// nodes that left gracefully while their instance was up, starting or
// stopping: stopping an agent (SIGTERM, systemctl restart with
// KillMode=process) leaves its services running, so a failover would make
// a duplicate nobody sees. It reads the records of every node's instance
// too, so that a node that missed the leave, or restarted since, knows,
// and the records outlive the forgetting of the node's data. A record
// ends when the node is present again, is forgotten (agent node forget),
// or an order for the service is given after it left. It returns the
// records in force; while there is one, no failover instance starts, and
// failover_blocked is emitted once per node and episode. Run goroutine
// only.
func (o *Orchestrator) leftRunning(v *view, s *config.Service, inst monitor.Instance) map[string]time.Time {
	if s.Topology == config.Flex {
		return nil
	}
	_, orderAt := v.latestExpect(s.Name)
	forgotten := map[string]bool{}
	for _, d := range v.nodes {
		for n, dep := range d.Quorum.Departed {
			if dep.Reason == departCLI {
				forgotten[n] = true
			}
		}
	}
	keep := func(n string, at time.Time) bool {
		return n != v.self && !v.present(n) && !forgotten[n] && !orderAt.After(at)
	}
	now := map[string]time.Time{}
	add := func(n string, at time.Time) {
		if prev, ok := now[n]; keep(n, at) && (!ok || at.Before(prev)) {
			now[n] = at
		}
	}
	for n, d := range v.nodes {
		if i, ok := d.Services[s.Name]; ok {
			for x, at := range i.Monitor.LeftRunning {
				add(x, at)
			}
		}
		m, ok := v.members[n]
		if !ok || m.State != monitor.StateLeft {
			continue
		}
		i := d.Services[s.Name]
		if isUp(i.Avail) || i.Monitor.Status == StatusStarting || i.Monitor.Status == StatusStopping {
			add(n, m.Since)
		}
	}
	if len(now) == 0 {
		now = nil
	}
	if !maps.Equal(now, inst.Monitor.LeftRunning) {
		o.updateInstance(s.Name, func(i *monitor.Instance) { i.Monitor.LeftRunning = now })
	}
	seen := o.blocked[s.Name]
	for _, n := range slices.Sorted(maps.Keys(now)) {
		if seen[n] {
			continue
		}
		if seen == nil {
			seen = map[string]bool{}
			o.blocked[s.Name] = seen
		}
		seen[n] = true
		o.emit(EventFailoverBlocked, ReasonLeft, s.Name, map[string]any{"left": n, "since": now[n]})
		o.log.Warn("node left with the service running: no failover until it is back, forgotten (agent node forget) or the service ordered again",
			logKeyService, s.Name, "left", n, "since", now[n])
	}
	for n := range seen {
		if _, ok := now[n]; !ok {
			delete(seen, n)
			o.log.Info("failover no longer blocked by a departed node", logKeyService, s.Name, "left", n)
		}
	}
	if len(seen) == 0 {
		delete(o.blocked, s.Name)
	}
	return now
}
