package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"agent/config"
	"agent/durable"
	"agent/events"
	"agent/history"
)

// benchBus opens a bus with a journal in a directory of its own.
func benchBus() (*events.Bus, string, error) {
	dir, err := os.MkdirTemp("", "agent-bench-sink-")
	if err != nil {
		return nil, "", err
	}
	bus, err := events.Open(events.Config{Dir: filepath.Join(dir, "journal"), Logger: quiet()})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return bus, dir, nil
}

// publishMix publishes n records as an agent makes them: patches of a
// node's stats and generation, and events of a few ids.
func publishMix(bus *events.Bus, n int) uint64 {
	var last uint64
	for i := range n {
		var r *events.Record
		if i%2 == 0 {
			r = bus.Publish("n1", events.KindPatch, json.RawMessage(fmt.Sprintf(
				`[{"op":"replace","path":"/monitor/nodes/n1/stats/load_15m","value":%d.%02d},{"op":"replace","path":"/monitor/nodes/n1/gen","value":%d}]`, i%7, i%100, i)))
		} else {
			r = bus.Publish("n1", events.KindEvent, json.RawMessage(fmt.Sprintf(
				`{"id":"instance_status_change","reason":"check","svcname":"svc%d","instance":{"avail":"up"}}`, i%50)))
		}
		last = r.Seq
	}
	return last
}

// benchSink runs a sink over bus until stop; batch 1000.
func benchSink(bus *events.Bus, dir string, t history.Target, priority []string) (*history.Sink, *durable.Consumer, func(), error) {
	c, err := durable.Open(durable.Config{Name: "sink bench", CursorPath: filepath.Join(dir, "bench.cursor"), Bus: bus, NewFromOldest: true, Logger: quiet()})
	if err != nil {
		return nil, nil, nil, err
	}
	sc := config.DefaultSink("bench")
	sc.Type = string(t.Dialect)
	sc.Kinds = []string{"event", "patch"}
	sc.Batch = 1000
	sc.Flush = time.Second
	sc.Priority = priority
	s, err := history.NewSink(history.SinkConfig{
		Sink:    sc,
		Resolve: func() (history.Target, error) { return t, nil },
		Origin:  history.Origin{Cluster: "bench", Agent: "n1"},
		Source:  history.DurableSource(c),
		Logger:  quiet(),
	})
	if err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	return s, c, func() { cancel(); <-done; c.Close() }, nil
}

// sinkThroughputRow publishes records first, then times the sink writing
// them all: the sink alone, reading the journal at its own pace.
func (b *bench) sinkThroughputRow(engine string, target func() (history.Target, error), pg bool) {
	what := fmt.Sprintf("history sink alone, records on the bus (event,patch) → %s, batch 1000", engine)
	goal := ""
	if pg {
		goal = "≥ 20,000 rows/s"
	}
	t, fail, ready := b.beginRow(what, goal, target)
	if !ready {
		return
	}
	n := 200_000
	if b.quick {
		n = 50_000
	}
	bus, dir, err := benchBus()
	if err != nil {
		fail(err)
		return
	}
	defer os.RemoveAll(dir)
	defer bus.Close()
	last := publishMix(bus, n)
	// The schema first, so that the time is the writing alone.
	db, err := history.Open(t)
	if err == nil {
		_, err = db.Migrate(context.Background(), "bench")
		db.Close()
	}
	if err != nil {
		fail(err)
		return
	}
	b.logf("history: sink throughput into %s: %d records", engine, n)
	start := time.Now()
	s, c, stop, err := benchSink(bus, dir, t, nil)
	if err != nil {
		fail(err)
		return
	}
	deadline := time.Now().Add(5 * time.Minute)
	for c.Cursor().Seq < last {
		if time.Now().After(deadline) {
			stop()
			fail(fmt.Errorf("not done within 5 minutes: %d of %d", c.Cursor().Seq, last))
			return
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	st := s.Stats()
	stop()
	rate := float64(n) / took.Seconds()
	res := fmt.Sprintf("%.0f rows/s (%d rows in %s, %d transactions, %.1f ms each on average)", rate, st.Written, took.Round(time.Millisecond),
		st.Batches, 1000*st.BatchSeconds/float64(max(1, st.Batches)))
	var ok *bool
	if pg {
		ok = ptr(rate >= 20000 && st.Written == uint64(n))
	}
	b.add(what, res, goal, ok)
}

// priorityRow publishes priority events among a steady stream of others
// and times each until its row is visible to another connection.
func (b *bench) priorityRow(engine string, target func() (history.Target, error), pg bool) {
	what := fmt.Sprintf("priority event published → row visible to another connection, %s (batch 1000, flush 1s, 200 other records/s)", engine)
	goal := ""
	if pg {
		goal = "p99 ≤ 50 ms"
	}
	t, fail, ready := b.beginRow(what, goal, target)
	if !ready {
		return
	}
	bus, dir, err := benchBus()
	if err != nil {
		fail(err)
		return
	}
	defer os.RemoveAll(dir)
	defer bus.Close()
	_, _, stop, err := benchSink(bus, dir, t, []string{"node_down"})
	if err != nil {
		fail(err)
		return
	}
	defer stop()
	reader, err := waitReader(t)
	if err != nil {
		fail(err)
		return
	}
	defer reader.Close()
	// Background records, not priority: they wait for flush.
	bg, cancelBG := context.WithCancel(context.Background())
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-tick.C:
				publishMix(bus, 1)
			}
		}
	}()
	defer func() { cancelBG(); <-bgDone }()
	samples := 200
	if b.quick {
		samples = 50
	}
	b.logf("history: priority latency into %s: %d samples", engine, samples)
	o := history.Origin{Cluster: "bench", Agent: "n1"}
	var lat []time.Duration
	ctx := context.Background()
	for i := range samples {
		data, _ := json.Marshal(map[string]any{"id": "node_down", "reason": "bench", "node": "n2", "i": i})
		t0 := time.Now()
		r := bus.Publish("n1", events.KindEvent, data)
		for {
			ok, err := reader.Has(ctx, o, r.Epoch, r.Seq)
			if err != nil {
				fail(err)
				return
			}
			if ok {
				break
			}
			if time.Since(t0) > 10*time.Second {
				fail(fmt.Errorf("record %d not visible after 10 s", r.Seq))
				return
			}
			// A pause between polls, so that the polling connection does
			// not take the CPU the writer needs (2 cores).
			time.Sleep(500 * time.Microsecond)
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
	}
	p99 := quantile(lat, 0.99)
	var ok *bool
	if pg {
		ok = ptr(p99 <= 50*time.Millisecond)
	}
	b.add(what, fmt.Sprintf("p50 %s, p99 %s, max %s (%d samples)", ms(quantile(lat, 0.5)), ms(p99), ms(quantile(lat, 1)), len(lat)), goal, ok)
}

// waitReader opens a reader once the sink made the schema.
func waitReader(t history.Target) (*history.DB, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := history.OpenReader(t)
		if err == nil {
			if _, err = db.Version(context.Background()); err == nil {
				return db, nil
			}
			db.Close()
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
