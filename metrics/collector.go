package metrics

import (
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"agent/heartbeat"
	"agent/monitor"
)

// memberStates are the states of cluster.nodes, always exported (0 when no
// node is in one) so that alerts see a zero rather than an absent series.
var memberStates = []string{monitor.StateAlive, monitor.StateSuspect, monitor.StateDead, monitor.StateLeft}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

// hbCounter is one heartbeat counter and where to read it in Stats.
type hbCounter struct {
	desc *prometheus.Desc
	get  func(*heartbeat.Stats) uint64
}

// agentCollector reads Sources at scrape time. Its descriptors are fixed,
// so the registry checks every metric it sends.
type agentCollector struct {
	m *Metrics

	published, journalBytes, journalSegments, journalErrors *prometheus.Desc
	busSubscribers, busSlow, busSkipped                     *prometheus.Desc
	journalWaiting, journalLost, ringBytes, ringRecords     *prometheus.Desc
	peerDataRefused                                         *prometheus.Desc
	timerRides, timerDeadlines                              *prometheus.Desc
	events                                                  *prometheus.Desc
	heartbeat                                               []hbCounter
	streamSubscribers, streamSlow, streamRefused            *prometheus.Desc
	members                                                 *prometheus.Desc
	hookRuns, hookFailures, hookTimeouts, hookSkipped       *prometheus.Desc
	hookDuration                                            *prometheus.Desc
	sinkWritten, sinkDuplicates, sinkErrors, sinkSkipped    *prometheus.Desc
	sinkDeleted, sinkLagRecords, sinkLagSeconds, sinkUp     *prometheus.Desc
	sinkBatchSize, sinkBatchDuration                        *prometheus.Desc
}

