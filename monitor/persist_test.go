package monitor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestRestartKeepsFreezeAndGen restarts a node many times at random points
// and checks that its freeze survives and its gen never goes backwards:
// whatever a run published, the next run starts above it.
func TestRestartKeepsFreezeAndGen(t *testing.T) {
	for _, block := range []uint64{1, 2, 3, 7, 10000} {
		t.Run(fmt.Sprint("block ", block), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, block))
			p := &persisted{}
			var lastGen uint64
			var frozen int64
			for run := range 30 {
				s, rec, _ := newTestStore(t, "n1", func(c *Config) {
					c.Restored = p.get()
					c.GenBlock = block
					c.Persist = p.save
				})
				gen, _, d := s.Local()
				if run > 0 && gen <= lastGen {
					t.Fatalf("run %d starts at gen %d, the previous run reached %d", run, gen, lastGen)
				}
				if d.Frozen != frozen {
					t.Fatalf("run %d: frozen = %d, want %d", run, d.Frozen, frozen)
				}
				var wantEvents []string
				if frozen != 0 {
					wantEvents = []string{"node_freeze:boot:n1"}
				}
				if got := eventIDs(t, rec.take()); !reflect.DeepEqual(got, wantEvents) {
					t.Fatalf("run %d: start events %v, want %v", run, got, wantEvents)
				}
				checkReserved(t, p, gen)
				for range rng.IntN(int(3*block%50) + 5) {
					calls, reserved := p.calls, p.get().GenReserved
					wasFrozen := frozen
					var err error
					switch rng.IntN(4) {
					case 0:
						frozen = int64(rng.IntN(3)) // 0 thaws; 1, 2 freeze
						gen, _, err = s.UpdateLocal("cli", func(d *NodeData) { d.Frozen = frozen })
					default:
						gen, _, err = s.UpdateLocal("", func(d *NodeData) { d.Stats.MemAvailPct = rng.IntN(100) })
					}
					if err != nil {
						t.Fatal(err)
					}
					checkReserved(t, p, gen)
					// Persist only when the freeze changes or a new block
					// is reserved.
					if p.calls != calls && frozen == wasFrozen && gen < reserved {
						t.Fatalf("persisted without a reason at gen %d", gen)
					}
					if frozen != wasFrozen && p.get().Frozen != frozen {
						t.Fatalf("persisted frozen %d, want %d", p.get().Frozen, frozen)
					}
				}
				lastGen = gen
			}
		})
	}
}

// checkReserved checks the saved reserved generation was not reached yet.
func checkReserved(t *testing.T, p *persisted, gen uint64) {
	t.Helper()
	if r := p.get().GenReserved; r <= gen {
		t.Fatalf("gen %d reached the saved reserved gen %d: a restart would go back", gen, r)
	}
}

func TestRestoredStart(t *testing.T) {
	p := &persisted{}
	s, _, _ := newTestStore(t, "n1", func(c *Config) {
		c.Restored = PersistentState{Frozen: 1795341601, GenReserved: 500}
		c.GenBlock = 100
		c.Persist = p.save
	})
	gen, _, d := s.Local()
	if gen != 501 || d.Frozen != 1795341601 || d.Status != StatusInit {
		t.Fatalf("restored start: gen %d, %+v", gen, d)
	}
	if got := p.get(); p.calls != 1 || got.GenReserved != 601 || got.Frozen != 1795341601 {
		t.Fatalf("saved at start: %+v (%d calls)", got, p.calls)
	}
}

// TestPersistFailure checks a failed save changes nothing, and that the
// reserved block is not taken as saved: later changes must save again
// before their gen passes what is on disk.
func TestPersistFailure(t *testing.T) {
	p := &persisted{}
	s, rec, _ := newTestStore(t, "n1", func(c *Config) {
		c.GenBlock = 3
		c.Persist = p.save
	})
	rec.take()
	for i := range 2 { // gens 2, 3
		if _, _, err := s.UpdateLocal("", func(d *NodeData) { d.Stats.MemAvailPct = i + 1 }); err != nil {
			t.Fatal(err)
		}
	}
	checkReserved(t, p, 3)
	rec.take()
	diskFull := errors.New("disk full")
	p.fail = diskFull
	for _, fn := range []func(d *NodeData){
		func(d *NodeData) { d.Stats.MemAvailPct = 50 }, // gen 4 needs a new block
	} {
		gen, changed, err := s.UpdateLocal("", fn)
		if !errors.Is(err, diskFull) || changed || gen != 3 {
			t.Fatalf("UpdateLocal with a failing save = %d, %v, %v", gen, changed, err)
		}
	}
	if recs := rec.take(); len(recs) != 0 {
		t.Fatalf("failed update published %+v", recs)
	}
	if g, _, d := s.Local(); g != 3 || d.Stats.MemAvailPct != 2 {
		t.Fatalf("failed update changed the data: gen %d %+v", g, d)
	}
	p.fail = nil
	for i := range 10 {
		gen, _, err := s.UpdateLocal("", func(d *NodeData) { d.Stats.MemAvailPct = 60 + i })
		if err != nil {
			t.Fatal(err)
		}
		checkReserved(t, p, gen)
	}
}

func TestPersistFailureOnFreeze(t *testing.T) {
	p := &persisted{}
	s, rec, _ := newTestStore(t, "n1", func(c *Config) { c.Persist = p.save })
	rec.take()
	p.fail = errors.New("read-only")
	if _, changed, err := s.UpdateLocal("cli", func(d *NodeData) { d.Frozen = 5 }); err == nil || changed {
		t.Fatalf("freeze with a failing save: changed %v, err %v", changed, err)
	}
	if recs := rec.take(); len(recs) != 0 {
		t.Fatalf("failed freeze published %+v", recs)
	}
	if g, _, d := s.Local(); g != 1 || d.Frozen != 0 {
		t.Fatalf("failed freeze changed the data: gen %d frozen %d", g, d.Frozen)
	}
}
