package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNewValidation(t *testing.T) {
	rec := &recorder{}
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"no name", Config{Publish: rec.publish}},
		{"no publish", Config{Name: "n1"}},
		{"persist fails", Config{Name: "n1", Publish: rec.publish, Persist: func(PersistentState) error { return errors.New("disk full") }}},
	} {
		if _, err := New(tt.cfg); err == nil {
			t.Errorf("%s: New succeeded, want an error", tt.name)
		}
	}
}

func TestNewInitialRecords(t *testing.T) {
	s, rec, clk := newTestStore(t, "n1", func(c *Config) { c.Labels = map[string]string{"zone": "a"} })
	recs := rec.take()
	if len(recs) != 1 || recs[0].kind != KindPatch || recs[0].nodename != "n1" {
		t.Fatalf("records at start = %+v, want one patch from n1", recs)
	}
	empty := []byte(`{"cluster":{"name":"test","nodes":{}},"monitor":{"nodes":{},"services":{}}}`)
	if got, want := canon(t, applyPatch(t, empty, recs[0].data)), canon(t, s.Document()); got != want {
		t.Fatalf("empty document + first patch = %s, want %s", got, want)
	}
	gen, _, d := s.Local()
	if gen != 1 || d.Gen != 1 || d.Status != StatusInit || d.Frozen != 0 || d.Labels["zone"] != "a" || !d.StatusUpdated.Equal(clk.Now()) {
		t.Fatalf("initial local data = gen %d %+v", gen, d)
	}
	if got := s.NodeNames(); !reflect.DeepEqual(got, []string{"n1"}) {
		t.Fatalf("NodeNames = %v", got)
	}
}

// TestUpdateLocalGen checks that gen moves by exactly one per change that
// alters the data, not at all otherwise, with the events each change means.
func TestUpdateLocalGen(t *testing.T) {
	type step struct {
		name    string
		fn      func(d *NodeData)
		changed bool
		events  []string
	}
	steps := []step{
		{name: "no-op", fn: func(d *NodeData) {}},
		{name: "same label value", fn: func(d *NodeData) { d.Labels["zone"] = "a" }},
		{name: "gen set by fn is ignored", fn: func(d *NodeData) { d.Gen = 1000 }},
		{name: "label change", fn: func(d *NodeData) { d.Labels["zone"] = "b" }, changed: true},
		{name: "label with slash", fn: func(d *NodeData) { d.Labels["k8s.io/zone~x"] = "c" }, changed: true},
		{name: "label removed", fn: func(d *NodeData) { delete(d.Labels, "zone") }, changed: true},
		{name: "status", fn: func(d *NodeData) { d.Status = StatusIdle }, changed: true},
		{name: "same status", fn: func(d *NodeData) { d.Status = StatusIdle }},
		{name: "stats", fn: func(d *NodeData) { d.Stats.Load15m = 0.3; d.Stats.MemAvailPct = 71 }, changed: true},
		{name: "same stats", fn: func(d *NodeData) { d.Stats.Load15m = 0.3 }},
		{name: "freeze", fn: func(d *NodeData) { d.Frozen = 1795341601 }, changed: true, events: []string{"node_freeze:cli:n1"}},
		{name: "freeze again same time", fn: func(d *NodeData) { d.Frozen = 1795341601 }},
		{name: "refreeze other time", fn: func(d *NodeData) { d.Frozen = 1795341700 }, changed: true},
		{name: "thaw", fn: func(d *NodeData) { d.Frozen = 0 }, changed: true, events: []string{"node_thaw:cli:n1"}},
		{name: "add instance", fn: func(d *NodeData) { d.Services["web"] = Instance{Avail: "up"} }, changed: true},
		{name: "same instance", fn: func(d *NodeData) { d.Services["web"] = Instance{Avail: "up"} }},
		{name: "instance monitor", fn: func(d *NodeData) {
			i := d.Services["web"]
			i.Monitor.Status = "ready"
			d.Services["web"] = i
		}, changed: true},
		{name: "remove instance", fn: func(d *NodeData) { delete(d.Services, "web") }, changed: true},
	}
	s, rec, clk := newTestStore(t, "n1", func(c *Config) { c.Labels = map[string]string{"zone": "a"} })
	rec.take()
	for _, st := range steps {
		clk.Advance(time.Second)
		before, prevRaw, prev := s.Local()
		doc := s.Document()
		gen, changed, err := s.UpdateLocal("cli", st.fn)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		recs := rec.take()
		if changed != st.changed {
			t.Fatalf("%s: changed = %v, want %v", st.name, changed, st.changed)
		}
		want := before
		if st.changed {
			want++
		}
		if gen != want {
			t.Fatalf("%s: gen %d -> %d, want %d", st.name, before, gen, want)
		}
		if g, _, _ := s.Local(); g != want {
			t.Fatalf("%s: Local gen = %d, want %d", st.name, g, want)
		}
		if !st.changed {
			if len(recs) != 0 {
				t.Fatalf("%s: no-op published %+v", st.name, recs)
			}
			if _, raw, _ := s.Local(); string(raw) != string(prevRaw) {
				t.Fatalf("%s: no-op changed the data: %s -> %s", st.name, prevRaw, raw)
			}
			continue
		}
		p := patches(recs)
		if len(p) != 1 || p[0].nodename != "n1" {
			t.Fatalf("%s: patches = %+v, want one from n1", st.name, p)
		}
		if strings.Contains(string(p[0].data), `"path":"/monitor/nodes/n1"`) {
			t.Fatalf("%s: patch replaces the whole node: %s", st.name, p[0].data)
		}
		if got := canon(t, applyPatch(t, doc, p[0].data)); got != canon(t, s.Document()) {
			t.Fatalf("%s: previous document + patch = %s, want %s", st.name, got, s.Document())
		}
		if got := eventIDs(t, recs); !reflect.DeepEqual(got, st.events) {
			t.Fatalf("%s: events = %v, want %v", st.name, got, st.events)
		}
		_, _, now := s.Local()
		if now.Status != prev.Status && !now.StatusUpdated.Equal(clk.Now()) {
			t.Fatalf("%s: status_updated = %v, want %v", st.name, now.StatusUpdated, clk.Now())
		}
		if now.Status == prev.Status && !now.StatusUpdated.Equal(prev.StatusUpdated) {
			t.Fatalf("%s: status_updated moved without a status change", st.name)
		}
	}
}

