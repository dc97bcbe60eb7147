package orchestrator

import (
	"fmt"
	"maps"
	"slices"

	"agent/config"
	"agent/monitor"
)

// Departure reasons (monitor.Departure.Reason).
const (
	departLeft = "left"
	departCLI  = ReasonCLI
)

// maxDepartures bounds the departures a node keeps in its data.
const maxDepartures = 64

// Forgetter is told the nodes removed from the cluster by Forget, so that
// it stops reconnecting to them (the heartbeat's reconnect set). It may
// drop the node's data from the store itself.
type Forgetter interface {
	Forget(node string) error
}

// trackMembers keeps the quorum members and the high-water mark: every
// node seen present joins them; a node seen leaving gracefully, or read as
// departed in any node's data while it is not present here, leaves them
// (a "cli" departure also drops its data, as on the node that was given
// the order). It publishes the mark and this node's departures, and
// persists the members when they changed. Run goroutine only.
func (o *Orchestrator) trackMembers(v *view) {
	self := o.cfg.Nodename
	now := o.cfg.Now().UTC()
	mine := v.nodes[self].Quorum.Departed
	departed := maps.Clone(mine)
	if departed == nil {
		departed = map[string]monitor.Departure{}
	}
	var forget []string

	o.qmu.Lock()
	for n := range v.members {
		if v.present(n) {
			o.qmembers[n] = true
			// Back: its departure is moot.
			delete(departed, n)
		}
	}
	for n, m := range v.members {
		if n != self && m.State == monitor.StateLeft {
			if o.qmembers[n] {
				delete(o.qmembers, n)
			}
			if _, ok := departed[n]; !ok {
				departed[n] = monitor.Departure{At: now, Reason: departLeft}
			}
		}
	}
	for holder, d := range v.nodes {
		if holder == self {
			continue
		}
		for n, dep := range d.Quorum.Departed {
			if n == self || v.present(n) {
				continue
			}
			delete(o.qmembers, n)
			had, ok := departed[n]
			switch {
			case dep.Reason == departCLI && had.Reason != departCLI:
				// A forget order: drop its data here too, once.
				departed[n] = dep
				forget = append(forget, n)
			case !ok:
				departed[n] = dep
			}
		}
	}
	members := slices.Sorted(maps.Keys(o.qmembers))
	o.qmu.Unlock()

	if err := o.store.SaveQuorumMembers(members); err != nil {
		o.log.Error("save quorum members", logKeyErr, err)
	}
	for _, n := range forget {
		o.forgetPeer(n)
	}
	trimDepartures(departed)
	if len(departed) == 0 {
		departed = nil
	}
	hwm := len(members)
	if hwm == v.nodes[self].Quorum.HWM && maps.Equal(departed, mine) {
		return
	}
	if _, _, err := o.store.UpdateLocal("orchestrator", func(d *monitor.NodeData) {
		d.Quorum.HWM = hwm
		d.Quorum.Departed = departed
	}); err != nil {
		o.log.Error("publish quorum high-water mark", logKeyErr, err)
	}
}

// trimDepartures keeps the newest maxDepartures entries.
func trimDepartures(d map[string]monitor.Departure) {
	for len(d) > maxDepartures {
		oldest := ""
		for n, x := range d {
			if oldest == "" || x.At.Before(d[oldest].At) || (x.At.Equal(d[oldest].At) && n < oldest) {
				oldest = n
			}
		}
		delete(d, oldest)
	}
}

// forgetPeer drops a forgotten node's data and membership entry here
// (event forget_peer reason cli) and tells the Forgetter.
func (o *Orchestrator) forgetPeer(node string) {
	if o.cfg.Forgetter != nil {
		if err := o.cfg.Forgetter.Forget(node); err != nil {
			o.log.Warn("forget in the heartbeat", "forgotten", node, logKeyErr, err)
		}
	}
	// Whatever the Forgetter did, the data goes (a no-op when gone).
	o.store.Forget(node, ReasonCLI)
	o.log.Info("node forgotten", "forgotten", node)
}

