package orchestrator

import (
	"sort"
	"time"

	"agent/config"
	"agent/monitor"
)

// Global expect values (monitor.InstanceMonitor.GlobalExpect).
const (
	ExpectStarted = "started"
	ExpectStopped = "stopped"
	ExpectFrozen  = "frozen"
	ExpectThawed  = "thawed"
)

// Instance monitor statuses (SPEC section 3).
const (
	StatusIdle        = "idle"
	StatusStarting    = "starting"
	StatusStopping    = "stopping"
	StatusStartFailed = "start failed"
	StatusStopFailed  = "stop failed"
	StatusReady       = "ready"
)

// Instance avail values.
const (
	AvailUp      = "up"
	AvailDown    = "down"
	AvailWarn    = "warn"
	AvailUnknown = "unknown"
	AvailNA      = "n/a"
)

// PlacementLeader marks the instance that should run (failover) or one of
// those that should (flex).
const PlacementLeader = "leader"

// view is one consistent reading of the cluster data: every held node's
// data and this agent's membership view. All decisions are functions of a
// view, so every agent holding the same data decides the same.
type view struct {
	self    string
	nodes   map[string]monitor.NodeData
	members map[string]monitor.Member
}

// alive reports whether node is alive in this view (this node always is).
func (v *view) alive(node string) bool {
	if node == v.self {
		return true
	}
	return v.members[node].State == monitor.StateAlive
}

// present reports whether node may still be running what its data says:
// alive or only suspected. A dead or departed node's data is history.
func (v *view) present(node string) bool {
	if node == v.self {
		return true
	}
	s := v.members[node].State
	return s == monitor.StateAlive || s == monitor.StateSuspect
}

// instance returns node's instance of svc.
func (v *view) instance(node, svc string) (monitor.Instance, bool) {
	d, ok := v.nodes[node]
	if !ok {
		return monitor.Instance{}, false
	}
	i, ok := d.Services[svc]
	return i, ok
}