func TestUpdateLocalSignals(t *testing.T) {
	s, _, _ := newTestStore(t, "n1", nil)
	select {
	case <-s.LocalChanged():
		t.Fatal("LocalChanged signalled before any change")
	default:
	}
	for i := range 3 {
		if _, _, err := s.UpdateLocal("", func(d *NodeData) { d.Stats.MemAvailPct = i + 1 }); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-s.LocalChanged():
	default:
		t.Fatal("LocalChanged not signalled")
	}
	select {
	case <-s.LocalChanged():
		t.Fatal("signals not coalesced")
	default:
	}
	if _, _, err := s.UpdateLocal("", func(d *NodeData) {}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.LocalChanged():
		t.Fatal("a no-op update signalled")
	default:
	}
}

// TestLocalIsCopy checks a caller's changes never reach the store.
func TestLocalIsCopy(t *testing.T) {
	s, _, _ := newTestStore(t, "n1", func(c *Config) { c.Labels = map[string]string{"zone": "a"} })
	_, _, d := s.Local()
	d.Labels["zone"] = "changed"
	d.Services["x"] = Instance{}
	if _, _, again := s.Local(); again.Labels["zone"] != "a" || len(again.Services) != 0 {
		t.Fatalf("Local returned shared maps: %+v", again)
	}
	n, _ := s.Node("n1")
	n.Labels["zone"] = "changed"
	if again, _ := s.Node("n1"); again.Labels["zone"] != "a" {
		t.Fatalf("Node returned shared maps: %+v", again)
	}
}

// newPeer makes a peer store and has s take its data whole.
func newPeer(t *testing.T, s *Store, name string) *Store {
	t.Helper()
	p, _, _ := newTestStore(t, name, nil)
	gen, raw, _ := p.Local()
	if ok, err := s.ApplyFull(name, p.Boot(), gen, raw, ""); err != nil || !ok {
		t.Fatalf("ApplyFull(%s) = %v, %v", name, ok, err)
	}
	return p
}

