package monitor

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

const testMax = 2000

func bigLabel(n int) func(d *NodeData) {
	return func(d *NodeData) { d.Labels["big"] = strings.Repeat("x", n) }
}

func TestMaxDataRefusesALocalChange(t *testing.T) {
	s, rec, _ := newTestStore(t, "n1", func(c *Config) { c.MaxData = testMax })
	rec.take()
	gen0, _, _ := s.Local()
	gen, changed, err := s.UpdateLocal("config", bigLabel(testMax))
	if !errors.Is(err, ErrDataTooLarge) || changed || gen != gen0 {
		t.Fatalf("over max_data: gen %d changed %v err %v", gen, changed, err)
	}
	if !strings.Contains(err.Error(), "max_data 2000") {
		t.Fatalf("error does not name the limit: %v", err)
	}
	if recs := rec.take(); len(recs) != 0 {
		t.Fatalf("a refused change published %d records", len(recs))
	}
	if _, _, d := s.Local(); d.Labels["big"] != "" {
		t.Fatal("refused label applied")
	}
	// Under the limit it passes; a change that does not grow data over it
	// passes too.
	if _, changed, err := s.UpdateLocal("config", bigLabel(testMax/2)); err != nil || !changed {
		t.Fatalf("under max_data: %v", err)
	}
}

func TestMaxDataRefusesAStartOverIt(t *testing.T) {
	_, err := New(Config{Name: "n1", Publish: func(string, string, json.RawMessage) {}, MaxData: testMax,
		Labels: map[string]string{"big": strings.Repeat("x", testMax)}})
	if !errors.Is(err, ErrDataTooLarge) {
		t.Fatalf("start with labels over max_data: %v", err)
	}
}

// TestMaxDataRefusesAPeerOverIt: a peer with a bigger limit (a config
// mistake, or an older agent) sends data over this node's limit: refused,
// counted, and its deltas ignored for a while instead of a request for
// its whole data per change.
func TestMaxDataRefusesAPeerOverIt(t *testing.T) {
	s, _, clk := newTestStore(t, "n1", func(c *Config) { c.MaxData = testMax })
	p, _, _ := newTestStore(t, "n2", func(c *Config) { c.MaxData = 10 * testMax })
	gen, raw, _ := p.Local()
	if ok, err := s.ApplyFull("n2", p.Boot(), gen, raw, ""); !ok || err != nil {
		t.Fatalf("first full: %v %v", ok, err)
	}
	base, gen, ops, _ := peerDelta(t, p, bigLabel(testMax))
	if res, _ := s.ApplyDelta("n2", p.Boot(), base, gen, ops); res != Stale {
		t.Fatalf("delta over max_data: %v, want Stale", res)
	}
	if s.RefusedTooLarge() != 1 {
		t.Fatalf("RefusedTooLarge %d", s.RefusedTooLarge())
	}
	if held, _, _ := s.Held("n2"); held != base {
		t.Fatalf("held gen %d after a refused delta, want %d", held, base)
	}
	// The next delta does not follow what is held, but no full is asked
	// for while the refusal holds.
	base, gen, ops, _ = peerDelta(t, p, func(d *NodeData) { d.Status = StatusIdle })
	if res, _ := s.ApplyDelta("n2", p.Boot(), base, gen, ops); res != Stale {
		t.Fatalf("delta during the refusal: %v, want Stale", res)
	}
	gen, raw, _ = p.Local()
	if ok, err := s.ApplyFull("n2", p.Boot(), gen, raw, "gap"); ok || !errors.Is(err, ErrDataTooLarge) {
		t.Fatalf("full over max_data: %v %v", ok, err)
	}
	clk.Advance(refuseBackoff + time.Second)
	base, gen, ops, _ = peerDelta(t, p, bigLabel(10)) // back under the limit
	if res, _ := s.ApplyDelta("n2", p.Boot(), base, gen, ops); res != NeedFull {
		t.Fatalf("delta after the refusal: %v, want NeedFull", res)
	}
	gen, raw, _ = p.Local()
	if ok, err := s.ApplyFull("n2", p.Boot(), gen, raw, "gap"); !ok || err != nil {
		t.Fatalf("full back under max_data: %v %v", ok, err)
	}
}

// TestPersistDoesNotHoldTheStoreLock: while the state file is being saved
// (an fsync on a slow disk), readers and peers' updates go on.
func TestPersistDoesNotHoldTheStoreLock(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var slow sync.Once
	var block bool
	s, _, _ := newTestStore(t, "n1", func(c *Config) {
		c.Persist = func(PersistentState) error {
			if block {
				slow.Do(func() { entered <- struct{}{}; <-release })
			}
			return nil
		}
	})
	block = true
	done := make(chan error, 1)
	go func() {
		_, _, err := s.UpdateLocal("cli", func(d *NodeData) { d.Frozen = 1 })
		done <- err
	}()
	<-entered
	// The store answers while the save is in progress.
	p, _, _ := newTestStore(t, "n2", nil)
	gen, raw, _ := p.Local()
	if ok, err := s.ApplyFull("n2", p.Boot(), gen, raw, ""); !ok || err != nil {
		t.Fatalf("ApplyFull during a save: %v %v", ok, err)
	}
	if _, _, d := s.Local(); d.Frozen != 0 {
		t.Fatal("the freeze was applied before its state was saved")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, _, d := s.Local(); d.Frozen != 1 {
		t.Fatal("freeze not applied after its save")
	}
}
