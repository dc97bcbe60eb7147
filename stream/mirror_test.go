package stream

import (
	"encoding/json"
	"errors"
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
