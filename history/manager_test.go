package history

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"agent/config"
	"agent/events"
	"agent/internal/testutil"
)

// managerRig is a bus with a small journal and a manager of sinks over it.
type managerRig struct {
	t   *testing.T
	bus *events.Bus
	dir string
	pub *published
	m   *Manager
}

func newManagerRig(t *testing.T, bus *events.Bus, dir string, pub *published) *managerRig {
	t.Helper()
	m, err := NewManager(ManagerConfig{
		Origin:    Origin{Cluster: "c", Agent: "n1"},
		Resolve:   func(s config.Sink) (Target, error) { return TargetOf(s, dir, "") },
		Bus:       bus,
		CursorDir: filepath.Join(dir, "sinks"),
		Publish:   func(data json.RawMessage) { pub.add(data) },
		Head:      func() uint64 { s, _ := bus.Position(); return s },
		Tune:      func(c *SinkConfig) { c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &managerRig{t: t, bus: bus, dir: dir, pub: pub, m: m}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func publishEvents(bus *events.Bus, n int) uint64 {
	var last uint64
	for i := range n {
		last = bus.Publish("n1", events.KindEvent, json.RawMessage(fmt.Sprintf(`{"id":"node_up","i":%d,"pad":"%s"}`, i, strings.Repeat("x", 200)))).Seq
	}
	return last
}

// TestManagerRetentionLoss stops a sink, lets the journal drop records it
// had not read, and starts it again: the loss is published as
// sink_skipped with its count, and the rest is written.
func TestManagerRetentionLoss(t *testing.T) {
	dir := t.TempDir()
	bus, err := events.Open(events.Config{Dir: filepath.Join(dir, "journal"), RingSize: 64, SegmentBytes: 4096, MaxBytes: 16384, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	check := testutil.CheckGoroutines(t) // the sinks' and consumers' goroutines end with them
	pub := &published{}
	sink := config.DefaultSink("h")
	sink.Flush = 10 * time.Millisecond
	sink.Events = []string{"node_up"} // not its own sink_* events

	r := newManagerRig(t, bus, dir, pub)
	if err := r.m.Update([]config.Sink{sink}); err != nil {
		t.Fatal(err)
	}
	last := publishEvents(bus, 10)
	testutil.Eventually(t, wait, func() bool {
		st := r.m.Stats()
		return len(st) == 1 && st[0].Written == 10
	}, "first records not written")
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}

	// Stopped: far more than the journal keeps.
	head := publishEvents(bus, 500)
	oldest := bus.Oldest()
	if oldest <= last+1 {
		t.Fatalf("the journal kept everything (oldest %d): the test needs a loss", oldest)
	}
	r = newManagerRig(t, bus, dir, pub)
	if err := r.m.Update([]config.Sink{sink}); err != nil {
		t.Fatal(err)
	}
	defer r.m.Close()
	testutil.Eventually(t, wait, func() bool {
		st := r.m.Stats()
		return len(st) == 1 && st[0].LagRecords == 0 && st[0].Written == head-oldest+1
	}, "the retained records were not written: %v", func() any { return r.m.Stats() })
	var skipped []string
	for _, e := range pub.evs {
		if gjson.Get(e, "id").String() == EventSinkSkipped {
			skipped = append(skipped, e)
		}
	}
	want := fmt.Sprintf(`{"count":%d,"id":"sink_skipped","reason":"retention","sink":"h"}`, oldest-last-1)
	if len(skipped) != 1 || skipped[0] != want {
		t.Fatalf("sink_skipped events %v, want one: %s", skipped, want)
	}
	if st := r.m.Stats(); st[0].Skipped != oldest-last-1 {
		t.Fatalf("skipped %d, want %d", st[0].Skipped, oldest-last-1)
	}
	r.m.Close()
	check()
}

// TestManagerUpdate applies changes: a changed sink restarts from its
// cursor (nothing written twice, nothing missed), a removed one loses its
// cursor, and a sink with a filter that does not parse is refused alone.
func TestManagerUpdate(t *testing.T) {
	dir := t.TempDir()
	bus, err := events.Open(events.Config{Dir: filepath.Join(dir, "journal"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	r := newManagerRig(t, bus, dir, &published{})
	defer r.m.Close()
	a, b := config.DefaultSink("a"), config.DefaultSink("b")
	a.Flush, b.Flush = 10*time.Millisecond, 10*time.Millisecond
	if err := r.m.Update([]config.Sink{a, b}); err != nil {
		t.Fatal(err)
	}
	publishEvents(bus, 20)
	written := func(name string) uint64 {
		for _, s := range r.m.Stats() {
			if s.Name == name {
				return s.Written
			}
		}
		return 0
	}
	testutil.Eventually(t, wait, func() bool { return written("a") == 20 && written("b") == 20 }, "not written")
	a.Batch = 5
	bad := config.DefaultSink("c")
	bad.Filter = "data.id=("
	err = r.m.Update([]config.Sink{a, bad})
	if err == nil || !strings.Contains(err.Error(), "[sink#c] filter") {
		t.Fatalf("Update with a bad filter: %v", err)
	}
	publishEvents(bus, 7)
	// a restarted from its cursor: only the new records are written.
	testutil.Eventually(t, wait, func() bool { return written("a") == 7 }, "a after its change: %v", func() any { return r.m.Stats() })
	if n := len(r.m.Stats()); n != 1 {
		t.Fatalf("%d sinks run, want a alone", n)
	}
	rows := all(t, openMigrated(t, Target{Dialect: SQLite, Path: filepath.Join(dir, "a.db")}), Query{})
	if len(rows) != 27 {
		t.Fatalf("%d rows in a.db, want 27", len(rows))
	}
	if _, err := os.Stat(filepath.Join(dir, "sinks", "b.cursor")); !os.IsNotExist(err) {
		t.Fatalf("the removed sink's cursor: %v", err)
	}
}
