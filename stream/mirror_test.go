package stream

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"agent/events"
)

// TestMirrorSeqs checks which records a mirror takes: any after its seq in
// its epoch (events are holes in a patch stream; the agent's numbering
// jumps over a reserved range after an unclean stop), never one that goes
// back or changes the epoch without a reset; a progress record moves it
// past what was passed over.
func TestMirrorSeqs(t *testing.T) {
	rec := func(seq uint64, epoch, kind, data string) *events.Record {
		return events.NewRecord(seq, epoch, time.Now(), "n1", kind, json.RawMessage(data))
	}
	patch := func(seq uint64, epoch string, v int) *events.Record {
		b, _ := json.Marshal([]map[string]any{{"op": "replace", "path": "/v", "value": v}})
		return rec(seq, epoch, events.KindPatch, string(b))
	}
	var m Mirror
	if err := m.Apply(patch(1, "e1", 1)); !errors.Is(err, ErrNeedFull) {
		t.Fatalf("patch before a full record: %v", err)
	}
	steps := []struct {
		what string
		rec  *events.Record
		err  error
		seq  uint64
	}{
		{"full", rec(10, "e1", events.KindFull, `{"v":0}`), nil, 10},
		{"next patch", patch(11, "e1", 1), nil, 11},
		{"event", rec(12, "e1", events.KindEvent, `{"id":"x"}`), nil, 12},
		{"patch after a jump", patch(70000, "e1", 2), nil, 70000},
		{"progress past an empty range", rec(70010, "e1", events.KindProgress, ""), nil, 70010},
		{"older progress", rec(70005, "e1", events.KindProgress, ""), nil, 70010},
		{"duplicate", patch(70010, "e1", 3), ErrGap, 70010},
		{"going back", patch(9, "e1", 3), ErrGap, 70010},
		{"another epoch", patch(70011, "e2", 3), ErrGap, 70010},
		{"patch", patch(70011, "e1", 4), nil, 70011},
	}
	for _, st := range steps {
		err := m.Apply(st.rec)
		if !errors.Is(err, st.err) || (st.err == nil && err != nil) || m.Seq() != st.seq {
			t.Fatalf("%s: error %v (want %v), seq %d (want %d)", st.what, err, st.err, m.Seq(), st.seq)
		}
	}
	if string(m.Doc()) != `{"v":4}` || !m.Ready() {
		t.Fatalf("doc %s ready %v", m.Doc(), m.Ready())
	}
	if err := m.Apply(rec(80000, "e2", events.KindReset, `{"reason":"r"}`)); err != nil || m.Ready() {
		t.Fatalf("reset: %v, ready %v", err, m.Ready())
	}
	if err := m.Apply(patch(80001, "e2", 5)); !errors.Is(err, ErrNeedFull) {
		t.Fatalf("patch after a reset: %v", err)
	}
}

// swapHandler serves the events endpoint of whichever agent runs now, so
// that a client keeps one URL across a restart.
type swapHandler struct{ h atomic.Pointer[Handler] }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.h.Load().ServeHTTP(w, r)
}

// TestMirrorFollowsAcrossUncleanStop follows a mirror, as `agent wait`
// does (snapshot, patches only, reconnecting), across an agent that dies
// without a clean stop: the journal's files are taken as a kill leaves
// them, and the next agent opens them. Its numbering jumps past the
// reserved block, in the same epoch; the resumed stream passes over that
// empty range with no reset, and the mirror takes the jump without asking
// for a new snapshot and ends equal to the source.
func TestMirrorFollowsAcrossUncleanStop(t *testing.T) {
	t.Run("patches", func(t *testing.T) { mirrorAcrossUncleanStop(t, []string{events.KindPatch}) })
	t.Run("both kinds", func(t *testing.T) { mirrorAcrossUncleanStop(t, nil) })
}

func mirrorAcrossUncleanStop(t *testing.T, kinds []string) {
	open := func(dir string) *events.Bus {
		t.Helper()
		b, err := events.Open(events.Config{Dir: dir, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	handler := func(b *events.Bus, st *store) *Handler {
		h := NewHandler(HandlerConfig{Bus: BusAdapter{b}, Snapshot: st.snapshot, ParseFilter: testFilter,
			Progress: 20 * time.Millisecond, CloseGrace: 100 * time.Millisecond, Logger: quietLogger()})
		t.Cleanup(func() { _ = h.Close() })
		return h
	}
	dir := t.TempDir()
	b1 := open(filepath.Join(dir, "journal"))
	st := newStore(BusAdapter{b1}, 11)
	var sw swapHandler
	h1 := handler(b1, st)
	sw.h.Store(h1)
	ts := httptest.NewServer(&sw)
	t.Cleanup(ts.Close)

	publish := func(b *events.Bus, n int) {
		for i := range n {
			if i%7 == 0 {
				b.Publish("n1", events.KindEvent, eventData("e"))
				continue
			}
			st.change()
		}
	}
	publish(b1, 10)
	sv := &testServer{url: ts.URL + "/v1/events"}
	cl := dial(t, sv, DialOptions{Snapshot: true, Kinds: kinds, Reconnect: true})
	publish(b1, 40)
	var m Mirror
	var seqs []uint64
	var got []string // kinds, in order
	follow := func(what string, to uint64) {
		t.Helper()
		for m.Seq() < to {
			rec := next(t, cl)
			got = append(got, rec.Kind)
			if rec.Kind == events.KindPatch || rec.Kind == events.KindEvent {
				seqs = append(seqs, rec.Seq)
			}
			if err := m.Apply(rec); err != nil {
				t.Fatalf("%s: record %s: %v", what, rec.JSON(), err)
			}
		}
	}
	head1, epoch := b1.Position()
	follow("before the stop", head1)

	// A kill leaves on disk every record written and the seq mark
	// reserved ahead: a copy of the files taken now is that state.
	if err := os.CopyFS(filepath.Join(dir, "after-kill"), os.DirFS(filepath.Join(dir, "journal"))); err != nil {
		t.Fatal(err)
	}
	_ = h1.Close() // the connection ends; the client reconnects
	_ = b1.Close()
	b2 := open(filepath.Join(dir, "after-kill"))
	head2, epoch2 := b2.Position()
	if epoch2 != epoch || head2 <= head1+1 {
		t.Fatalf("after the kill the bus is at %d of %s, want a jump past %d in %s", head2, epoch2, head1, epoch)
	}
	st.mu.Lock()
	st.bus = BusAdapter{b2}
	st.mu.Unlock()
	sw.h.Store(handler(b2, st))

	publish(b2, 50)
	end, _ := b2.Position()
	follow("after the restart", end)

	if n := strings.Count(strings.Join(got, " "), events.KindFull); n != 1 {
		t.Fatalf("%d full records (kinds %v): the mirror asked for a new snapshot", n, got)
	}
	if slices.Contains(got, events.KindReset) {
		t.Fatalf("a reset on the resumed stream: %v", got)
	}
	i := slices.IndexFunc(seqs, func(s uint64) bool { return s > head2 })
	if i <= 0 || seqs[i-1] > head1 {
		t.Fatalf("the stream did not pass over %d..%d: records %v", head1+1, head2, seqs)
	}
	doc, _ := st.current()
	if !jsonEqual(m.Doc(), doc) {
		t.Fatalf("mirror differs from the source after the jump:\n%s\n%s", m.Doc(), doc)
	}
}
