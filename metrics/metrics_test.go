package metrics_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"agent/events"
	"agent/heartbeat"
	"agent/metrics"
	"agent/monitor"
	"agent/stream"
)

// fakeSources are sources whose values a test moves.
type fakeSources struct {
	mu      sync.Mutex
	bus     events.Stats
	hb      heartbeat.Stats
	st      stream.Stats
	members map[string]monitor.Member
	hooks   []metrics.HookStats
	orch    metrics.OrchStats
	calls   atomic.Int64
}

func (f *fakeSources) sources() metrics.Sources {
	lock := func() func() { f.calls.Add(1); f.mu.Lock(); return f.mu.Unlock }
	return metrics.Sources{
		Bus:       func() events.Stats { defer lock()(); return f.bus },
		Heartbeat: func() heartbeat.Stats { defer lock()(); return f.hb },
		Stream:    func() stream.Stats { defer lock()(); return f.st },
		Members: func() map[string]monitor.Member {
			defer lock()()
			return f.members
		},
		Hooks:        func() []metrics.HookStats { defer lock()(); return f.hooks },
		Orchestrator: func() metrics.OrchStats { defer lock()(); return f.orch },
	}
}

// scrape GETs the handler and parses the answer as Prometheus text.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, body)
	}
	for name, f := range fams {
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	return fams
}

