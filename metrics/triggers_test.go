package metrics_test

import (
	"testing"

	"agent/metrics"
)

func TestTriggerMetrics(t *testing.T) {
	list := []metrics.TriggerStats{
		{Name: "flapping", Open: 2, Pending: 1, Fires: 3, Expiries: 4, Runs: 6, RunFailures: 2, Failed: 1, DurationSum: 1.5, DurationCount: 6},
		{Name: "flapping", Open: 9}, // a duplicate does not break the scrape
		{Name: "no-up"},
	}
	m := metrics.New(metrics.Sources{Triggers: metrics.TriggerSources{
		Triggers: func() []metrics.TriggerStats { return list },
		Skipped:  func() uint64 { return 7 },
	}})
	fams := scrape(t, m.Handler())
	want(t, fams, 2, "agent_trigger_open_streams", "trigger", "flapping")
	want(t, fams, 1, "agent_trigger_pending_commands", "trigger", "flapping")
	want(t, fams, 3, "agent_trigger_fires_total", "trigger", "flapping")
	want(t, fams, 4, "agent_trigger_expiries_total", "trigger", "flapping")
	want(t, fams, 6, "agent_trigger_command_runs_total", "trigger", "flapping")
	want(t, fams, 2, "agent_trigger_command_failures_total", "trigger", "flapping")
	want(t, fams, 1, "agent_trigger_failed_total", "trigger", "flapping")
	want(t, fams, 1.5, "agent_trigger_command_duration_seconds", "trigger", "flapping")
	want(t, fams, 0, "agent_trigger_open_streams", "trigger", "no-up")
	want(t, fams, 7, "agent_trigger_skipped_records_total")
	if n := fams["agent_trigger_duration_count"]; n != nil {
		t.Error("unexpected family")
	}
}