func TestApplyDelta(t *testing.T) {
	label := func(v string) func(d *NodeData) { return func(d *NodeData) { d.Labels["l"] = v } }
	tests := []struct {
		name string
		// prep makes up the delta to apply from a peer held at gen 1+steps.
		steps   int
		delta   func(t *testing.T, p *Store) (boot string, base, gen uint64, ops json.RawMessage)
		want    Result
		why     string
		heldGen uint64 // 0: unchanged
		events  []string
	}{
		{
			name: "next gen applies",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				base, gen, ops, _ := peerDelta(t, p, label("x"))
				return p.Boot(), base, gen, ops
			},
			want: Applied, heldGen: 2,
		},
		{
			name: "coalesced delta over several gens applies",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				base, prev, _ := p.Local()
				p.UpdateLocal("", label("x"))
				gen, _, _ := p.UpdateLocal("", label("y"))
				_, raw, _ := p.Local()
				ops, _ := Diff(prev, raw, "")
				return p.Boot(), base, gen, ops
			},
			want: Applied, heldGen: 3,
		},
		{
			name: "freeze applies with a peer event",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				base, gen, ops, _ := peerDelta(t, p, func(d *NodeData) { d.Frozen = 100 })
				return p.Boot(), base, gen, ops
			},
			want: Applied, heldGen: 2, events: []string{"node_freeze:peer:p1"},
		},
		{
			name: "same gen is stale",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return p.Boot(), 0, 1, json.RawMessage(`[]`)
			},
			want: Stale,
		},
		{
			name:  "older gen is stale",
			steps: 2,
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return p.Boot(), 1, 2, json.RawMessage(`[{"op":"replace","path":"/gen","value":2}]`)
			},
			want: Stale,
		},
		{
			name: "gap",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				p.UpdateLocal("", label("x")) // gen 2, never sent
				base, gen, ops, _ := peerDelta(t, p, label("y"))
				return p.Boot(), base, gen, ops
			},
			want: NeedFull, why: "gap",
		},
		{
			name: "new boot",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				base, gen, ops, _ := peerDelta(t, p, label("x"))
				return NewBootID(p.Boot(), time.Now()), base, gen, ops
			},
			want: NeedFull, why: "restart",
		},
		{
			name: "new boot with an old gen",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return NewBootID(p.Boot(), time.Now()), 0, 1, json.RawMessage(`[]`)
			},
			want: NeedFull, why: "restart",
		},
		{
			// A delta of a previous run, delayed: the unordered form of
			// boot ids counts as older than any ordered one.
			name: "older boot is stale",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				base, gen, ops, _ := peerDelta(t, p, label("x"))
				return "0123456789abcdef", base, gen, ops
			},
			want: Stale,
		},
		{
			name: "ops fail half way",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return p.Boot(), 1, 2, json.RawMessage(`[{"op":"replace","path":"/gen","value":2},{"op":"add","path":"/labels/a","value":"x"},{"op":"remove","path":"/nope"}]`)
			},
			want: NeedFull, why: "apply_failed",
		},
		{
			name: "failed test op",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return p.Boot(), 1, 2, json.RawMessage(`[{"op":"replace","path":"/gen","value":2},{"op":"test","path":"/status","value":"idle"}]`)
			},
			want: NeedFull, why: "apply_failed",
		},
		{
			name: "ops do not reach the gen",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return p.Boot(), 1, 2, json.RawMessage(`[{"op":"add","path":"/labels/a","value":"x"}]`)
			},
			want: NeedFull, why: "apply_failed",
		},
		{
			name: "ops give another gen",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return p.Boot(), 1, 2, json.RawMessage(`[{"op":"replace","path":"/gen","value":3}]`)
			},
			want: NeedFull, why: "apply_failed",
		},
		{
			name: "ops break the node data type",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return p.Boot(), 1, 2, json.RawMessage(`[{"op":"replace","path":"/gen","value":2},{"op":"replace","path":"/frozen","value":"yes"}]`)
			},
			want: NeedFull, why: "apply_failed",
		},
		{
			name: "ops not a patch",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return p.Boot(), 1, 2, json.RawMessage(`{"op":"replace"}`)
			},
			want: NeedFull, why: "apply_failed",
		},
		{
			name: "ops not JSON",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				return p.Boot(), 1, 2, json.RawMessage(`[{`)
			},
			want: NeedFull, why: "apply_failed",
		},
		{
			name: "replace the whole data",
			delta: func(t *testing.T, p *Store) (string, uint64, uint64, json.RawMessage) {
				_, _, _, _ = peerDelta(t, p, label("x"))
				_, raw, _ := p.Local()
				return p.Boot(), 1, 2, json.RawMessage(`[{"op":"replace","path":"","value":` + string(raw) + `}]`)
			},
			want: Applied, heldGen: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rec, _ := newTestStore(t, "n1", nil)
			p := newPeer(t, s, "p1")
			for i := 0; i < tt.steps; i++ {
				base, gen, ops, _ := peerDelta(t, p, label(fmt.Sprint("step", i)))
				if res, why := s.ApplyDelta("p1", p.Boot(), base, gen, ops); res != Applied {
					t.Fatalf("step %d: %v %s", i, res, why)
				}
			}
			rec.take()
			heldBefore, _, _ := s.Held("p1")
			doc := s.Document()
			boot, base, gen, ops := tt.delta(t, p)
			res, why := s.ApplyDelta("p1", boot, base, gen, ops)
			if res != tt.want || why != tt.why {
				t.Fatalf("ApplyDelta(base %d, gen %d, %s) = %v %q, want %v %q", base, gen, ops, res, why, tt.want, tt.why)
			}
			recs := rec.take()
			held, heldBoot, _ := s.Held("p1")
			if heldBoot != p.Boot() {
				t.Fatalf("held boot changed to %s", heldBoot)
			}
			if res != Applied {
				if held != heldBefore || string(s.Document()) != string(doc) || len(recs) != 0 {
					t.Fatalf("%v changed the store: gen %d -> %d, records %+v", res, heldBefore, held, recs)
				}
				return
			}
			if held != tt.heldGen {
				t.Fatalf("held gen = %d, want %d", held, tt.heldGen)
			}
			_, praw, _ := p.Local()
			if n, _ := s.Node("p1"); n.Gen != tt.heldGen {
				t.Fatalf("Node gen = %d", n.Gen)
			}
			if tt.heldGen == func() uint64 { g, _, _ := p.Local(); return g }() {
				var docm struct {
					Monitor struct {
						Nodes map[string]json.RawMessage `json:"nodes"`
					} `json:"monitor"`
				}
				json.Unmarshal(s.Document(), &docm)
				if got := canon(t, docm.Monitor.Nodes["p1"]); got != string(praw) {
					t.Fatalf("held copy = %s, peer has %s", got, praw)
				}
			}
			pp := patches(recs)
			if len(pp) != 1 || pp[0].nodename != "p1" {
				t.Fatalf("patches = %+v, want one from p1", pp)
			}
			if got := canon(t, applyPatch(t, doc, pp[0].data)); got != canon(t, s.Document()) {
				t.Fatalf("document + patch = %s, want %s", got, s.Document())
			}
			if got := eventIDs(t, recs); !reflect.DeepEqual(got, tt.events) {
				t.Fatalf("events = %v, want %v", got, tt.events)
			}
		})
	}
}

