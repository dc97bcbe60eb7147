package monitor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
)

// benchStore makes a store with a realistic node: a few labels and
// services, and n peers held.
func benchStore(b *testing.B, peers int) *Store {
	b.Helper()
	s, err := New(Config{
		Name:    "n1",
		Publish: func(string, string, json.RawMessage) {},
		Labels:  map[string]string{"zone": "a", "rack": "r1", "k8s.io/role": "worker"},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	s.UpdateLocal("", func(d *NodeData) {
		for i := range 10 {
			d.Services[fmt.Sprint("svc", i)] = Instance{Avail: "up", Monitor: InstanceMonitor{Status: "idle", GlobalExpect: "started"}}
		}
	})
	for i := range peers {
		peerFull(b, s, fmt.Sprint("p", i), "boot")
	}
	return s
}

// BenchmarkUpdateLocalLabel measures one effective local change: clone,
// encode, diff, publish.
func BenchmarkUpdateLocalLabel(b *testing.B) {
	s := benchStore(b, 0)
	vals := []string{"b", "a"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		v := vals[i%2]
		i++
		if _, changed, err := s.UpdateLocal("", func(d *NodeData) { d.Labels["zone"] = v }); err != nil || !changed {
			b.Fatal(changed, err)
		}
	}
}

// BenchmarkUpdateLocalNoop measures the common case of a sample that
// changes nothing.
func BenchmarkUpdateLocalNoop(b *testing.B) {
	s := benchStore(b, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, _ := s.UpdateLocal("", func(d *NodeData) { d.Labels["zone"] = "a" }); changed {
			b.Fatal("changed")
		}
	}
}

// peerFull gives s the whole data of a peer at gen 1, like the local
// node's data.
func peerFull(b *testing.B, s *Store, node, boot string) {
	b.Helper()
	_, _, d := s.Local()
	d.Gen = 1
	raw, err := marshalCanonical(d)
	if err != nil {
		b.Fatal(err)
	}
	if ok, err := s.ApplyFull(node, boot, 1, raw, ""); !ok || err != nil {
		b.Fatal(ok, err)
	}
}

// BenchmarkApplyDelta measures applying a peer's label change (two ops:
// gen and the label), as the heartbeat receiver does.
func BenchmarkApplyDelta(b *testing.B) {
	s := benchStore(b, 1)
	const n = 1024
	deltas := make([]json.RawMessage, n)
	for i := range deltas {
		deltas[i] = json.RawMessage(fmt.Sprintf(`[{"op":"replace","path":"/gen","value":%d},{"op":"replace","path":"/labels/zone","value":"z%d"}]`, i+2, i%2))
	}
	gen, boot := uint64(1), "boot"
	b.ReportAllocs()
	for b.Loop() {
		if gen == n+1 {
			// Out of prepared deltas: the peer restarts, outside the timer.
			b.StopTimer()
			boot += "'"
			peerFull(b, s, "p0", boot)
			gen = 1
			b.StartTimer()
		}
		if res, why := s.ApplyDelta("p0", boot, gen, gen+1, deltas[gen-1]); res != Applied {
			b.Fatal(res, why)
		}
		gen++
	}
}

// TestConcurrentUse runs every kind of call at once, for the race detector.
func TestConcurrentUse(t *testing.T) {
	s, _, _ := newTestStore(t, "n1", nil)
	p := newPeer(t, s, "p1")
	var mu sync.Mutex // one sender for p1, as its heartbeat
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				switch g {
				case 0:
					s.UpdateLocal("", func(d *NodeData) { d.Stats.MemAvailPct = i })
				case 1:
					mu.Lock()
					base, gen, ops, _ := peerDelta(t, p, func(d *NodeData) { d.Stats.MemAvailPct = i })
					if res, why := s.ApplyDelta("p1", p.Boot(), base, gen, ops); res == NeedFull {
						g, raw, _ := p.Local()
						s.ApplyFull("p1", p.Boot(), g, raw, why)
					}
					mu.Unlock()
				case 2:
					s.SetMember(fmt.Sprint("m", i%3), []string{StateAlive, StateDead}[i%2], "a:1")
				case 3:
					s.SetService("web", json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)))
				case 4:
					var doc map[string]any
					if err := json.Unmarshal(s.Document(), &doc); err != nil {
						t.Error(err)
					}
					s.Nodes()
					s.Members()
					s.NodeNames()
				case 5:
					s.SnapshotWith(func() error { return nil })
					s.Local()
					s.Node("p1")
					s.Held("p1")
				}
			}
		}()
	}
	wg.Wait()
}
