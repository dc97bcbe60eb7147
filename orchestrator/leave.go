package orchestrator

import (
	"maps"
	"slices"
	"time"

	"agent/config"
	"agent/monitor"
)

// EventFailoverBlocked is emitted when a service is not placed elsewhere
// because a node that ran it left gracefully with its instance up: the
// instance may still run there. A failover service does not fail over; a
// flex service counts the instance towards flex_target.
const EventFailoverBlocked = "failover_blocked"

// ReasonLeft: a node left gracefully while running the instance.
const ReasonLeft = "left"

// leftRunning returns the nodes that left gracefully while their instance
// of s was up, starting or stopping, with when they left: stopping an agent
// (SIGTERM, systemctl restart with KillMode=process) leaves its services
// running, so placing the service elsewhere would make a duplicate (or a
// flex surplus) nobody sees. It reads the records of every node's instance
// too, so that a node that missed the leave, or restarted since, knows,
// and the records outlive the forgetting of the node's data. A record
// ends when the node is present again, is forgotten (agent node forget),
// or an order for the service is given after it left. nil when none.
func (v *view) leftRunning(s *config.Service) map[string]time.Time {
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
		return nil
	}
	return now
}

// publishLeftRunning keeps v.leftRunning(s) in this node's instance of s
// (monitor.left_running), emits failover_blocked once per departed node
// and episode, and logs why. It returns the records in force; while there
// is one, no failover instance starts. Run goroutine only.
func (o *Orchestrator) publishLeftRunning(v *view, s *config.Service, inst monitor.Instance) map[string]time.Time {
	now := v.leftRunning(s)
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
		o.log.Warn("node left with the service running: it is not placed elsewhere until the node is back, forgotten (agent node forget) or the service ordered again",
			logKeyService, s.Name, "left", n, "since", now[n])
	}
	for n := range seen {
		if _, ok := now[n]; !ok {
			delete(seen, n)
			o.log.Info("service no longer held by a departed node", logKeyService, s.Name, "left", n)
		}
	}
	if len(seen) == 0 {
		delete(o.blocked, s.Name)
	}
	return now
}