// Forget removes a dead node from the cluster (agent node forget): it
// leaves the quorum members, so the high-water mark is lowered, its data
// and membership entry are dropped (forget_peer reason cli), the
// Forgetter stops reconnecting to it, and the departure is published in
// this node's data so that every node does the same. Errors:
// ErrForgetSelf; ErrForgetAlive when the node is alive or suspect here;
// ErrForgetUnknown when nothing is known of it; ErrNoQuorum (with the
// counts) when quorum = true and this node sees no majority, unless force.
func (o *Orchestrator) Forget(node string, force bool) error {
	if node == o.cfg.Nodename {
		return ErrForgetSelf
	}
	v := o.readView()
	if v.present(node) {
		return fmt.Errorf("%w (%s here)", ErrForgetAlive, v.members[node].State)
	}
	_, held := v.nodes[node]
	_, member := v.members[node]
	o.qmu.Lock()
	counted := o.qmembers[node]
	o.qmu.Unlock()
	if !held && !member && !counted {
		return fmt.Errorf("%w: %s (not a member, no data, not counted in the quorum)", ErrForgetUnknown, node)
	}
	if o.cfg.Quorum && !force {
		if base, alive := o.quorumCount(v); alive*2 <= base {
			return fmt.Errorf("%w (%d of %d nodes in contact): forgetting %s now could let a minority count itself a majority; use --force if %s is gone for good", ErrNoQuorum, alive, base, node, node)
		}
	}
	o.qmu.Lock()
	delete(o.qmembers, node)
	members := slices.Sorted(maps.Keys(o.qmembers))
	o.qmu.Unlock()
	if err := o.store.SaveQuorumMembers(members); err != nil {
		return fmt.Errorf("forget %s: %w", node, err)
	}
	at := o.cfg.Now().UTC()
	if _, _, err := o.store.UpdateLocal(ReasonCLI, func(d *monitor.NodeData) {
		if d.Quorum.Departed == nil {
			d.Quorum.Departed = map[string]monitor.Departure{}
		}
		d.Quorum.Departed[node] = monitor.Departure{At: at, Reason: departCLI}
		trimDepartures(d.Quorum.Departed)
		d.Quorum.HWM = len(members)
	}); err != nil {
		return fmt.Errorf("forget %s: %w", node, err)
	}
	o.forgetPeer(node)
	o.Notify()
	return nil
}

// HasQuorum reports whether this node sees a majority (always true with
// quorum = false).
func (o *Orchestrator) HasQuorum() bool { return !o.stats.noQuorum.Load() }

// quorumBase is the number of nodes a majority is counted against:
// [cluster] nodes when set, else the largest high-water mark among this
// node and its present peers.
func (o *Orchestrator) quorumBase(v *view) int {
	if len(o.cfg.ClusterNodes) > 0 {
		return len(o.clusterNodes())
	}
	base := v.nodes[o.cfg.Nodename].Quorum.HWM
	for n, d := range v.nodes {
		if v.present(n) && d.Quorum.HWM > base {
			base = d.Quorum.HWM
		}
	}
	if base < 1 {
		base = 1
	}
	return base
}

// clusterNodes are the configured cluster nodes, without duplicates.
func (o *Orchestrator) clusterNodes() map[string]bool {
	m := make(map[string]bool, len(o.cfg.ClusterNodes))
	for _, n := range o.cfg.ClusterNodes {
		m[n] = true
	}
	return m
}

// quorumCount returns the quorum base and how many nodes of it this node
// is in contact with, itself included: present in the membership view and,
// with a Prober, answering probes.
func (o *Orchestrator) quorumCount(v *view) (base, alive int) {
	base = o.quorumBase(v)
	now := o.cfg.Now()
	if len(o.cfg.ClusterNodes) > 0 {
		for n := range o.clusterNodes() {
			if n == o.cfg.Nodename || (v.present(n) && o.contact.inContact(n, now)) {
				alive++
			}
		}
		return base, alive
	}
	alive = 1
	for n := range v.members {
		if n != o.cfg.Nodename && v.present(n) && o.contact.inContact(n, now) {
			alive++
		}
	}
	return base, alive
}

// checkQuorum compares the nodes in contact with the quorum base, applies
// the split action on a loss, and publishes quorum.lost. Run goroutine
// only.
func (o *Orchestrator) checkQuorum(v *view) {
	base, alive := o.quorumCount(v)
	ok := alive*2 > base
	o.stats.quorumBase.Store(int64(base))
	o.stats.quorumAlive.Store(int64(alive))
	if lost := !ok; v.nodes[o.cfg.Nodename].Quorum.Lost != lost {
		if _, _, err := o.store.UpdateLocal(ReasonMembership, func(d *monitor.NodeData) { d.Quorum.Lost = lost }); err != nil {
			o.log.Error("publish quorum state", logKeyErr, err)
		}
	}
	if ok == o.quorum {
		return
	}
	o.quorum = ok
	o.stats.noQuorum.Store(!ok)
	ev := map[string]any{"id": EventQuorumRegained, "reason": ReasonMembership, "node": o.cfg.Nodename,
		"alive": alive, "total": base, "split_action": string(o.cfg.SplitAction)}
	if ok {
		o.log.Info("quorum regained", "alive", alive, "total", base)
		o.store.Event(ev)
		return
	}
	ev["id"] = EventQuorumLost
	o.stats.quorumLost.Add(1)
	o.log.Warn("quorum lost", "alive", alive, "total", base, "split_action", o.cfg.SplitAction)
	o.store.Event(ev)
	if o.cfg.SplitAction == config.SplitFreeze {
		now := o.cfg.Now().Unix()
		if _, _, err := o.store.UpdateLocal(ReasonSplit, func(d *monitor.NodeData) {
			if d.Frozen == 0 {
				d.Frozen = now
			}
		}); err != nil {
			o.log.Error("freeze on split", logKeyErr, err)
		}
	}
}