func newAgentCollector(m *Metrics) *agentCollector {
	hb := func(name, help string, get func(*heartbeat.Stats) uint64) hbCounter {
		return hbCounter{desc("heartbeat_"+name+"_total", help), get}
	}
	return &agentCollector{
		m:               m,
		published:       desc("records_published_total", "Records published on the agent's stream since start, by kind (patch, event).", "kind"),
		journalBytes:    desc("journal_bytes", "Size of the retained event journal in bytes."),
		journalSegments: desc("journal_segments", "Number of retained event journal segment files."),
		journalErrors:   desc("journal_write_errors_total", "Failed journal writes, rotations and fsyncs."),
		busSubscribers:  desc("bus_subscribers", "Open subscriptions of the record bus (websocket streams, hooks, internal consumers)."),
		busSlow:         desc("bus_slow_disconnects_total", "Bus subscriptions ended because they fell behind their lag limit."),
		busSkipped:      desc("bus_skipped_records_total", "Records durable subscriptions (hooks) lost to journal retention or write errors."),
		journalWaiting:  desc("journal_waiting_records", "Records published but not yet written to the journal (its writes fail): in memory only."),
		journalLost:     desc("journal_lost_records_total", "Records that left the in-memory ring before the journal could write them."),
		ringBytes:       desc("ring_bytes", "Memory held by the in-memory ring of the newest records ([journal] ring_bytes bounds it)."),
		ringRecords:     desc("ring_records", "Records in the in-memory ring."),
		peerDataRefused: desc("peer_data_refused_total", "Peers' data refused on receipt for being over [node] max_data."),
		timerRides:      desc("timer_rides_total", "Periodic work (orchestrator backstop tick, processors governor, host stats) run early on a wake-up the agent had anyway."),
		timerDeadlines:  desc("timer_deadlines_total", "Periodic work run at its deadline, on a wake-up of its own."),
		events:          desc("events_total", "Event records published, by event id (data.id).", "id"),
		heartbeat: []hbCounter{
			hb("deltas_sent", "JSON-patch deltas of this node's data sent to peers.", func(s *heartbeat.Stats) uint64 { return s.DeltasSent }),
			hb("deltas_received", "JSON-patch deltas received from peers.", func(s *heartbeat.Stats) uint64 { return s.DeltasReceived }),
			hb("deltas_applied", "Received deltas applied to the local copy of a peer's data.", func(s *heartbeat.Stats) uint64 { return s.DeltasApplied }),
			hb("deltas_stale", "Received deltas ignored because they were old or did not follow the generation held.", func(s *heartbeat.Stats) uint64 { return s.DeltasStale }),
			hb("full_sent", "Whole copies of this node's data sent to peers.", func(s *heartbeat.Stats) uint64 { return s.FullSent }),
			hb("full_received", "Whole copies of a peer's data received.", func(s *heartbeat.Stats) uint64 { return s.FullReceived }),
			hb("full_applied", "Whole copies of a peer's data applied.", func(s *heartbeat.Stats) uint64 { return s.FullApplied }),
			hb("full_requests", "Requests sent to peers for a whole copy of their data.", func(s *heartbeat.Stats) uint64 { return s.FullRequests }),
			hb("resyncs", "Peers' data repaired with a whole copy (after a gap, a failed delta, a digest that differed, or push/pull data still newer after a grace).", func(s *heartbeat.Stats) uint64 { return s.Resyncs }),
			hb("bad_messages", "Heartbeat messages that could not be decoded or applied.", func(s *heartbeat.Stats) uint64 { return s.BadMessages }),
			hb("sent_bytes", "Bytes of heartbeat messages sent.", func(s *heartbeat.Stats) uint64 { return s.BytesSent }),
			hb("orders_received", "Orders (freeze, thaw, service orders) received from peers.", func(s *heartbeat.Stats) uint64 { return s.OrdersReceived }),
			hb("reliable_sends", "Messages sent over the reliable (TCP) channel.", func(s *heartbeat.Stats) uint64 { return s.ReliableSends }),
			hb("send_errors", "Heartbeat sends that failed.", func(s *heartbeat.Stats) uint64 { return s.SendErrors }),
			hb("digests_sent", "Digests of this node's data sent to peers after its last change.", func(s *heartbeat.Stats) uint64 { return s.DigestsSent }),
			hb("digests_received", "Digests of peers' data received (messages and probe acks).", func(s *heartbeat.Stats) uint64 { return s.DigestsReceived }),
			hb("divergences", "Copies of a peer's data found behind or different by a digest or a push/pull, past the grace for a delta in flight.", func(s *heartbeat.Stats) uint64 { return s.Divergences }),
			hb("relay_requests", "Requests for a node's data sent to a third node because the owner did not answer (a bridge partition).", func(s *heartbeat.Stats) uint64 { return s.RelayRequests }),
			hb("relays_sent", "Copies of another node's data sent to a peer that could not reach it.", func(s *heartbeat.Stats) uint64 { return s.RelaysSent }),
			hb("crashes_found", "Peers found down by the crash watch: their agent's stream closed and its port refused a connection.", func(s *heartbeat.Stats) uint64 { return s.CrashesFound }),
			hb("queue_overflows", "Peer send queues that reached their bound (their deltas were replaced by one full copy).", func(s *heartbeat.Stats) uint64 { return s.QueueOverflows }),
		},
		streamSubscribers: desc("stream_subscribers", "Open websocket streams on GET /v1/events."),
		streamSlow:        desc("stream_slow_disconnects_total", "Websocket streams closed because the subscriber could not keep up."),
		streamRefused:     desc("stream_refused_total", "Subscriptions refused with HTTP 503 because [listener] max_subscribers streams were open."),
		members:           desc("cluster_nodes", "Nodes in this agent's view of membership (cluster.nodes), by state.", "state"),
		hookRuns:          desc("hook_runs_total", "Hook commands started.", "hook"),
		hookFailures:      desc("hook_failures_total", "Hook runs that failed (non-zero exit, start error).", "hook"),
		hookTimeouts:      desc("hook_timeouts_total", "Hook runs killed at their timeout.", "hook"),
		hookSkipped:       desc("hook_skipped_total", "Records a hook did not run for (queue full, lost to retention).", "hook"),
		hookDuration:      desc("hook_duration_seconds", "Run time of finished hook commands.", "hook"),
		sinkWritten:       desc("sink_written_total", "Rows a history sink added to its database.", "sink"),
		sinkDuplicates:    desc("sink_duplicates_total", "Records a history sink wrote again that were already in its database (after a crash or an outage); not added twice.", "sink"),
		sinkErrors:        desc("sink_errors_total", "Failed attempts of a history sink to reach or write its database.", "sink"),
		sinkSkipped:       desc("sink_skipped_total", "Records a history sink lost to journal retention before it read them.", "sink"),
		sinkDeleted:       desc("sink_deleted_total", "Rows a history sink's retention deleted.", "sink"),
		sinkLagRecords:    desc("sink_lag_records", "Records of the stream a history sink has not finished with.", "sink"),
		sinkLagSeconds:    desc("sink_lag_seconds", "Age of the oldest record a history sink holds unwritten (0 when caught up).", "sink"),
		sinkUp:            desc("sink_up", "1 when a history sink's last attempt reached its database, else 0.", "sink"),
		sinkBatchSize:     desc("sink_batch_records", "Records per transaction of a history sink.", "sink"),
		sinkBatchDuration: desc("sink_batch_duration_seconds", "Time a history sink's transactions took.", "sink"),
	}
}