func TestApplyDeltaUnknownAndSelf(t *testing.T) {
	s, rec, _ := newTestStore(t, "n1", nil)
	rec.take()
	if res, why := s.ApplyDelta("ghost", "b", 1, 2, json.RawMessage(`[]`)); res != NeedFull || why != "unknown" {
		t.Fatalf("unknown peer: %v %q", res, why)
	}
	if res, _ := s.ApplyDelta("n1", s.Boot(), 1, 2, json.RawMessage(`[{"op":"replace","path":"/gen","value":2}]`)); res != Stale {
		t.Fatalf("delta for the local node: %v, want Stale", res)
	}
	if g, _, _ := s.Local(); g != 1 {
		t.Fatalf("local gen changed by a delta: %d", g)
	}
	if recs := rec.take(); len(recs) != 0 {
		t.Fatalf("published %+v", recs)
	}
}

func TestApplyFull(t *testing.T) {
	full := func(gen uint64, frozen int64) []byte {
		raw, _ := marshalCanonical(NodeData{Gen: gen, Status: StatusIdle, Frozen: frozen, Labels: map[string]string{"g": fmt.Sprint(gen)}, Services: map[string]Instance{}})
		return raw
	}
	type call struct {
		boot   string
		gen    uint64
		frozen int64
		why    string
	}
	tests := []struct {
		name    string
		held    *call // nil: unknown node
		call    call
		taken   bool
		events  []string
		resyncG float64
	}{
		{name: "unknown node added", call: call{boot: "b1", gen: 5}, taken: true},
		{name: "unknown node added frozen", call: call{boot: "b1", gen: 5, frozen: 9}, taken: true, events: []string{"node_freeze:peer:p1"}},
		{name: "unknown node added, why ignored", call: call{boot: "b1", gen: 5, why: "gap"}, taken: true},
		// A full with the same boot and no why only catches up (on a
		// (re)join): taken, but no peer_resync (since 537d4a3).
		{name: "newer gen same boot", held: &call{boot: "b1", gen: 5}, call: call{boot: "b1", gen: 9}, taken: true},
		{name: "newer gen same boot freezes", held: &call{boot: "b1", gen: 5}, call: call{boot: "b1", gen: 9, frozen: 3}, taken: true, events: []string{"node_freeze:peer:p1"}},
		{name: "newer gen with a why", held: &call{boot: "b1", gen: 5}, call: call{boot: "b1", gen: 9, why: "gap"}, taken: true, events: []string{"peer_resync:gap:p1"}},
		{name: "new boot", held: &call{boot: "b1", gen: 5}, call: call{boot: "b2", gen: 9}, taken: true, events: []string{"peer_resync:restart:p1"}},
		{name: "new boot older gen", held: &call{boot: "b1", gen: 5}, call: call{boot: "b2", gen: 2}, taken: true, events: []string{"peer_resync:restart:p1"}},
		{name: "new boot with a why", held: &call{boot: "b1", gen: 5}, call: call{boot: "b2", gen: 9, why: "apply_failed"}, taken: true, events: []string{"peer_resync:apply_failed:p1"}},
		{name: "new boot thaws", held: &call{boot: "b1", gen: 5, frozen: 7}, call: call{boot: "b2", gen: 6}, taken: true, events: []string{"peer_resync:restart:p1", "node_thaw:peer:p1"}},
		{name: "same gen same boot ignored", held: &call{boot: "b1", gen: 5}, call: call{boot: "b1", gen: 5}},
		{name: "same gen other bytes taken", held: &call{boot: "b1", gen: 5}, call: call{boot: "b1", gen: 5, frozen: 4, why: "digest"}, taken: true, events: []string{"peer_resync:digest:p1", "node_freeze:peer:p1"}},
		// Ordered boot ids: a copy from an older run is never taken.
		{name: "newer ordered boot", held: &call{boot: bootAt(1), gen: 5}, call: call{boot: bootAt(2), gen: 1}, taken: true, events: []string{"peer_resync:restart:p1"}},
		{name: "older ordered boot refused", held: &call{boot: bootAt(2), gen: 5}, call: call{boot: bootAt(1), gen: 9}},
		{name: "unordered boot older than ordered", held: &call{boot: bootAt(1), gen: 5}, call: call{boot: "b2", gen: 9, why: "gap"}},
		{name: "older gen same boot ignored", held: &call{boot: "b1", gen: 5}, call: call{boot: "b1", gen: 4, why: "gap"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rec, _ := newTestStore(t, "n1", nil)
			if tt.held != nil {
				if ok, err := s.ApplyFull("p1", tt.held.boot, tt.held.gen, full(tt.held.gen, tt.held.frozen), ""); !ok || err != nil {
					t.Fatalf("first ApplyFull: %v %v", ok, err)
				}
			}
			rec.take()
			doc := s.Document()
			data := full(tt.call.gen, tt.call.frozen)
			taken, err := s.ApplyFull("p1", tt.call.boot, tt.call.gen, data, tt.call.why)
			if err != nil || taken != tt.taken {
				t.Fatalf("ApplyFull = %v, %v, want %v", taken, err, tt.taken)
			}
			recs := rec.take()
			if !taken {
				if len(recs) != 0 || string(s.Document()) != string(doc) || s.NodeNames()[1] != "p1" {
					t.Fatalf("ignored data changed the store: %+v", recs)
				}
				if g, b, _ := s.Held("p1"); g != tt.held.gen || b != tt.held.boot {
					t.Fatalf("held = %d %s", g, b)
				}
				return
			}
			if g, b, ok := s.Held("p1"); !ok || g != tt.call.gen || b != tt.call.boot {
				t.Fatalf("held = %d %s %v, want %d %s", g, b, ok, tt.call.gen, tt.call.boot)
			}
			if got := eventIDs(t, recs); !reflect.DeepEqual(got, tt.events) {
				t.Fatalf("events = %v, want %v; records %+v", got, tt.events, recs)
			}
			for _, e := range events(t, recs) {
				if e["id"] == "peer_resync" && e["gen"] != float64(tt.call.gen) {
					t.Fatalf("peer_resync gen = %v, want %d", e["gen"], tt.call.gen)
				}
			}
			mirror := doc
			for _, p := range patches(recs) {
				if p.nodename != "p1" {
					t.Fatalf("patch from %s", p.nodename)
				}
				mirror = applyPatch(t, mirror, p.data)
			}
			if canon(t, mirror) != canon(t, s.Document()) {
				t.Fatalf("document + patches = %s, want %s", mirror, s.Document())
			}
		})
	}
}

