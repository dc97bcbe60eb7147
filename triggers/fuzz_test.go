package triggers

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"agent/config"
)

// FuzzStateFile: whatever the state file holds, loading and replaying it
// returns an error or a state, and never panics; a state it accepts goes
// on working.
func FuzzStateFile(f *testing.F) {
	// A real file as the seed: streams, actions, a removed trigger.
	fd := newFeed()
	sp := spec(f, "flap", "data.id=node_down", func(c *config.Trigger) { c.Distinct = []string{"data.node"}; c.Count = 2 })
	e := NewEngine(3)
	e.Update([]*Spec{sp, spec(f, "gone", "data.id=node_down", nil)}, fd.now, fd.epoch, 0)
	for i := range 7 {
		fd.advance(time.Second)
		e.Apply(fd.event("node_down", "node", []string{"n1", "n2", "n3"}[i%3]))
	}
	e.MarkLost()
	e.Update([]*Spec{sp}, fd.now, fd.epoch, fd.seq)
	seed := encodeLog(append(e.Drain(), entry{Op: opCommit, Epoch: fd.epoch, Seq: fd.seq}))
	f.Add(seed)
	f.Add(encodeLog(append(e.snapshot(), entry{Op: opCommit, Epoch: fd.epoch, Seq: fd.seq})))
	f.Add([]byte(`{"op":"add","t":"x","r":{}}` + "\n" + `{"op":"commit"}` + "\n"))
	f.Add([]byte(`{"op":"event","id":1,"r":1}` + "\n" + `{"op":"commit"}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), StateFile)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, list, _, _, err := loadState(path, quietLog())
		if err != nil {
			return
		}
		e := NewEngine(3)
		if e.replay(list) != nil {
			return
		}
		fd := newFeed()
		e.Update([]*Spec{sp}, fd.now, fd.epoch, 0)
		e.Apply(fd.event("node_down", "node", "n1"))
		e.Expire(fd.now.Add(time.Hour))
		e.List()
		e.snapshot()
		for _, a := range e.Pending() {
			e.Published(a.ID)
			e.Done(a.ID)
		}
	})
}

// TestReplayEmptyCommand: an action restored with an empty command runs
// none (a hand-edited or damaged file must not crash the agent).
func TestReplayEmptyCommand(t *testing.T) {
	e := NewEngine(0)
	err := e.replay(decodeLog(t, []byte(`{"op":"action","id":3,"t":"x","outcome":"fire","cmd":[]}`+"\n"+`{"op":"action","id":4,"t":"x","outcome":"fire","cmd":[""]}`+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range e.Pending() {
		if a.Command != nil {
			t.Fatalf("action %d has command %q", a.ID, a.Command)
		}
	}
}