// value returns the value of the series of family name with the given
// label pairs ("k", "v", ...), and whether it exists.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Summary != nil:
			return m.Summary.GetSampleSum(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func want(t *testing.T, fams map[string]*dto.MetricFamily, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(fams, name, labels...)
	if !ok {
		t.Errorf("%s%v missing", name, labels)
		return
	}
	if got != v {
		t.Errorf("%s%v = %v, want %v", name, labels, got, v)
	}
}

func TestExpositionParsesAndMoves(t *testing.T) {
	f := &fakeSources{
		bus:     events.Stats{Published: map[string]uint64{"patch": 3, "event": 1}, JournalBytes: 1234, JournalSegments: 2, Subscribers: 4},
		hb:      heartbeat.Stats{DeltasSent: 5, DeltasReceived: 6, DeltasApplied: 6, Resyncs: 1, BytesSent: 999},
		st:      stream.Stats{Subscribers: 2, SlowDisconnects: 1, Refused: 7},
		members: map[string]monitor.Member{"n1": {State: monitor.StateAlive}, "n2": {State: monitor.StateAlive}, "n3": {State: monitor.StateDead}},
		hooks:   []metrics.HookStats{{Name: "notify", Runs: 3, Failures: 1, Timeouts: 1, DurationSum: 1.5, DurationCount: 3}},
		orch:    metrics.OrchStats{Counters: map[string]uint64{"starts": 2, "Fail-overs": 1}, Gauges: map[string]float64{"services_managed": 3}},
	}
	m := metrics.New(f.sources())
	m.CountEvent("node_freeze")
	m.CountEvent("node_freeze")
	m.CountEvent("node_join")

	fams := scrape(t, m.Handler())
	want(t, fams, 3, "agent_records_published_total", "kind", "patch")
	want(t, fams, 1, "agent_records_published_total", "kind", "event")
	want(t, fams, 1234, "agent_journal_bytes")
	want(t, fams, 2, "agent_journal_segments")
	want(t, fams, 4, "agent_bus_subscribers")
	want(t, fams, 2, "agent_events_total", "id", "node_freeze")
	want(t, fams, 1, "agent_events_total", "id", "node_join")
	want(t, fams, 5, "agent_heartbeat_deltas_sent_total")
	want(t, fams, 6, "agent_heartbeat_deltas_applied_total")
	want(t, fams, 1, "agent_heartbeat_resyncs_total")
	want(t, fams, 999, "agent_heartbeat_sent_bytes_total")
	want(t, fams, 2, "agent_stream_subscribers")
	want(t, fams, 1, "agent_stream_slow_disconnects_total")
	want(t, fams, 7, "agent_stream_refused_total")
	want(t, fams, 2, "agent_cluster_nodes", "state", "alive")
	want(t, fams, 1, "agent_cluster_nodes", "state", "dead")
	want(t, fams, 0, "agent_cluster_nodes", "state", "suspect")
	want(t, fams, 3, "agent_hook_runs_total", "hook", "notify")
	want(t, fams, 1, "agent_hook_failures_total", "hook", "notify")
	want(t, fams, 1.5, "agent_hook_duration_seconds", "hook", "notify")
	want(t, fams, 2, "agent_orchestrator_starts_total")
	want(t, fams, 1, "agent_orchestrator_fail_overs_total")
	want(t, fams, 3, "agent_orchestrator_services_managed")
	if fams["go_goroutines"] == nil {
		t.Error("go runtime collector missing")
	}
	if runtime.GOOS == "linux" && fams["process_start_time_seconds"] == nil {
		t.Error("process collector missing")
	}
	if s := fams["agent_hook_duration_seconds"].GetMetric()[0].GetSummary(); s.GetSampleCount() != 3 {
		t.Errorf("hook duration count = %d, want 3", s.GetSampleCount())
	}

	f.mu.Lock()
	f.bus.Published["patch"] = 10
	f.hb.DeltasSent = 50
	f.members["n3"] = monitor.Member{State: monitor.StateAlive}
	f.hooks[0].Runs = 4
	f.orch.Counters["starts"] = 7
	f.mu.Unlock()
	m.CountEvent("node_freeze")

	fams = scrape(t, m.Handler())
	want(t, fams, 10, "agent_records_published_total", "kind", "patch")
	want(t, fams, 50, "agent_heartbeat_deltas_sent_total")
	want(t, fams, 3, "agent_cluster_nodes", "state", "alive")
	want(t, fams, 0, "agent_cluster_nodes", "state", "dead")
	want(t, fams, 4, "agent_hook_runs_total", "hook", "notify")
	want(t, fams, 7, "agent_orchestrator_starts_total")
	want(t, fams, 3, "agent_events_total", "id", "node_freeze")
}

func TestNilSourcesAndEmptyRegistry(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	fams := scrape(t, m.Handler())
	for name := range fams {
		if strings.HasPrefix(name, "agent_") {
			t.Errorf("%s exported without a source", name)
		}
	}
	if fams["go_goroutines"] == nil {
		t.Error("go runtime collector missing")
	}
}

func TestEventIDsBounded(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	for i := range metrics.MaxEventIDs + 10 {
		m.CountEvent(fmt.Sprintf("id%d", i))
	}
	m.CountEvent("id0")
	fams := scrape(t, m.Handler())
	if n := len(fams["agent_events_total"].GetMetric()); n != metrics.MaxEventIDs+1 {
		t.Errorf("%d event series, want %d", n, metrics.MaxEventIDs+1)
	}
	want(t, fams, 10, "agent_events_total", "id", metrics.OtherEventID)
	want(t, fams, 2, "agent_events_total", "id", "id0")
}

func TestDuplicateNamesDoNotBreakScrape(t *testing.T) {
	m := metrics.New(metrics.Sources{
		Hooks: func() []metrics.HookStats { return []metrics.HookStats{{Name: "a", Runs: 1}, {Name: "a", Runs: 2}} },
		Orchestrator: func() metrics.OrchStats {
			return metrics.OrchStats{Counters: map[string]uint64{"x-y": 1, "x_y": 2}, Gauges: map[string]float64{"x_y_total": 3}}
		},
	})
	fams := scrape(t, m.Handler())
	want(t, fams, 1, "agent_hook_runs_total", "hook", "a")
	if _, ok := value(fams, "agent_orchestrator_x_y_total"); !ok {
		t.Error("orchestrator counter missing")
	}
}

func TestCountEventConcurrent(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				m.CountEvent(fmt.Sprintf("e%d", (g+i)%4))
			}
		}()
	}
	wg.Wait()
	fams := scrape(t, m.Handler())
	total := 0.0
	for _, s := range fams["agent_events_total"].GetMetric() {
		total += s.GetCounter().GetValue()
	}
	if total != 8000 {
		t.Errorf("counted %v events, want 8000", total)
	}
}

func BenchmarkCountEvent(b *testing.B) {
	m := metrics.New(metrics.Sources{})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.CountEvent("instance_status_change")
		}
	})
}