func TestApplyFullInvalid(t *testing.T) {
	s, rec, _ := newTestStore(t, "n1", nil)
	rec.take()
	for _, tt := range []struct {
		name string
		node string
		gen  uint64
		data string
		err  bool
	}{
		{"not JSON", "p1", 1, `{`, true},
		{"not node data", "p1", 1, `{"gen":"one"}`, true},
		{"gen mismatch", "p1", 2, `{"gen":1}`, true},
		{"local node", "n1", 9, `{"gen":9}`, false},
	} {
		taken, err := s.ApplyFull(tt.node, "b", tt.gen, []byte(tt.data), "")
		if taken || (err != nil) != tt.err {
			t.Errorf("%s: ApplyFull = %v, %v", tt.name, taken, err)
		}
	}
	if recs := rec.take(); len(recs) != 0 || len(s.NodeNames()) != 1 {
		t.Fatalf("invalid data changed the store: %+v %v", recs, s.NodeNames())
	}
	if g, _, _ := s.Local(); g != 1 {
		t.Fatalf("local gen = %d", g)
	}
}

func TestForget(t *testing.T) {
	s, rec, _ := newTestStore(t, "n1", nil)
	newPeer(t, s, "p1")
	s.SetMember("p1", StateDead, "10.0.0.2:1")
	s.SetMember("p2", StateDead, "10.0.0.3:1") // member without data
	newPeer(t, s, "p3")                        // data without member
	rec.take()
	tests := []struct {
		node   string
		want   bool
		events []string
	}{
		{"p1", true, []string{"forget_peer:timeout:p1"}},
		{"p1", false, nil},
		{"p2", true, []string{"forget_peer:timeout:p2"}},
		{"p3", true, []string{"forget_peer:timeout:p3"}},
		{"n1", false, nil},
		{"nobody", false, nil},
	}
	for _, tt := range tests {
		doc := s.Document()
		if got := s.Forget(tt.node, "timeout"); got != tt.want {
			t.Fatalf("Forget(%s) = %v, want %v", tt.node, got, tt.want)
		}
		recs := rec.take()
		if got := eventIDs(t, recs); !reflect.DeepEqual(got, tt.events) {
			t.Fatalf("Forget(%s) events = %v, want %v", tt.node, got, tt.events)
		}
		for _, p := range patches(recs) {
			doc = applyPatch(t, doc, p.data)
		}
		if canon(t, doc) != canon(t, s.Document()) {
			t.Fatalf("Forget(%s): document + patches = %s, want %s", tt.node, doc, s.Document())
		}
		if _, _, ok := s.Held(tt.node); ok && tt.node != "n1" {
			t.Fatalf("%s still held", tt.node)
		}
		if _, ok := s.Members()[tt.node]; ok {
			t.Fatalf("%s still a member", tt.node)
		}
	}
	if got := s.NodeNames(); !reflect.DeepEqual(got, []string{"n1"}) {
		t.Fatalf("NodeNames = %v", got)
	}
	// A forgotten peer is unknown: its deltas ask for its whole data.
	if res, why := s.ApplyDelta("p1", "x", 1, 2, json.RawMessage(`[]`)); res != NeedFull || why != "unknown" {
		t.Fatalf("delta after Forget: %v %q", res, why)
	}
}

