package metrics

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"agent/events"
	"agent/heartbeat"
	"agent/monitor"
	"agent/stream"
)

// Namespace prefixes every metric of the agent's own.
const Namespace = "agent"

// MaxEventIDs bounds the number of distinct event ids CountEvent tracks;
// further ids are counted under OtherEventID.
const MaxEventIDs = 256

// OtherEventID is the id label of events past MaxEventIDs distinct ids.
const OtherEventID = "other"

// Sources are the functions a scrape reads. Each is optional; each must be
// safe to call from any goroutine and should return quickly.
type Sources struct {
	// Bus returns the record bus's counters ((*events.Bus).Stats).
	Bus func() events.Stats
	// Heartbeat returns the heartbeat's counters ((*heartbeat.Heartbeat).Stats).
	Heartbeat func() heartbeat.Stats
	// Stream returns the GET /v1/events handler's figures
	// ((*stream.Handler).Stats).
	Stream func() stream.Stats
	// Members returns cluster.nodes: this agent's view of membership, by
	// node name.
	Members func() map[string]monitor.Member
	// Hooks returns one entry per configured hook.
	Hooks func() []HookStats
	// Sinks returns one entry per running history sink.
	Sinks func() []SinkStats
	// Orchestrator returns the orchestrator's counters and gauges.
	Orchestrator func() OrchStats
	// PeerDataRefused counts peers' data refused on receipt for being
	// over [node] max_data ((*monitor.Store).RefusedTooLarge).
	PeerDataRefused func() uint64
	// Timers returns how many periodic runs rode on another wake-up and
	// how many came at their deadline ((*ride.Bell).Stats).
	Timers func() (rides, deadlines uint64)
	// Triggers are the triggers' figures.
	Triggers TriggerSources
}

// HookStats are one hook's figures. The agent converts the hooks package's
// own figures into it.
type HookStats struct {
	// Name is the hook's name, from [hook#NAME].
	Name string
	// Runs counts the commands started.
	Runs uint64
	// Failures counts runs that ended with a non-zero exit or did not start.
	Failures uint64
	// Timeouts counts runs killed at the hook's timeout (also counted in
	// Failures when the hooks package counts them so; metrics does not
	// add them up).
	Timeouts uint64
	// Skipped counts records the hook should have run for but did not (a
	// full queue, records lost to journal retention).
	Skipped uint64
	// DurationSum is the total run time of the finished runs, in seconds.
	DurationSum float64
	// DurationCount is the number of finished runs DurationSum adds up.
	DurationCount uint64
}

// SinkStats are one history sink's figures. The agent converts the
// history package's own figures into it.
type SinkStats struct {
	// Name is the sink's name, from [sink#NAME].
	Name string
	// Written counts the rows added to the database.
	Written uint64
	// Duplicates counts records written again that were already there.
	Duplicates uint64
	// Errors counts failed attempts to reach or write the database.
	Errors uint64
	// Skipped counts records lost to journal retention before the sink
	// read them.
	Skipped uint64
	// Deleted counts rows removed by retention.
	Deleted uint64
	// Batches, BatchRecords and BatchSeconds: transactions committed, and
	// the sums of their sizes and durations.
	Batches      uint64
	BatchRecords uint64
	BatchSeconds float64
	// LagRecords and LagSeconds say how far behind the stream the sink is.
	LagRecords uint64
	LagSeconds float64
	// Up says whether the last attempt reached the database.
	Up bool
}

// OrchStats are the orchestrator's figures, by name. Names are made of
// lowercase letters, digits and "_"; other characters become "_".
type OrchStats struct {
	// Counters only go up: exported as agent_orchestrator_NAME_total.
	Counters map[string]uint64
	// Gauges are current values: exported as agent_orchestrator_NAME.
	Gauges map[string]float64
}

// Metrics is the agent's Prometheus registry. Create it with New.
type Metrics struct {
	reg *prometheus.Registry
	src Sources

	// events counts event records by id: string -> *atomic.Uint64. nIDs is
	// the number of keys, bounded by MaxEventIDs; mu serialises inserts.
	events sync.Map
	mu     sync.Mutex
	nIDs   int
	other  atomic.Uint64
}

// New returns a Metrics reading src at every scrape.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), src: src}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newAgentCollector(m),
		&orchCollector{src: src.Orchestrator},
		newTriggerCollector(src.Triggers),
	)
	return m
}

// Handler serves the registry in the Prometheus text format (or OpenMetrics
// when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg,
		EnableOpenMetrics: true,
	})
}

// Registry returns the private registry, for the agent to add collectors of
// its own or for tests to Gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// CountEvent counts one event record with data.id = id. Call it where an
// event record is published.
func (m *Metrics) CountEvent(id string) {
	if c, ok := m.events.Load(id); ok {
		c.(*atomic.Uint64).Add(1)
		return
	}
	m.mu.Lock()
	c, ok := m.events.Load(id)
	if !ok && m.nIDs >= MaxEventIDs {
		m.mu.Unlock()
		m.other.Add(1)
		return
	}
	if !ok {
		c = new(atomic.Uint64)
		m.events.Store(id, c)
		m.nIDs++
	}
	m.mu.Unlock()
	c.(*atomic.Uint64).Add(1)
}
