package hooks

import (
	"os"
	"path/filepath"
	"testing"

	"agent/events"
	"agent/internal/testutil"
)

func TestRestartMidBacklogLosesNothing(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	dir := t.TempDir()
	journal, hooksDir, out := filepath.Join(dir, "journal"), filepath.Join(dir, "hooks"), filepath.Join(dir, "out")
	cmd := script(t, dir, "h.sh", `cat >> "$1"`)
	h := hook("h", cmd, out)

	bus := openBus(t, events.Config{Dir: journal, RingSize: 16})
	r := newRunner(t, Config{Bus: bus, Dir: hooksDir})
	update(t, r, h)
	const n = 300
	var want []uint64
	for i := range n {
		want = append(want, publishEvent(bus, "e", map[string]any{"i": i}).Seq)
		if i%2 == 0 {
			publishPatch(bus, i)
		}
	}
	waitLines(t, out, 20)
	_ = r.Close() // mid-backlog
	_ = bus.Close()
	done := len(readLines(t, out))
	if done >= n {
		t.Skip("the hook finished the backlog before Close; nothing to resume")
	}

	bus = openBus(t, events.Config{Dir: journal, RingSize: 16})
	r = newRunner(t, Config{Bus: bus, Dir: hooksDir})
	update(t, r, h)
	lines := waitLines(t, out, n)
	waitDone(t, r, "h", want[n-1])
	got := recordSeqs(t, readLines(t, out))
	// Every record, in order; the one running at Close may come twice.
	var dups int
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			dups++
		} else if got[i] < got[i-1] {
			t.Fatalf("seq %d after %d", got[i], got[i-1])
		}
	}
	if dups > 1 || len(got) != n+dups {
		t.Fatalf("%d records after restart (%d twice), want %d (lines %d)", len(got), dups, n, len(lines))
	}
	seen := map[uint64]bool{}
	for _, s := range got {
		seen[s] = true
	}
	for _, s := range want {
		if !seen[s] {
			t.Fatalf("seq %d never ran", s)
		}
	}
	if s, _ := statsOf(r, "h"); s.Skipped != 0 || s.Losses != 0 {
		t.Fatalf("stats after restart = %+v", s)
	}
	_ = r.Close()
	_ = bus.Close()
	check()
}

// smallJournal keeps few records: the ring holds 8 and the journal about
// two 1 KiB segments.
func smallJournal(dir string) events.Config {
	return events.Config{Dir: dir, RingSize: 8, SegmentBytes: 1024, MaxBytes: 2048}
}

