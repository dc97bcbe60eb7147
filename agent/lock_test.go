package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"agent/events"
	"agent/monitor"
)

func TestLockVarRefusesASecondHolder(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "var")
	l, err := lockVar(dir, root)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("var directory %v (%v), want mode 0700", info.Mode(), err)
	}
	_, err = lockVar(dir, root)
	want := fmt.Sprintf("agent already running on %s, pid %d", root, os.Getpid())
	if !errors.Is(err, ErrAlreadyRunning) || err.Error() != want {
		t.Fatalf("second lock: %v, want %q", err, want)
	}
	l.release()
	l2, err := lockVar(dir, root)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.release()
}

// TestSnapshotSeqIsTheSubscriptionStart publishes records outside the store
// lock (as hook_skipped events are) while snapshots are taken: the seq of
// each snapshot must be exactly where its subscription starts, or a
// record would be skipped silently.
func TestSnapshotSeqIsTheSubscriptionStart(t *testing.T) {
	bus, err := events.Open(events.Config{RingSize: 1 << 20, MaxLag: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	a := &Agent{bus: bus}
	a.store = newTestStore(t, bus)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			bus.Publish("n1", events.KindEvent, []byte(`{"id":"hook_skipped"}`))
			runtime.Gosched()
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	for i := range 300 {
		_, sub, seq, err := a.snapshot()
		if err != nil {
			t.Fatal(err)
		}
		r, err := sub.Next(context.Background())
		sub.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != seq+1 {
			t.Fatalf("snapshot %d at seq %d, but its subscription delivers %d first", i, seq, r.Seq)
		}
	}
}

// newTestStore is a monitor store publishing on bus.
func newTestStore(t *testing.T, bus *events.Bus) *monitor.Store {
	t.Helper()
	s, err := monitor.New(monitor.Config{
		Name: "n1", ClusterName: "c",
		Publish: func(node, kind string, data json.RawMessage) { bus.Publish(node, kind, data) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
