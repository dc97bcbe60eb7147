package triggers

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// TriggerStats are one trigger's figures since the agent started.
type TriggerStats struct {
	// Name is the trigger's name.
	Name string
	// Configured: the trigger is in the running config (false for a removed
	// one whose figures are still reported).
	Configured bool
	// Open is the number of open streams; Pending the closed streams whose
	// command has not finished.
	Open, Pending int
	// Fires and Expiries count the streams closed by each outcome.
	Fires, Expiries uint64
	// Runs counts the commands run (each retry counts); RunFailures the
	// runs that failed; Failed the commands given up after their retries
	// (trigger_failed).
	Runs, RunFailures, Failed uint64
	// DurationSum is the total run time of the runs, in seconds, and
	// DurationCount their number.
	DurationSum   float64
	DurationCount uint64
}

// Stats are the runner's figures.
type Stats struct {
	// Triggers are per trigger, by name.
	Triggers []TriggerStats
	// Skipped counts the records lost to journal retention before the
	// triggers read them.
	Skipped uint64
	// StateWriteErrors counts failed commits of the state file.
	StateWriteErrors uint64
	// Seq is the seq of the last record the triggers applied.
	Seq uint64
}

type triggerStats struct {
	fires, expiries        atomic.Uint64
	runs, runFails, failed atomic.Uint64

	mu            sync.Mutex
	durationSum   float64
	durationCount uint64
}

func (s *triggerStats) addRun(d time.Duration, failed bool) {
	s.runs.Add(1)
	if failed {
		s.runFails.Add(1)
	}
	s.mu.Lock()
	s.durationSum += d.Seconds()
	s.durationCount++
	s.mu.Unlock()
}

// statsSet holds every trigger's figures; names are never forgotten while
// the agent runs (a removed trigger keeps its counters, as Prometheus
// expects of a counter).
type statsSet struct {
	skipped, writeErrors, seq atomic.Uint64

	mu         sync.Mutex
	byName     map[string]*triggerStats
	configured []string
	open       map[string]int
	pending    map[string]int
}

func newStatsSet() *statsSet {
	return &statsSet{byName: map[string]*triggerStats{}}
}

func (s *statsSet) get(name string) *triggerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byName[name]
	if st == nil {
		st = &triggerStats{}
		s.byName[name] = st
	}
	return st
}

// setGauges replaces the configured names and the open and pending counts.
func (s *statsSet) setGauges(configured []string, open, pending map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range configured {
		if s.byName[n] == nil {
			s.byName[n] = &triggerStats{}
		}
	}
	s.configured, s.open, s.pending = configured, open, pending
}

func (s *statsSet) snapshot() Stats {
	s.mu.Lock()
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	out := Stats{Skipped: s.skipped.Load(), StateWriteErrors: s.writeErrors.Load(), Seq: s.seq.Load()}
	for _, n := range names {
		st := s.byName[n]
		ts := TriggerStats{
			Name: n, Configured: slices.Contains(s.configured, n), Open: s.open[n], Pending: s.pending[n],
			Fires: st.fires.Load(), Expiries: st.expiries.Load(),
			Runs: st.runs.Load(), RunFailures: st.runFails.Load(), Failed: st.failed.Load(),
		}
		st.mu.Lock()
		ts.DurationSum, ts.DurationCount = st.durationSum, st.durationCount
		st.mu.Unlock()
		out.Triggers = append(out.Triggers, ts)
	}
	s.mu.Unlock()
	return out
}