// Describe sends every descriptor the collector may use.
func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.published, c.journalBytes, c.journalSegments, c.journalErrors,
		c.busSubscribers, c.busSlow, c.busSkipped, c.events,
		c.journalWaiting, c.journalLost, c.ringBytes, c.ringRecords, c.peerDataRefused,
		c.timerRides, c.timerDeadlines,
		c.streamSubscribers, c.streamSlow, c.streamRefused, c.members,
		c.hookRuns, c.hookFailures, c.hookTimeouts, c.hookSkipped, c.hookDuration,
		c.sinkWritten, c.sinkDuplicates, c.sinkErrors, c.sinkSkipped, c.sinkDeleted,
		c.sinkLagRecords, c.sinkLagSeconds, c.sinkUp, c.sinkBatchSize, c.sinkBatchDuration,
	} {
		ch <- d
	}
	for _, h := range c.heartbeat {
		ch <- h.desc
	}
}

func counter(d *prometheus.Desc, v uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// Collect reads the sources once each.
func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	src := &c.m.src
	if src.Bus != nil {
		st := src.Bus()
		for _, k := range slices.Sorted(maps.Keys(st.Published)) {
			ch <- counter(c.published, st.Published[k], k)
		}
		ch <- gauge(c.journalBytes, float64(st.JournalBytes))
		ch <- gauge(c.journalSegments, float64(st.JournalSegments))
		ch <- counter(c.journalErrors, st.JournalWriteErrors)
		ch <- gauge(c.busSubscribers, float64(st.Subscribers))
		ch <- counter(c.busSlow, st.SlowDisconnects)
		ch <- counter(c.busSkipped, st.Skipped)
		ch <- gauge(c.journalWaiting, float64(st.JournalWaiting))
		ch <- counter(c.journalLost, st.JournalLost)
		ch <- gauge(c.ringBytes, float64(st.RingBytes))
		ch <- gauge(c.ringRecords, float64(st.RingRecords))
	}
	if src.PeerDataRefused != nil {
		ch <- counter(c.peerDataRefused, src.PeerDataRefused())
	}
	if src.Timers != nil {
		rides, deadlines := src.Timers()
		ch <- counter(c.timerRides, rides)
		ch <- counter(c.timerDeadlines, deadlines)
	}
	c.collectEvents(ch)
	if src.Heartbeat != nil {
		st := src.Heartbeat()
		for _, h := range c.heartbeat {
			ch <- counter(h.desc, h.get(&st))
		}
	}
	if src.Stream != nil {
		st := src.Stream()
		ch <- gauge(c.streamSubscribers, float64(st.Subscribers))
		ch <- counter(c.streamSlow, st.SlowDisconnects)
		ch <- counter(c.streamRefused, st.Refused)
	}
	if src.Members != nil {
		n := make(map[string]int, len(memberStates))
		for _, s := range memberStates {
			n[s] = 0
		}
		for _, m := range src.Members() {
			n[m.State]++ // an unknown state gets its own series
		}
		for _, s := range slices.Sorted(maps.Keys(n)) {
			ch <- gauge(c.members, float64(n[s]), s)
		}
	}
	if src.Hooks != nil {
		seen := make(map[string]bool)
		for _, h := range src.Hooks() {
			if seen[h.Name] {
				continue // a duplicate name would fail the whole family
			}
			seen[h.Name] = true
			ch <- counter(c.hookRuns, h.Runs, h.Name)
			ch <- counter(c.hookFailures, h.Failures, h.Name)
			ch <- counter(c.hookTimeouts, h.Timeouts, h.Name)
			ch <- counter(c.hookSkipped, h.Skipped, h.Name)
			ch <- prometheus.MustNewConstSummary(c.hookDuration, h.DurationCount, h.DurationSum, nil, h.Name)
		}
	}
	if src.Sinks != nil {
		c.collectSinks(ch, src.Sinks())
	}
}

