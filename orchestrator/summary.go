package orchestrator

import (
	"agent/config"
)

// Summary is monitor.services.NAME: a service as a whole, derived by every
// agent from all the instances the same way (SPEC section 3). Up lists the
// present nodes whose instance is up or warn, in placement order.
type Summary struct {
	// Avail: up (enough instances up: one for failover, flex_target for
	// flex), warn (flex: some but not enough), down, or n/a (no instance).
	Avail string `json:"avail"`
	// Overall is Avail, turned to warn when an instance is warn or failed
	// or a failover service runs more than once.
	Overall string `json:"overall"`
	// Frozen: frozen (every present instance), thawed (none) or mixed.
	Frozen string `json:"frozen"`
	// Placement: optimal (running where the placement rules would put it
	// with no history), non-optimal, or n/a (not running).
	Placement string `json:"placement"`
	// Up are the nodes running it.
	Up []string `json:"up"`
	// GlobalExpect is the latest order (started, stopped, frozen, thawed)
	// or "" for none. An addition to the SPEC's fields.
	GlobalExpect string `json:"global_expect"`
	// Done reports that the orchestration is done: see Orchestrator.Done.
	// An addition to the SPEC's fields, for `agent wait`.
	Done bool `json:"done"`
}

// summarize derives the summary of the service named name. s is the
// local config of it, or nil when this node does not declare it (then the
// service is taken as failover and placement is n/a).
func (v *view) summarize(name string, s *config.Service) Summary {
	sum := Summary{Up: []string{}}
	var present []string
	var order []string
	if s != nil {
		order = v.candidates(s)
	}
	seen := map[string]bool{}
	for _, n := range order {
		seen[n] = true
	}
	for _, n := range v.holders(name) {
		if !seen[n] {
			order = append(order, n)
		}
	}
	warn := false
	frozen := 0
	for _, n := range order {
		if !v.present(n) {
			continue
		}
		present = append(present, n)
		i, _ := v.instance(n, name)
		if isUp(i.Avail) {
			sum.Up = append(sum.Up, n)
		}
		if i.Avail == AvailWarn || i.Monitor.Status == StatusStartFailed || i.Monitor.Status == StatusStopFailed {
			warn = true
		}
		if i.Frozen != 0 {
			frozen++
		}
	}
	want := 1
	if s != nil && s.Topology == config.Flex {
		want = s.FlexTarget
	}
	switch {
	case len(present) == 0:
		sum.Avail = AvailNA
	case len(sum.Up) >= want:
		sum.Avail = AvailUp
	case len(sum.Up) > 0:
		sum.Avail = AvailWarn
	default:
		sum.Avail = AvailDown
	}
	sum.Overall = sum.Avail
	if sum.Avail == AvailUp && (warn || (want == 1 && len(sum.Up) > 1)) {
		sum.Overall = AvailWarn
	}
	switch {
	case frozen > 0 && frozen == len(present):
		sum.Frozen = "frozen"
	case frozen > 0:
		sum.Frozen = "mixed"
	default:
		sum.Frozen = "thawed"
	}
	sum.Placement = "n/a"
	if s != nil && len(sum.Up) > 0 {
		ideal := v.place(s).ideal
		sum.Placement = "non-optimal"
		if sameSet(ideal, sum.Up) {
			sum.Placement = "optimal"
		}
	}
	sum.GlobalExpect, _ = v.latestExpect(name)
	sum.Done = v.done(name, s, sum)
	return sum
}

// done reports whether the orchestration of the service is done: every
// present instance has adopted the latest global expect and none is ready,
// starting or stopping, and the expect is reached: started, the service
// avail is up; stopped, no instance is up; frozen, every present instance
// is frozen; thawed, none is. With no order it is done when no instance is
// in transition.
func (v *view) done(name string, s *config.Service, sum Summary) bool {
	ge, at := v.latestExpect(name)
	for _, n := range v.holders(name) {
		if !v.present(n) {
			continue
		}
		i, _ := v.instance(n, name)
		switch i.Monitor.Status {
		case StatusReady, StatusStarting, StatusStopping:
			return false
		}
		if ge != "" && (i.Monitor.GlobalExpect != ge || !i.Monitor.GlobalExpectUpdated.Equal(at)) {
			return false
		}
	}
	switch ge {
	case ExpectStarted:
		return sum.Avail == AvailUp
	case ExpectStopped:
		return len(sum.Up) == 0
	case ExpectFrozen:
		return sum.Frozen == "frozen"
	case ExpectThawed:
		return sum.Frozen == "thawed"
	}
	return true
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}