func TestSetMemberEvents(t *testing.T) {
	tests := []struct {
		name   string
		node   string
		states []string
		events [][]string // per state
	}{
		{name: "join", node: "p1", states: []string{StateAlive, StateAlive}, events: [][]string{{"node_join"}, nil}},
		{name: "down and up", node: "p1", states: []string{StateAlive, StateSuspect, StateDead, StateDead, StateAlive}, events: [][]string{{"node_join"}, nil, {"node_down"}, nil, {"node_up"}}},
		{name: "suspect back to alive", node: "p1", states: []string{StateAlive, StateSuspect, StateAlive}, events: [][]string{{"node_join"}, nil, nil}},
		{name: "leave and rejoin", node: "p1", states: []string{StateAlive, StateLeft, StateLeft, StateAlive}, events: [][]string{{"node_join"}, {"node_leave"}, nil, {"node_join"}}},
		{name: "first seen dead", node: "p1", states: []string{StateDead}, events: [][]string{nil}},
		{name: "first seen left", node: "p1", states: []string{StateLeft}, events: [][]string{nil}},
		{name: "dead then leave", node: "p1", states: []string{StateAlive, StateDead, StateLeft}, events: [][]string{{"node_join"}, {"node_down"}, {"node_leave"}}},
		{name: "local node never", node: "n1", states: []string{StateAlive, StateDead, StateAlive, StateLeft}, events: [][]string{nil, nil, nil, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rec, clk := newTestStore(t, "n1", nil)
			rec.take()
			for i, state := range tt.states {
				clk.Advance(time.Second)
				doc := s.Document()
				before, had := s.Members()[tt.node]
				s.SetMember(tt.node, state, "10.0.0.2:10000")
				recs := rec.take()
				var ids []string
				for _, e := range events(t, recs) {
					ids = append(ids, e["id"].(string))
					if e["node"] != tt.node || e["reason"] != "membership" || e["addr"] != "10.0.0.2:10000" {
						t.Fatalf("event %v", e)
					}
				}
				if !reflect.DeepEqual(ids, tt.events[i]) {
					t.Fatalf("step %d (%s): events %v, want %v", i, state, ids, tt.events[i])
				}
				m := s.Members()[tt.node]
				if m.State != state {
					t.Fatalf("state = %s", m.State)
				}
				same := had && before.State == state
				if same && len(recs) != 0 {
					t.Fatalf("step %d: unchanged member published %+v", i, recs)
				}
				if same != m.Since.Equal(before.Since) || (!same && !m.Since.Equal(clk.Now())) {
					t.Fatalf("step %d: since %v (before %v, now %v)", i, m.Since, before.Since, clk.Now())
				}
				for _, p := range patches(recs) {
					if p.nodename != "n1" {
						t.Fatalf("member patch from %s", p.nodename)
					}
					doc = applyPatch(t, doc, p.data)
				}
				if canon(t, doc) != canon(t, s.Document()) {
					t.Fatalf("document + patches = %s, want %s", doc, s.Document())
				}
			}
		})
	}
}