func (c *agentCollector) collectSinks(ch chan<- prometheus.Metric, sinks []SinkStats) {
	slices.SortFunc(sinks, func(a, b SinkStats) int { return strings.Compare(a.Name, b.Name) })
	seen := make(map[string]bool)
	for _, s := range sinks {
		if seen[s.Name] {
			continue
		}
		seen[s.Name] = true
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- counter(c.sinkWritten, s.Written, s.Name)
		ch <- counter(c.sinkDuplicates, s.Duplicates, s.Name)
		ch <- counter(c.sinkErrors, s.Errors, s.Name)
		ch <- counter(c.sinkSkipped, s.Skipped, s.Name)
		ch <- counter(c.sinkDeleted, s.Deleted, s.Name)
		ch <- gauge(c.sinkLagRecords, float64(s.LagRecords), s.Name)
		ch <- gauge(c.sinkLagSeconds, s.LagSeconds, s.Name)
		ch <- gauge(c.sinkUp, up, s.Name)
		ch <- prometheus.MustNewConstSummary(c.sinkBatchSize, s.Batches, float64(s.BatchRecords), nil, s.Name)
		ch <- prometheus.MustNewConstSummary(c.sinkBatchDuration, s.Batches, s.BatchSeconds, nil, s.Name)
	}
}

func (c *agentCollector) collectEvents(ch chan<- prometheus.Metric) {
	c.m.events.Range(func(k, v any) bool {
		ch <- counter(c.events, v.(*atomic.Uint64).Load(), k.(string))
		return true
	})
	if n := c.m.other.Load(); n > 0 {
		ch <- counter(c.events, n, OtherEventID)
	}
}

// orchCollector exports OrchStats, whose metric names are only known at
// scrape time: it is an unchecked collector (Describe sends nothing).
type orchCollector struct {
	src func() OrchStats
}

// Describe sends nothing: the names depend on the orchestrator.
func (c *orchCollector) Describe(chan<- *prometheus.Desc) {}

// Collect reads the orchestrator's figures once.
func (c *orchCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src == nil {
		return
	}
	st := c.src()
	seen := make(map[string]bool)
	emit := func(name, help string, vt prometheus.ValueType, v float64) {
		if seen[name] {
			return
		}
		seen[name] = true
		d := prometheus.NewDesc(name, help, nil, nil)
		ch <- prometheus.MustNewConstMetric(d, vt, v)
	}
	for _, k := range slices.Sorted(maps.Keys(st.Counters)) {
		s := sanitize(k)
		emit(Namespace+"_orchestrator_"+s+"_total", "Orchestrator counter "+s+".", prometheus.CounterValue, float64(st.Counters[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(st.Gauges)) {
		s := sanitize(k)
		emit(Namespace+"_orchestrator_"+s, "Orchestrator gauge "+s+".", prometheus.GaugeValue, st.Gauges[k])
	}
}

// sanitize makes name a valid metric name suffix: lowercase letters,
// digits and "_".
func sanitize(name string) string {
	if name == "" {
		return "unnamed"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, name)
}
