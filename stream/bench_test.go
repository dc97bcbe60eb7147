package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"agent/events"
)

// BenchmarkFanout publishes b.N records at a fixed rate (2000/s) on a real
// events.Bus and measures their delivery to subs websocket subscribers on
// loopback. The subscribers run in the same process, so cpu_util (process
// CPU time over wall time, in cores) includes the clients' side.
func BenchmarkFanout(b *testing.B) {
	for _, subs := range []int{1, 100, 1000} {
		for _, batch := range []bool{false, true} {
			b.Run(fmt.Sprintf("subs=%d/batch=%v", subs, batch), func(b *testing.B) {
				benchFanout(b, subs, batch, 2000)
			})
		}
	}
}

func benchFanout(b *testing.B, subs int, batch bool, rate int) {
	bus, err := events.Open(events.Config{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	srv := serve(b, HandlerConfig{Bus: BusAdapter{bus}})
	u := srv.url
	if batch {
		u += "?batch=1"
	}
	n := b.N
	lat := make([][]time.Duration, subs)
	// published[i] is when record i+1 was published, since epoch.
	epoch := time.Now()
	published := make([]atomic.Int64, n)
	var ready, done sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range subs {
		conn, _, err := websocket.Dial(ctx, u, nil)
		if err != nil {
			b.Fatal(err)
		}
		conn.SetReadLimit(-1)
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			defer conn.CloseNow()
			l := make([]time.Duration, 0, n)
			first := true
			var buf bytes.Buffer
			for len(l) < n {
				_, r, err := conn.Reader(ctx)
				if err == nil {
					buf.Reset()
					_, err = buf.ReadFrom(r)
				}
				if err != nil {
					b.Errorf("subscriber: %v", err)
					return
				}
				data := buf.Bytes()
				now := time.Since(epoch)
				if first { // the start progress record
					first = false
					ready.Done()
					continue
				}
				for line := range bytes.SplitSeq(data, []byte{'\n'}) {
					if bytes.Contains(line, []byte(`"kind":"progress"`)) {
						continue
					}
					seq := recordSeq(line)
					if seq == 0 || seq > uint64(n) {
						b.Errorf("bad record %s", line)
						return
					}
					l = append(l, now-time.Duration(published[seq-1].Load()))
				}
			}
			lat[i] = l
		}()
	}
	ready.Wait()
	data := json.RawMessage(`[{"op":"replace","path":"/monitor/nodes/n1/stats/load_15m","value":0.3}]`)
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		published[i].Store(int64(time.Since(epoch)))
		bus.Publish("n1", events.KindPatch, data)
	}
	done.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond

	all := make([]time.Duration, 0, subs*n)
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "published/s")
	b.ReportMetric(float64(all[len(all)/2])/1e6, "p50_ms")
	b.ReportMetric(float64(all[len(all)*99/100])/1e6, "p99_ms")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cpu_cores")
	b.ReportMetric(0, "ns/op")
}

// recordSeq reads the seq of a record's JSON, its first key, without
// decoding the rest.
func recordSeq(line []byte) uint64 {
	const key = `{"seq":`
	if !bytes.HasPrefix(line, []byte(key)) {
		return 0
	}
	var seq uint64
	for _, c := range line[len(key):] {
		if c < '0' || c > '9' {
			break
		}
		seq = seq*10 + uint64(c-'0')
	}
	return seq
}

// BenchmarkMirrorApply applies one patch record of a 30-node document.
func BenchmarkMirrorApply(b *testing.B) {
	fb := newFakeBus(1<<20, 1<<20)
	st := newStore(fb, 3)
	doc, _ := st.current()
	var m Mirror
	_ = m.Apply(events.NewRecord(0, "e1", time.Now(), "n0", events.KindFull, doc))
	const npatch = 4096
	recs := make([]*events.Record, npatch)
	for i := range recs {
		recs[i] = st.change()
	}
	docNow, _ := st.current()
	b.ResetTimer()
	defer b.ReportMetric(float64(len(docNow)), "doc_bytes")
	for i := 0; i < b.N; i++ {
		j := i % npatch
		if j == 0 && i > 0 {
			b.StopTimer()
			_ = m.Apply(events.NewRecord(0, "e1", time.Now(), "n0", events.KindFull, doc))
			b.StartTimer()
		}
		if err := m.Apply(recs[j]); err != nil {
			b.Fatal(err)
		}
	}
}