// holders returns the nodes whose data holds an instance of svc, sorted.
func (v *view) holders(svc string) []string {
	var out []string
	for n, d := range v.nodes {
		if _, ok := d.Services[svc]; ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// running reports whether node's instance of svc may be running: the node
// is present and its instance is up or warn.
func (v *view) running(node, svc string) bool {
	if !v.present(node) {
		return false
	}
	i, ok := v.instance(node, svc)
	return ok && isUp(i.Avail)
}

func isUp(avail string) bool { return avail == AvailUp || avail == AvailWarn }

// candidates returns the nodes that may run svc, in placement priority
// order: the configured nodes (or every node, by name, for "*") whose data
// holds an instance of it.
func (v *view) candidates(s *config.Service) []string {
	if s.AllNodes() {
		return v.holders(s.Name)
	}
	out := make([]string, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		if _, ok := v.instance(n, s.Name); ok {
			out = append(out, n)
		}
	}
	return out
}

// eligible reports whether node may be chosen to run svc: alive, idle, in
// quorum, not frozen, and its instance not frozen nor failed.
func (v *view) eligible(node, svc string) bool {
	if !v.alive(node) {
		return false
	}
	d := v.nodes[node]
	if d.Status != monitor.StatusIdle || d.Frozen != 0 || d.Quorum.Lost {
		return false
	}
	i, ok := d.Services[svc]
	if !ok || i.Frozen != 0 {
		return false
	}
	return i.Monitor.Status != StatusStartFailed && i.Monitor.Status != StatusStopFailed
}

// latestExpect returns the latest global expect given to svc across every
// held instance: the latest order wins everywhere. Ties on time break on
// the value, so that every agent picks the same.
func (v *view) latestExpect(svc string) (string, time.Time) {
	var ge string
	var at time.Time
	for _, d := range v.nodes {
		i, ok := d.Services[svc]
		if !ok || i.Monitor.GlobalExpectUpdated.IsZero() {
			continue
		}
		t := i.Monitor.GlobalExpectUpdated
		if t.After(at) || (t.Equal(at) && i.Monitor.GlobalExpect > ge) {
			ge, at = i.Monitor.GlobalExpect, t
		}
	}
	return ge, at
}

// frozen reports whether svc is frozen: its latest global expect is frozen
// or a present node's instance of it is.
func (v *view) frozen(svc string) bool {
	if ge, _ := v.latestExpect(svc); ge == ExpectFrozen {
		return true
	}
	for n, d := range v.nodes {
		if i, ok := d.Services[svc]; ok && i.Frozen != 0 && v.present(n) {
			return true
		}
	}
	return false
}

// placement is the deterministic answer to "where should svc run".
type placement struct {
	// leader is the failover leader, "" when no node is eligible.
	leader string
	// targets are the nodes that should run an instance.
	targets map[string]bool
	// ideal are the nodes that would run it with no history: the first
	// eligible candidates in order.
	ideal []string
}

// place computes the placement of s. Failover: the leader is the first
// eligible candidate running the service, else the first eligible
// candidate. Flex: the
// eligible candidates running it are kept first, in order, then the others
// fill up to flex_target, counting the instances up on present but
// ineligible nodes (a frozen node's instance), and those of nodes that left
// gracefully with them up (leftRunning), as already placed.
func (v *view) place(s *config.Service) placement {
	p := placement{targets: map[string]bool{}}
	var elig []string
	for _, n := range v.candidates(s) {
		if v.eligible(n, s.Name) {
			elig = append(elig, n)
		}
	}
	want := 1
	if s.Topology == config.Flex {
		want = s.FlexTarget
	}
	if len(elig) < want {
		p.ideal = elig
	} else {
		p.ideal = elig[:want]
	}
	if s.Topology != config.Flex {
		for _, n := range elig {
			if v.running(n, s.Name) {
				p.leader = n
				break
			}
		}
		if p.leader == "" && len(elig) > 0 {
			p.leader = elig[0]
		}
		if p.leader != "" {
			p.targets[p.leader] = true
		}
		return p
	}
	isElig := map[string]bool{}
	for _, n := range elig {
		isElig[n] = true
	}
	for _, n := range v.holders(s.Name) {
		if !isElig[n] && v.running(n, s.Name) {
			want--
		}
	}
	// A node that left gracefully with its instance up may still run it.
	for n := range v.leftRunning(s) {
		if !isElig[n] {
			want--
		}
	}
	for _, n := range elig {
		if len(p.targets) < want && v.running(n, s.Name) {
			p.targets[n] = true
		}
	}
	for _, n := range elig {
		if len(p.targets) < want && !p.targets[n] {
			p.targets[n] = true
		}
	}
	return p
}

// unchecked returns a present peer whose instance of svc has no check
// result yet (an agent back from a restart), or "". Its instance may be up:
// a flex start waits for the answer rather than add one that could be a
// surplus, as a failover start does (startBlocker).
func (v *view) unchecked(svc string) string {
	for _, n := range v.holders(svc) {
		if n == v.self || !v.present(n) {
			continue
		}
		if i, _ := v.instance(n, svc); i.Avail == "" || i.Avail == availNotChecked {
			return n
		}
	}
	return ""
}

// startBlocker returns the node whose instance forbids this node to start
// a failover instance of svc now, or "": a present node whose instance is
// up, warn, unchecked, starting, stopping or failed to stop, or ready ahead
// of this node in the candidate order (two nodes ready at once: the first
// goes on), or ready with another config than hash (no common order).
func (v *view) startBlocker(s *config.Service, hash string) string {
	rank := map[string]int{}
	for i, n := range v.candidates(s) {
		rank[n] = i + 1
	}
	mine, ok := rank[v.self]
	if !ok {
		mine = len(rank) + 1
	}
	for _, n := range v.holders(s.Name) {
		if n == v.self || !v.present(n) {
			continue
		}
		i, _ := v.instance(n, s.Name)
		switch {
		case isUp(i.Avail), i.Avail == "", i.Avail == AvailNA:
			return n
		case i.Monitor.Status == StatusStarting, i.Monitor.Status == StatusStopping, i.Monitor.Status == StatusStopFailed:
			return n
		case i.Monitor.Status == StatusReady && rank[n] != 0 && rank[n] < mine:
			return n
		case i.Monitor.Status == StatusReady && i.ConfigHash != hash:
			return n
		}
	}
	return ""
}