func TestSetMemberAddrChange(t *testing.T) {
	s, rec, clk := newTestStore(t, "n1", nil)
	s.SetMember("p1", StateAlive, "a:1")
	since := s.Members()["p1"].Since
	rec.take()
	clk.Advance(time.Minute)
	s.SetMember("p1", StateAlive, "a:2")
	recs := rec.take()
	if len(events(t, recs)) != 0 || len(patches(recs)) != 1 {
		t.Fatalf("address change: %+v", recs)
	}
	if m := s.Members()["p1"]; m.Addr != "a:2" || !m.Since.Equal(since) {
		t.Fatalf("member = %+v, since should stay %v", m, since)
	}
}

func TestSetService(t *testing.T) {
	s, rec, _ := newTestStore(t, "n1", nil)
	rec.take()
	tests := []struct {
		name    string
		svc     string
		raw     string // "-" for nil
		patches int
		wantErr bool
	}{
		{"add", "web", `{"avail":"up","overall":"up","up":["n1"]}`, 1, false},
		{"same, other key order", "web", `{ "up":["n1"], "overall":"up","avail":"up"}`, 0, false},
		{"change", "web", `{"avail":"down","overall":"up","up":[]}`, 1, false},
		{"invalid", "web", `{"avail":`, 0, true},
		{"name with slash", "a/b~c", `{"avail":"up"}`, 1, false},
		{"remove", "web", "-", 1, false},
		{"remove again", "web", "-", 0, false},
		{"remove never set", "nope", "-", 0, false},
	}
	for _, tt := range tests {
		doc := s.Document()
		var raw json.RawMessage
		if tt.raw != "-" {
			raw = json.RawMessage(tt.raw)
		}
		err := s.SetService(tt.svc, raw)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%s: err = %v", tt.name, err)
		}
		recs := rec.take()
		if len(recs) != tt.patches || len(patches(recs)) != tt.patches {
			t.Fatalf("%s: records %+v, want %d patches", tt.name, recs, tt.patches)
		}
		for _, p := range recs {
			doc = applyPatch(t, doc, p.data)
		}
		if canon(t, doc) != canon(t, s.Document()) {
			t.Fatalf("%s: document + patches = %s, want %s", tt.name, doc, s.Document())
		}
	}
	var d struct {
		Monitor struct {
			Services map[string]json.RawMessage `json:"services"`
		} `json:"monitor"`
	}
	if err := json.Unmarshal(s.Document(), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Monitor.Services) != 1 || string(d.Monitor.Services["a/b~c"]) != `{"avail":"up"}` {
		t.Fatalf("services = %v", d.Monitor.Services)
	}
	if g, _, _ := s.Local(); g != 1 {
		t.Fatalf("service summaries moved the local gen to %d", g)
	}
}

