package triggers

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"agent/config"
	"agent/events"
)

// BenchmarkEvaluate measures the engine's cost per record per trigger,
// with 100 triggers of a simple match and a distinct path:
//   - indexed-nomatch: data.id=ev_K, records matching none of them (the
//     common case): the engine looks data.id up once and evaluates none;
//   - indexed-match: the same, each record matching one trigger (streams
//     open, grow and fire);
//   - unindexed: data.svcname=sK, which the index cannot use, on records
//     matching none: every trigger's filter is evaluated.
func BenchmarkEvaluate(b *testing.B) {
	const triggers = 100
	specsOf := func(match string) []*Spec {
		var specs []*Spec
		for i := range triggers {
			specs = append(specs, spec(b, fmt.Sprintf("t%d", i), fmt.Sprintf(match, i), func(c *config.Trigger) {
				c.Distinct = []string{"data.node"}
				c.Count = 4
			}))
		}
		return specs
	}
	recs := func(id string) []*events.Record {
		var out []*events.Record
		for i := range 1000 {
			data, _ := json.Marshal(map[string]any{"id": fmt.Sprintf(id, i%triggers), "reason": "peer",
				"node": fmt.Sprintf("n%d", i%7), "svcname": "web"})
			out = append(out, events.NewRecord(uint64(i+1), "e", t0.Add(time.Duration(i)*time.Millisecond), "n1", events.KindEvent, data))
		}
		return out
	}
	for _, bc := range []struct {
		name, match, id string
	}{
		{"indexed-nomatch", "data.id=ev_%d", "other_%d"},
		{"indexed-match", "data.id=ev_%d", "ev_%d"},
		{"unindexed", "data.svcname=s%d", "ev_%d"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			list := recs(bc.id)
			e := NewEngine(0)
			e.Update(specsOf(bc.match), t0, "e", 0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e.Apply(list[i%len(list)])
				if i%1024 == 0 {
					e.Drain()
					e.actions = map[uint64]*Action{}
				}
			}
			b.StopTimer()
			perRecord := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(perRecord/triggers, "ns/record/trigger")
		})
	}
}

// cpuTime is the process's user plus system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// publishPaced publishes rate synthetic events per second for d, in
// batches every 10 ms, and returns how many.
func publishPaced(bus *events.Bus, rate int, d time.Duration) int {
	const tick = 10 * time.Millisecond
	per := rate * int(tick) / int(time.Second)
	n := 0
	start := time.Now()
	for next := start; time.Since(start) < d; next = next.Add(tick) {
		for range per {
			data := fmt.Appendf(nil, `{"id":"ev_%d","reason":"peer","node":"n%d"}`, n%150, n%7)
			bus.Publish("n1", events.KindEvent, data)
			n++
		}
		time.Sleep(time.Until(next.Add(tick)))
	}
	return n
}

// BenchmarkLoad100Triggers: 100 triggers (simple match, a distinct path,
// count 4, no command) under 5,000 synthetic events/s published on the
// bus, two of three events matching one trigger (a fire every 4th:
// trigger_fire events and state-file commits follow). Each iteration is one
// second of load. It reports the CPU of the trigger work: the process's CPU
// with the runner minus the CPU of the same publishing without it, in
// cores; and whether the runner kept up (its lag when the load stops).
func BenchmarkLoad100Triggers(b *testing.B) {
	const rate = 5000
	dir := b.TempDir()
	bus, err := events.Open(events.Config{Dir: filepath.Join(dir, "journal"), Logger: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	d := time.Duration(b.N) * time.Second

	// Baseline: the publishing alone.
	c0, w0 := cpuTime(), time.Now()
	publishPaced(bus, rate, d)
	base := float64(cpuTime()-c0) / float64(time.Since(w0))

	var list []config.Trigger
	for i := range 100 {
		list = append(list, trig(fmt.Sprintf("t%d", i), fmt.Sprintf("data.id=ev_%d", i), func(c *config.Trigger) {
			c.Distinct = []string{"data.node"}
			c.Count = 4
			c.Window = time.Hour
			c.FireCommand = nil
			c.ExpireCommand = []string{"/bin/true"}
		}))
	}
	r, err := New(Config{Bus: bus, Dir: filepath.Join(dir, "triggers"), Nodename: "n1", Logger: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if err := r.Update(list); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	c1, w1 := cpuTime(), time.Now()
	n := publishPaced(bus, rate, d)
	wall := time.Since(w1)
	with := float64(cpuTime()-c1) / float64(wall)
	b.StopTimer()

	// Lag: how long after the load the runner has applied every record.
	stop := time.Now()
	head, _ := bus.Position()
	for r.Stats().Seq < head {
		if time.Since(stop) > time.Minute {
			b.Fatalf("the runner did not catch up with seq %d: at %d", head, r.Stats().Seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var fires uint64
	for _, t := range r.Stats().Triggers {
		fires += t.Fires
	}
	b.ReportMetric(float64(fires)/wall.Seconds(), "fires/s")
	b.ReportMetric(float64(n)/wall.Seconds(), "events/s")
	b.ReportMetric(with-base, "trigger-cores")
	b.ReportMetric(base, "publish-cores")
	b.ReportMetric(float64(time.Since(stop).Milliseconds()), "catch-up-ms")
}
