package triggers

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agent/config"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// run feeds n flapping events through e and commits them to s.
func runBatch(t *testing.T, e *Engine, s *stateFile, f *feed, n int) {
	t.Helper()
	for range n {
		f.advance(time.Second)
		e.Apply(f.event("node_down", "node", []string{"n1", "n2", "n3"}[f.seq%3]))
	}
	s.add(e.Drain())
	if err := s.commit(cursor{f.epoch, f.seq}, e.snapshot); err != nil {
		t.Fatal(err)
	}
}

func flapSpec(t *testing.T) *Spec {
	return spec(t, "flap", "data.id=node_down", func(c *config.Trigger) { c.Distinct = []string{"data.node"}; c.Count = 4 })
}

// restore loads the state file into a new engine.
func restore(t *testing.T, path string) (*Engine, cursor, bool) {
	t.Helper()
	_, list, cur, ok, err := loadState(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(0)
	if err := e.replay(list); err != nil {
		t.Fatal(err)
	}
	return e, cur, ok
}

func TestStateFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.log")
	s, list, _, ok, err := loadState(path, quietLog())
	if err != nil || ok || list != nil {
		t.Fatalf("a missing file: %v %v %v", list, ok, err)
	}
	f := newFeed()
	sp := flapSpec(t)
	e := newEngine(f, sp)
	runBatch(t, e, s, f, 5) // a snapshot: the first commit
	runBatch(t, e, s, f, 5) // appended
	e.Done(e.Pending()[0].ID)
	runBatch(t, e, s, f, 1)
	want := state(e)

	r, cur, ok := restore(t, path)
	if !ok || cur != (cursor{f.epoch, f.seq}) {
		t.Fatalf("cursor %+v %v, want %s/%d", cur, ok, f.epoch, f.seq)
	}
	r.Update([]*Spec{sp}, f.now, f.epoch, f.seq)
	if got := state(r); got != want {
		t.Fatalf("restored:\n%s\nwant:\n%s", got, want)
	}
}

// TestStateFileDropsUncommittedTail: a batch cut by a crash (no commit
// entry, or a torn line) is dropped with its cursor, so the records it
// covered are applied again, once.
func TestStateFileDropsUncommittedTail(t *testing.T) {
	for _, tail := range []string{
		`{"op":"add","t":"flap","k":["n1"],"r":{"seq":99`,              // torn
		`{"op":"done","id":1}` + "\n",                                  // no commit
		`{"op":"done","id":1}` + "\n" + `{"op":"comm`,                  // torn commit
		"garbage\n" + `{"op":"commit","epoch":"e1","seq":1000}` + "\n", // damage
	} {
		path := filepath.Join(t.TempDir(), "state.log")
		s, _, _, _, _ := loadState(path, quietLog())
		f := newFeed()
		sp := flapSpec(t)
		e := newEngine(f, sp)
		runBatch(t, e, s, f, 6)
		want := state(e)
		wantSize := s.size
		fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteString(tail)
		fh.Close()

		r, cur, _ := restore(t, path)
		r.Update([]*Spec{sp}, f.now, f.epoch, f.seq)
		if got := state(r); got != want || cur.Seq != f.seq {
			t.Fatalf("tail %q: cursor %d, state:\n%s\nwant:\n%s", tail, cur.Seq, got, want)
		}
		s2, _, _, _, err := loadState(path, quietLog())
		if err != nil || s2.size != wantSize {
			t.Fatalf("tail %q: committed size %d, want %d (%v)", tail, s2.size, wantSize, err)
		}
	}
}

// TestStateFileCompacts: the file is rewritten as a snapshot once it has
// grown, and still restores the same state.
func TestStateFileCompacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.log")
	s, _, _, _, _ := loadState(path, quietLog())
	s.compactMin = 64 << 10
	f := newFeed()
	sp := spec(t, "big", "data.id=node_down", func(c *config.Trigger) { c.Distinct = []string{"data.node"}; c.Count = 5; c.Window = 1000 * time.Hour })
	e := newEngine(f, sp)
	pad := strings.Repeat("x", 1000)
	snapshots := 0
	for i := range 300 {
		f.advance(time.Millisecond)
		e.Apply(f.event("node_down", "node", []string{"n1", "n2"}[i%2], "pad", pad))
		if i%7 == 0 {
			e.Apply(f.event("node_up"))
		}
		s.add(e.Drain())
		before := s.base
		if err := s.commit(cursor{f.epoch, f.seq}, e.snapshot); err != nil {
			t.Fatal(err)
		}
		if s.base != before {
			snapshots++
		}
	}
	if snapshots < 2 {
		t.Fatalf("%d snapshots, want the first and at least one compaction", snapshots)
	}
	fi, _ := os.Stat(path)
	if fi.Size() != s.size || s.size > compactFactor*s.base+(64<<10) {
		t.Fatalf("file %d bytes, size %d, base %d", fi.Size(), s.size, s.base)
	}
	r, _, _ := restore(t, path)
	r.Update([]*Spec{sp}, f.now, f.epoch, f.seq)
	if got, want := state(r), state(e); got != want {
		t.Fatal("the compacted file restores another state")
	}
}

// TestStateFileWriteError: a failed commit leaves the file as it was, and
// the next one that works writes the whole state.
func TestStateFileWriteError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.log")
	s, _, _, _, _ := loadState(path, quietLog())
	f := newFeed()
	sp := flapSpec(t)
	e := newEngine(f, sp)
	runBatch(t, e, s, f, 3)
	good, _ := os.ReadFile(path)

	// The file handle fails: closed behind the state file's back.
	s.f.Close()
	e.Apply(f.event("node_down", "node", "n1"))
	s.add(e.Drain())
	if err := s.commit(cursor{f.epoch, f.seq}, e.snapshot); err == nil {
		t.Fatal("a commit on a closed file worked")
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, good) {
		t.Fatal("a failed commit changed the file")
	}
	if !s.snap {
		t.Fatal("after a failed commit, the next one should write a snapshot")
	}
	runBatch(t, e, s, f, 1)
	r, cur, _ := restore(t, path)
	r.Update([]*Spec{sp}, f.now, f.epoch, f.seq)
	if got, want := state(r), state(e); got != want || cur.Seq != f.seq {
		t.Fatalf("after the failure:\n%s\nwant:\n%s", got, want)
	}
}