func TestSnapshotWith(t *testing.T) {
	s, _, _ := newTestStore(t, "n1", nil)
	called := false
	doc, err := s.SnapshotWith(func() error { called = true; return nil })
	if err != nil || !called || string(doc) != string(s.Document()) {
		t.Fatalf("SnapshotWith = %s, %v (called %v)", doc, err, called)
	}
	if doc, err := s.SnapshotWith(nil); err != nil || len(doc) == 0 {
		t.Fatalf("SnapshotWith(nil) = %s, %v", doc, err)
	}
	boom := errors.New("boom")
	if doc, err := s.SnapshotWith(func() error { return boom }); !errors.Is(err, boom) || doc != nil {
		t.Fatalf("SnapshotWith(failing) = %s, %v", doc, err)
	}
}

// TestSnapshotWithLockHeld checks fn runs with the store lock held, so no
// record can fall between the snapshot and what fn does (a subscription).
func TestSnapshotWithLockHeld(t *testing.T) {
	s, _, _ := newTestStore(t, "n1", nil)
	held := false
	if _, err := s.SnapshotWith(func() error {
		held = !s.mu.TryLock()
		if !held {
			s.mu.Unlock()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Fatal("fn ran without the store lock")
	}
}

func TestObserver(t *testing.T) {
	s, _, _ := newTestStore(t, "n1", nil)
	type obs struct {
		node     string
		old, new uint64 // 0 for nil
	}
	var got []obs
	s.SetObserver(func(node string, old, new *NodeData) {
		o := obs{node: node}
		if old != nil {
			o.old = old.Gen
		}
		if new != nil {
			o.new = new.Gen
		}
		got = append(got, o)
	})
	s.UpdateLocal("", func(d *NodeData) { d.Status = StatusIdle })
	s.UpdateLocal("", func(d *NodeData) {})
	p := newPeer(t, s, "p1")
	base, gen, ops, _ := peerDelta(t, p, func(d *NodeData) { d.Status = StatusIdle })
	s.ApplyDelta("p1", p.Boot(), base, gen, ops)
	s.Forget("p1", "gone")
	want := []obs{{"n1", 1, 2}, {"p1", 0, 1}, {"p1", 1, 2}, {"p1", 2, 0}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("observer calls = %v, want %v", got, want)
	}
}

func TestEventRecord(t *testing.T) {
	s, rec, _ := newTestStore(t, "n1", nil)
	rec.take()
	s.Event(map[string]any{"id": "quorum_lost", "quorum": false})
	s.Event(map[string]any{"bad": func() {}}) // cannot encode: logged, not published
	recs := rec.take()
	if len(recs) != 1 || recs[0].kind != KindEvent || recs[0].nodename != "n1" || canon(t, recs[0].data) != `{"id":"quorum_lost","quorum":false}` {
		t.Fatalf("records = %+v", recs)
	}
}

// TestSampleNodes checks that the sample leaves out the excepted node,
// never repeats a name, is short when few nodes are held, and over many
// draws reaches every other node.
func TestSampleNodes(t *testing.T) {
	s, _, _ := newTestStore(t, "n1", nil)
	if got := s.SampleNodes(2, "n1"); len(got) != 0 {
		t.Fatalf("only the local node held: sample %v", got)
	}
	for i := 2; i <= 10; i++ {
		newPeer(t, s, fmt.Sprintf("n%d", i))
	}
	hits := map[string]int{}
	for range 2000 {
		got := s.SampleNodes(2, "n1")
		if len(got) != 2 || got[0] == got[1] {
			t.Fatalf("sample %v: want two different names", got)
		}
		for _, n := range got {
			if n == "n1" {
				t.Fatalf("sample %v holds the excepted node", got)
			}
			hits[n]++
		}
	}
	if len(hits) != 9 {
		t.Fatalf("2000 samples reached %d of 9 nodes: %v", len(hits), hits)
	}
	for n, c := range hits {
		// 4000 picks over 9 names: about 444 each.
		if c < 250 || c > 650 {
			t.Errorf("%s picked %d times of 4000: not uniform (%v)", n, c, hits)
		}
	}
	if got := s.SampleNodes(20, "n1"); len(got) != 9 {
		t.Errorf("asked 20 of 9: got %d", len(got))
	}
}