func TestRetentionSkipIsReported(t *testing.T) {
	dir := t.TempDir()
	journal, hooksDir := filepath.Join(dir, "journal"), filepath.Join(dir, "hooks")
	out, gate := filepath.Join(dir, "out"), filepath.Join(dir, "gate")
	bus := openBus(t, smallJournal(journal))
	r := newRunner(t, Config{Bus: bus, Dir: hooksDir, Nodename: "n1"})
	cmd := script(t, dir, "h.sh", `while [ ! -e "$2" ]; do sleep 0.01; done; cat >> "$1"`)
	// The slow hook takes only e, so the hook_skipped events do not run it.
	h := hook("slow", cmd, out, gate)
	h.Events = []string{"e"}
	update(t, r, h)
	watch, err := bus.Subscribe(events.SubscribeOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()

	first := publishEvent(bus, "e", nil)
	testutil.Eventually(t, waitLong, func() bool { s, _ := statsOf(r, "slow"); return s.Running },
		"the hook runs for the first record")
	for range 300 {
		publishEvent(bus, "e", nil)
	}
	if bus.Oldest() <= first.Seq+1 {
		t.Fatalf("retention kept everything (oldest %d); the test needs a smaller journal", bus.Oldest())
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d := findEvent(t, watch, EventHookSkipped)
	if d["reason"] != ReasonRetention || d["hook"] != "slow" {
		t.Fatalf("hook_skipped data = %v", d)
	}
	skipped, _ := d["skipped"].(float64)
	if skipped < 1 {
		t.Fatalf("hook_skipped without a count: %v", d)
	}
	last := publishEvent(bus, "e", nil)
	waitDone(t, r, "slow", last.Seq)
	s, _ := statsOf(r, "slow")
	if s.Skipped != uint64(skipped) || s.Losses != 1 {
		t.Fatalf("stats = %+v, want Skipped %v and one loss", s, skipped)
	}
	// Every record was run or counted as skipped (the hook_skipped records
	// it passed over are not its events).
	if runs := uint64(len(readLines(t, out))); runs+s.Skipped < 302 {
		t.Fatalf("%d runs + %d skipped < 302 events", runs, s.Skipped)
	}

	// Stopped while the journal moves on: the loss is found at resume.
	_ = r.Close()
	for range 300 {
		publishEvent(bus, "e", nil)
	}
	r = newRunner(t, Config{Bus: bus, Dir: hooksDir, Nodename: "n1"})
	update(t, r, h)
	d = findEvent(t, watch, EventHookSkipped)
	if d["reason"] != ReasonRetention || d["skipped"].(float64) < 1 {
		t.Fatalf("hook_skipped at resume = %v", d)
	}
}

func TestEpochChangeAndBadCursorsAreReported(t *testing.T) {
	dir := t.TempDir()
	hooksDir := filepath.Join(dir, "hooks")
	if err := os.MkdirAll(hooksDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeCursor(filepath.Join(hooksDir, "old.cursor"), cursor{Epoch: "0ld", Seq: 42}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hooksDir, "torn.cursor"), []byte(`{"epo`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hooksDir, "gone.cursor"), []byte(`{"epoch":"x","seq":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bus := openBus(t, events.Config{Dir: filepath.Join(dir, "journal")})
	watch, err := bus.Subscribe(events.SubscribeOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	// Published before the hooks start: the new epoch's records all run
	// for the hook whose cursor is in the old epoch.
	early := publishEvent(bus, "early", nil)

	r := newRunner(t, Config{Bus: bus, Dir: hooksDir})
	cmd := script(t, dir, "h.sh", `cat >> "$1"`)
	h := hook("old", cmd, filepath.Join(dir, "old"))
	h.Events = []string{"early", "late"}
	torn := hook("torn", cmd, filepath.Join(dir, "torn"))
	torn.Events = []string{"early", "late"}
	update(t, r, h, torn)

	got := map[string]map[string]any{}
	for len(got) < 2 {
		d := findEvent(t, watch, EventHookSkipped)
		got[d["hook"].(string)] = d
	}
	if d := got["old"]; d["reason"] != ReasonEpoch || d["old_epoch"] != "0ld" || d["after_seq"] != 42.0 {
		t.Fatalf("epoch change: %v", d)
	}
	if _, ok := got["old"]["skipped"]; ok {
		t.Fatalf("epoch change with a count: %v", got["old"])
	}
	if d := got["torn"]; d["reason"] != ReasonCursorUnreadable {
		t.Fatalf("torn cursor: %v", d)
	}
	late := publishEvent(bus, "late", nil)
	waitDone(t, r, "old", late.Seq)
	waitDone(t, r, "torn", late.Seq)
	if ids := eventIDs(t, readLines(t, filepath.Join(dir, "old"))); len(ids) != 2 || ids[0] != "early" {
		t.Fatalf("after the epoch change the hook ran for %v, want [early late] (early is seq %d)", ids, early.Seq)
	}
	if ids := eventIDs(t, readLines(t, filepath.Join(dir, "torn"))); len(ids) != 1 || ids[0] != "late" {
		t.Fatalf("after an unreadable cursor the hook ran for %v, want [late]", ids)
	}
	// The first Update removed the cursor of the hook it does not name.
	if _, err := os.Stat(filepath.Join(hooksDir, "gone.cursor")); !os.IsNotExist(err) {
		t.Fatalf("stale cursor kept: %v", err)
	}
	if s, _ := statsOf(r, "old"); s.Losses != 1 || s.Skipped != 0 || s.Epoch == "0ld" {
		t.Fatalf("stats = %+v", s)
	}
}

func TestCursorAheadOfJournal(t *testing.T) {
	dir := t.TempDir()
	hooksDir := filepath.Join(dir, "hooks")
	bus := openBus(t, events.Config{})
	_, epoch := bus.Position()
	if err := os.MkdirAll(hooksDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeCursor(filepath.Join(hooksDir, "h.cursor"), cursor{Epoch: epoch, Seq: 1000}); err != nil {
		t.Fatal(err)
	}
	watch, err := bus.Subscribe(events.SubscribeOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	r := newRunner(t, Config{Bus: bus, Dir: hooksDir})
	out := filepath.Join(dir, "out")
	h := hook("h", script(t, dir, "h.sh", `cat >> "$1"`), out)
	h.Events = []string{"x"}
	update(t, r, h)
	if d := findEvent(t, watch, EventHookSkipped); d["reason"] != ReasonCursorAhead {
		t.Fatalf("hook_skipped = %v", d)
	}
	rec := publishEvent(bus, "x", nil)
	waitDone(t, r, "h", rec.Seq)
	if n := len(readLines(t, out)); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
}
