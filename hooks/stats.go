package hooks

import (
	"sync"
	"time"

	"agent/durable"
)

// DurationBuckets are the upper bounds, in seconds, of the run-duration
// histogram of HookStats.Buckets (a last +Inf bucket is implied: it is
// DurationCount).
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Stats are the runner's figures, for metrics.
type Stats struct {
	// Hooks has one entry per current hook, sorted by name.
	Hooks []HookStats
}

// HookStats are one hook's figures. The counters start at zero when the
// agent starts and survive a change of the hook's settings; a removed hook
// disappears.
type HookStats struct {
	// Name is the hook's name, from [hook#NAME].
	Name string
	// Runs counts the runs tried: commands started, or that failed to start.
	Runs uint64
	// Failures counts the runs that did not succeed: a non-zero exit, a
	// death by signal, a command that did not start, and the timeouts.
	Failures uint64
	// Timeouts counts the runs killed at the hook's timeout (also counted
	// in Failures).
	Timeouts uint64
	// Skipped counts records lost to journal retention before the hook read
	// them: the hook never ran for them, whether they matched or not.
	Skipped uint64
	// Losses counts the hook_skipped events published: retention skips,
	// epoch changes (where the number of records lost is unknown), cursors
	// ahead of the journal or unreadable.
	Losses uint64
	// Epoch and Seq are the hook's cursor: it is done with every record up
	// to Seq of Epoch.
	Epoch string
	Seq   uint64
	// Lag is how many records the hook is behind the newest record (0 when
	// its cursor is in another epoch, before it resumed).
	Lag uint64
	// Running reports whether a command is running now.
	Running bool
	// DurationSum is the total run time of the finished runs, in seconds,
	// and DurationCount their number (a Prometheus summary or histogram).
	DurationSum   float64
	DurationCount uint64
	// Buckets are the cumulative counts of finished runs by duration, one
	// per DurationBuckets bound.
	Buckets []Bucket
}

// Bucket is one cumulative histogram bucket: Count runs took at most
// UpperBound seconds.
type Bucket struct {
	UpperBound float64
	Count      uint64
}

// BucketCounts returns Buckets as the map prometheus.NewConstHistogram
// takes.
func (h HookStats) BucketCounts() map[float64]uint64 {
	m := make(map[float64]uint64, len(h.Buckets))
	for _, b := range h.Buckets {
		m[b.UpperBound] = b.Count
	}
	return m
}

// hookStats are the live counters of one hook name, shared by the workers
// that successively run it.
type hookStats struct {
	mu       sync.Mutex
	runs     uint64
	failures uint64
	timeouts uint64
	skipped  uint64
	losses   uint64
	cur      durable.Cursor
	running  bool
	durSum   float64
	durCount uint64
	buckets  []uint64 // not cumulative; one per DurationBuckets
}

func newHookStats() *hookStats {
	return &hookStats{buckets: make([]uint64, len(DurationBuckets))}
}

func (s *hookStats) setCursor(c durable.Cursor) {
	s.mu.Lock()
	s.cur = c
	s.mu.Unlock()
}

func (s *hookStats) setRunning(b bool) {
	s.mu.Lock()
	s.running = b
	s.mu.Unlock()
}

// addRun records a finished run (or one that did not start: d is 0).
func (s *hookStats) addRun(d time.Duration, failed, timedOut, started bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs++
	if failed {
		s.failures++
	}
	if timedOut {
		s.timeouts++
	}
	if !started {
		return
	}
	sec := d.Seconds()
	s.durSum += sec
	s.durCount++
	for i, ub := range DurationBuckets {
		if sec <= ub {
			s.buckets[i]++
			break
		}
	}
}

func (s *hookStats) addLoss(skipped uint64) {
	s.mu.Lock()
	s.skipped += skipped
	s.losses++
	s.mu.Unlock()
}

func (s *hookStats) snapshot(name, epoch string, head uint64) HookStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := HookStats{
		Name:          name,
		Runs:          s.runs,
		Failures:      s.failures,
		Timeouts:      s.timeouts,
		Skipped:       s.skipped,
		Losses:        s.losses,
		Epoch:         s.cur.Epoch,
		Seq:           s.cur.Seq,
		Running:       s.running,
		DurationSum:   s.durSum,
		DurationCount: s.durCount,
		Buckets:       make([]Bucket, len(DurationBuckets)),
	}
	if s.cur.Epoch == epoch && head > s.cur.Seq {
		h.Lag = head - s.cur.Seq
	}
	var cum uint64
	for i, ub := range DurationBuckets {
		cum += s.buckets[i]
		h.Buckets[i] = Bucket{UpperBound: ub, Count: cum}
	}
	return h
}
