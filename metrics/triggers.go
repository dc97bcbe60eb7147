package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// TriggerStats are one trigger's figures. The agent converts the triggers
// package's own figures into it.
type TriggerStats struct {
	// Name is the trigger's name, from [trigger#NAME].
	Name string
	// Open is the number of open streams; Pending the closed streams whose
	// command has not finished.
	Open, Pending int
	// Fires and Expiries count the streams closed by each outcome.
	Fires, Expiries uint64
	// Runs counts the commands run, each retry included; RunFailures the
	// runs that failed (non-zero exit, timeout, not started).
	Runs, RunFailures uint64
	// Failed counts the commands given up after their retries
	// (trigger_failed events).
	Failed uint64
	// DurationSum is the total run time of the commands, in seconds, and
	// DurationCount the number of runs it adds up.
	DurationSum   float64
	DurationCount uint64
}

// TriggerSources are what the trigger metrics read at scrape time.
type TriggerSources struct {
	// Triggers returns one entry per trigger seen since start.
	Triggers func() []TriggerStats
	// Skipped returns the records lost to journal retention before the
	// triggers read them.
	Skipped func() uint64
}

// triggerCollector exports the triggers' figures.
type triggerCollector struct {
	src TriggerSources

	open, pending, fires, expiries    *prometheus.Desc
	runs, runFailures, failed, runDur *prometheus.Desc
	skipped                           *prometheus.Desc
}

func newTriggerCollector(src TriggerSources) *triggerCollector {
	return &triggerCollector{
		src:         src,
		open:        desc("trigger_open_streams", "Open streams of a trigger.", "trigger"),
		pending:     desc("trigger_pending_commands", "Closed streams of a trigger whose command has not finished (running, waiting for a retry, or queued).", "trigger"),
		fires:       desc("trigger_fires_total", "Streams of a trigger that fired.", "trigger"),
		expiries:    desc("trigger_expiries_total", "Streams of a trigger that expired (window, reload, removal).", "trigger"),
		runs:        desc("trigger_command_runs_total", "Runs of a trigger's commands, each retry included.", "trigger"),
		runFailures: desc("trigger_command_failures_total", "Runs of a trigger's commands that failed (non-zero exit, timeout, not started).", "trigger"),
		failed:      desc("trigger_failed_total", "Trigger commands given up after their retries (trigger_failed events).", "trigger"),
		runDur:      desc("trigger_command_duration_seconds", "Run time of a trigger's commands.", "trigger"),
		skipped:     desc("trigger_skipped_records_total", "Records lost to journal retention before the triggers read them."),
	}
}

// Describe sends every descriptor the collector may use.
func (c *triggerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.open, c.pending, c.fires, c.expiries, c.runs, c.runFailures, c.failed, c.runDur, c.skipped} {
		ch <- d
	}
}

// Collect reads the sources once.
func (c *triggerCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Skipped != nil {
		ch <- counter(c.skipped, c.src.Skipped())
	}
	if c.src.Triggers == nil {
		return
	}
	seen := make(map[string]bool)
	for _, t := range c.src.Triggers() {
		if seen[t.Name] {
			continue // a duplicate name would fail the whole family
		}
		seen[t.Name] = true
		ch <- gauge(c.open, float64(t.Open), t.Name)
		ch <- gauge(c.pending, float64(t.Pending), t.Name)
		ch <- counter(c.fires, t.Fires, t.Name)
		ch <- counter(c.expiries, t.Expiries, t.Name)
		ch <- counter(c.runs, t.Runs, t.Name)
		ch <- counter(c.runFailures, t.RunFailures, t.Name)
		ch <- counter(c.failed, t.Failed, t.Name)
		ch <- prometheus.MustNewConstSummary(c.runDur, t.DurationCount, t.DurationSum, nil, t.Name)
	}
}
