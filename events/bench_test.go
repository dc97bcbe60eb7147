package events

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchData is a typical patch: one replace operation.
var benchData = json.RawMessage(`[{"op":"replace","path":"/monitor/nodes/n2/frozen","value":1795341601}]`)

// BenchmarkPublish measures Publish alone, with subscribers that hold a
// position but do not read: their number must not change the cost.
func BenchmarkPublish(b *testing.B) {
	for _, subs := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("idle=%d", subs), func(b *testing.B) {
			bus := openBus(b, Config{})
			for range subs {
				subscribe(b, bus, SubscribeOptions{})
			}
			b.ReportAllocs()
			for b.Loop() {
				bus.Publish("n1", KindPatch, benchData)
			}
		})
	}
}

// BenchmarkDelivery publishes b.N records as fast as it can while every
// subscriber reads them all; it reports the records per second delivered to
// each subscriber and the publish-to-Next latency.
func BenchmarkDelivery(b *testing.B) {
	for _, subs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("active=%d", subs), func(b *testing.B) {
			n := b.N
			bus := openBus(b, Config{RingSize: max(n, 1024), MaxLag: n + 1})
			sent := make([]time.Time, n+1) // by seq; written before Publish, read after Next
			const sampleEvery = 8
			lat := make([][]time.Duration, subs)
			var ready, wg sync.WaitGroup
			for i := range subs {
				s := subscribe(b, bus, SubscribeOptions{})
				ready.Add(1)
				wg.Go(func() {
					ready.Done()
					samples := make([]time.Duration, 0, n/sampleEvery+1)
					for range n {
						r, err := s.Next(context.Background())
						if err != nil {
							b.Error(err)
							return
						}
						if r.Seq%sampleEvery == 0 {
							samples = append(samples, time.Since(sent[r.Seq]))
						}
					}
					lat[i] = samples
				})
			}
			ready.Wait()
			b.ResetTimer()
			start := time.Now()
			for i := 1; i <= n; i++ {
				sent[i] = time.Now()
				bus.Publish("n1", KindPatch, benchData)
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(n)*float64(subs)/elapsed.Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkJournalAppend measures Publish with the journal on disk (one
// write per record, fsync once a second).
func BenchmarkJournalAppend(b *testing.B) {
	bus := openBus(b, Config{Dir: b.TempDir()})
	r := bus.Publish("n1", KindPatch, benchData)
	b.SetBytes(int64(len(r.JSON()) + 1))
	b.ReportAllocs()
	for b.Loop() {
		bus.Publish("n1", KindPatch, benchData)
	}
	if st := bus.Stats(); st.JournalWriteErrors != 0 {
		b.Fatalf("%d journal write errors", st.JournalWriteErrors)
	}
}

// BenchmarkCatchUpFromJournal measures a subscription reading history from
// disk (resume beyond the ring).
func BenchmarkCatchUpFromJournal(b *testing.B) {
	bus := openBus(b, Config{Dir: b.TempDir(), RingSize: 16})
	const n = 100_000
	for range n {
		bus.Publish("n1", KindPatch, benchData)
	}
	_, epoch := bus.Position()
	b.ResetTimer()
	for b.Loop() {
		s, err := bus.Subscribe(SubscribeOptions{Resume: true, Epoch: epoch, Durable: true})
		if err != nil {
			b.Fatal(err)
		}
		for range n {
			if _, err := s.Next(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		s.Close()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDeliveryPaced publishes one record at a time and waits until
// every subscriber has it: the latency without a backlog, i.e. the cost of
// waking the subscribers.
func BenchmarkDeliveryPaced(b *testing.B) {
	for _, subs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("active=%d", subs), func(b *testing.B) {
			n := b.N
			bus := openBus(b, Config{})
			sent := make([]time.Time, n+1)
			lat := make([][]time.Duration, subs)
			var left atomic.Int64
			all := make(chan struct{}, 1)
			var wg sync.WaitGroup
			for i := range subs {
				s := subscribe(b, bus, SubscribeOptions{})
				wg.Go(func() {
					samples := make([]time.Duration, 0, n)
					for range n {
						r, err := s.Next(context.Background())
						if err != nil {
							b.Error(err)
							return
						}
						samples = append(samples, time.Since(sent[r.Seq]))
						if left.Add(-1) == 0 {
							all <- struct{}{}
						}
					}
					lat[i] = samples
				})
			}
			b.ResetTimer()
			for i := 1; i <= n; i++ {
				left.Store(int64(subs))
				sent[i] = time.Now()
				bus.Publish("n1", KindPatch, benchData)
				<-all
			}
			wg.Wait()
			b.StopTimer()
			var merged []time.Duration
			for _, l := range lat {
				merged = append(merged, l...)
			}
			slices.Sort(merged)
			if len(merged) > 0 {
				b.ReportMetric(float64(merged[len(merged)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(merged[len(merged)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
