package monitor

import (
	"encoding/json"
	"log/slog"
	"sync"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"agent/internal/testutil"
)

// record is one published record.
type record struct {
	nodename string
	kind     string
	data     json.RawMessage
}

// recorder collects what a store publishes.
type recorder struct {
	mu   sync.Mutex
	recs []record
}

func (r *recorder) publish(nodename, kind string, data json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, record{nodename, kind, append(json.RawMessage(nil), data...)})
}

// take returns the records published since the last take and forgets them.
func (r *recorder) take() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.recs
	r.recs = nil
	return out
}

// events returns the event records among recs, decoded.
func events(t testing.TB, recs []record) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range recs {
		if r.kind != KindEvent {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(r.data, &m); err != nil {
			t.Fatalf("event %s: %v", r.data, err)
		}
		out = append(out, m)
	}
	return out
}

// eventIDs lists "id:reason:node" of the events among recs.
func eventIDs(t testing.TB, recs []record) []string {
	t.Helper()
	var out []string
	for _, e := range events(t, recs) {
		id, _ := e["id"].(string)
		reason, _ := e["reason"].(string)
		node, _ := e["node"].(string)
		out = append(out, id+":"+reason+":"+node)
	}
	return out
}

func patches(recs []record) []record {
	var out []record
	for _, r := range recs {
		if r.kind == KindPatch {
			out = append(out, r)
		}
	}
	return out
}

// fakeClock is a clock tests advance by hand.

// persisted keeps the last state a store saved.
type persisted struct {
	mu    sync.Mutex
	state PersistentState
	calls int
	fail  error
}

func (p *persisted) save(st PersistentState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	p.state = st
	p.calls++
	return nil
}

func (p *persisted) get() PersistentState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// newTestStore makes a store named name with a recorder and a fake clock;
// mod adjusts the config first.
func newTestStore(t testing.TB, name string, mod func(*Config)) (*Store, *recorder, *testutil.FakeClock) {
	t.Helper()
	rec := &recorder{}
	clk := testutil.NewFakeClock()
	cfg := Config{Name: name, ClusterName: "test", Publish: rec.publish, Now: clk.Now, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	return s, rec, clk
}

// canon canonicalizes a document or fails.
func canon(t testing.TB, raw []byte) string {
	t.Helper()
	c, err := Canonical(raw)
	if err != nil {
		t.Fatalf("canonical %s: %v", raw, err)
	}
	return string(c)
}

// applyPatch applies an RFC 6902 operation list to doc or fails.
func applyPatch(t testing.TB, doc []byte, ops json.RawMessage) []byte {
	t.Helper()
	p, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatalf("decode patch %s: %v", ops, err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("apply patch %s: %v", ops, err)
	}
	return out
}

// peerDelta makes the delta a peer's heartbeat would send for a change
// made with fn: the operations from its previous data to its new data.
func peerDelta(t testing.TB, peer *Store, fn func(d *NodeData)) (base, gen uint64, ops json.RawMessage, changed bool) {
	t.Helper()
	base, prev, _ := peer.Local()
	gen, changed, err := peer.UpdateLocal("test", fn)
	if err != nil {
		t.Fatalf("peer UpdateLocal: %v", err)
	}
	_, raw, _ := peer.Local()
	ops, err = Diff(prev, raw, "")
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	return base, gen, ops, changed
}
