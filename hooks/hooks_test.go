package hooks

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"agent/config"
	"agent/events"
	"agent/internal/testutil"
)

func TestStdinIsTheRecordAndEnvIsSet(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	dir := t.TempDir()
	bus := openBus(t, events.Config{})
	r := newRunner(t, Config{Bus: bus, Dir: filepath.Join(dir, "hooks"), Nodename: "n1"})
	cmd := script(t, dir, "h.sh", `
cat > "$1/stdin.$AGENT_SEQ"
printf '%s\n%s\n%s\n%s\n' "$AGENT_EVENT_ID" "$AGENT_NODENAME" "$AGENT_SEQ" "$AGENT_HOOK" > "$1/env.$AGENT_SEQ"`)
	update(t, r, hook("notify", cmd, dir))

	// Data with characters that JSON escapes, and a nested object.
	rec := publishEvent(bus, "instance_start", map[string]any{
		"svcname": "web", "note": "quote \" backslash \\ unicode é <tag> & tab\t", "monitor": map[string]any{"status": "starting"},
	})
	waitDone(t, r, "notify", rec.Seq)

	// A record bigger than a pipe holds without a reader.
	big := publishEvent(bus, "big", map[string]any{"blob": strings.Repeat("x", 100_000)})
	waitDone(t, r, "notify", big.Seq)
	for _, rec := range []*events.Record{rec, big} {
		got, err := os.ReadFile(filepath.Join(dir, "stdin."+strconv.FormatUint(rec.Seq, 10)))
		if err != nil {
			t.Fatal(err)
		}
		want := append(append([]byte(nil), rec.JSON()...), '\n')
		if !bytes.Equal(got, want) {
			t.Fatalf("stdin of seq %d:\n got %.200q\nwant %.200q", rec.Seq, got, want)
		}
	}
	env := readLines(t, filepath.Join(dir, "env."+strconv.FormatUint(rec.Seq, 10)))
	wantEnv := []string{"instance_start", "n2", strconv.FormatUint(rec.Seq, 10), "notify"}
	if !slices.Equal(env, wantEnv) {
		t.Fatalf("env = %q, want %q", env, wantEnv)
	}
	h, _ := statsOf(r, "notify")
	if h.Runs != 2 || h.Failures != 0 || h.DurationCount != 2 || h.Buckets[len(h.Buckets)-1].Count != 2 {
		t.Fatalf("stats = %+v", h)
	}
	_ = r.Close()
	_ = bus.Close()
	check()
}

func TestBurstArrivesInOrder(t *testing.T) {
	dir := t.TempDir()
	bus := openBus(t, events.Config{RingSize: 64, Dir: filepath.Join(dir, "journal")})
	r := newRunner(t, Config{Bus: bus, Dir: filepath.Join(dir, "hooks")})
	out := filepath.Join(dir, "out")
	update(t, r, hook("h", script(t, dir, "h.sh", `cat >> "$1"`), out))

	const n = 1000
	var want []uint64
	for i := range n {
		want = append(want, publishEvent(bus, "node_up", map[string]any{"i": i}).Seq)
		publishPatch(bus, i) // records the hook passes over
	}
	lines := waitLines(t, out, n)
	got := recordSeqs(t, lines)
	if !slices.Equal(got, want) {
		t.Fatalf("the hook got %d records, not the %d published in order; first difference at %d",
			len(got), len(want), testutil.FirstDiff(got, want))
	}
	waitDone(t, r, "h", want[n-1]+1)
	if h, _ := statsOf(r, "h"); h.Runs != n || h.Failures != 0 || h.Skipped != 0 {
		t.Fatalf("stats = %+v", h)
	}
}

func TestEventsAndFilterSelect(t *testing.T) {
	dir := t.TempDir()
	bus := openBus(t, events.Config{})
	hooksDir := filepath.Join(dir, "hooks")
	r := newRunner(t, Config{Bus: bus, Dir: hooksDir})
	out := filepath.Join(dir, "out")
	cmd := script(t, dir, "h.sh", `cat >> "$1"`)
	h := config.Hook{Name: "sel", Events: []string{"instance_start", "instance_stop"},
		Filter: "data.svcname=web", Command: []string{cmd, out}, Timeout: waitLong}
	all := hook("all", cmd, filepath.Join(dir, "all"))
	update(t, r, h, all)

	publishEvent(bus, "instance_start", map[string]any{"svcname": "web", "n": "yes1"})
	publishEvent(bus, "instance_start", map[string]any{"svcname": "db"})
	publishPatch(bus, 1)
	publishEvent(bus, "node_down", map[string]any{"svcname": "web"})
	publishEvent(bus, "instance_stop", map[string]any{"svcname": "web", "n": "yes2"})
	bus.Publish("n2", events.KindPatch, []byte(`{"id":"instance_start","svcname":"web"}`)) // not an event
	last := publishPatch(bus, 2)

	waitDone(t, r, "sel", last.Seq)
	waitDone(t, r, "all", last.Seq)
	lines := readLines(t, out)
	if ids := eventIDs(t, lines); !slices.Equal(ids, []string{"instance_start", "instance_stop"}) ||
		!strings.Contains(lines[0], "yes1") || !strings.Contains(lines[1], "yes2") {
		t.Fatalf("selected records:\n%s", strings.Join(lines, "\n"))
	}
	if ids := eventIDs(t, readLines(t, filepath.Join(dir, "all"))); len(ids) != 4 {
		t.Fatalf("events=all got %v, want the 4 event records", ids)
	}
	// Records passed over advance the cursor too, written once caught up.
	testutil.Eventually(t, waitLong, func() bool {
		c, err := readCursor(filepath.Join(hooksDir, "sel.cursor"))
		return err == nil && c.Seq == last.Seq
	}, "cursor file at seq %d", last.Seq)
}

func TestUpdateAddsChangesAndRemoves(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	dir := t.TempDir()
	hooksDir := filepath.Join(dir, "hooks")
	bus := openBus(t, events.Config{})
	r := newRunner(t, Config{Bus: bus, Dir: hooksDir})
	rec := script(t, dir, "rec.sh", `cat >> "$1"`)
	// gated runs only once the file $2 exists.
	gated := script(t, dir, "gated.sh", `while [ ! -e "$2" ]; do sleep 0.01; done; cat >> "$1"`)
	outA, outB, outB2 := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "b2")
	gate := filepath.Join(dir, "gate")

	a := hook("a", rec, outA)
	update(t, r, a)
	e1 := publishEvent(bus, "e1", nil)
	waitDone(t, r, "a", e1.Seq)

	// Added: b starts at the head, so it does not get e1.
	b := hook("b", gated, outB, gate)
	update(t, r, a, b)
	publishEvent(bus, "e2", nil)
	e3 := publishEvent(bus, "e3", nil)
	testutil.Eventually(t, waitLong, func() bool {
		h, _ := statsOf(r, "b")
		return h.Running
	}, "b running for e2")

	// Removed: a stops and loses its cursor.
	if _, err := os.Stat(filepath.Join(hooksDir, "a.cursor")); err != nil {
		t.Fatalf("a has no cursor file: %v", err)
	}
	update(t, r, b)
	testutil.Eventually(t, waitLong, func() bool {
		_, err := os.Stat(filepath.Join(hooksDir, "a.cursor"))
		return os.IsNotExist(err)
	}, "a's cursor removed")
	if _, ok := statsOf(r, "a"); ok {
		t.Fatal("removed hook a still in Stats")
	}

	// Changed while b runs for e2: e2 finishes with the old command, e3
	// runs with the new one: neither lost nor run twice.
	b2 := hook("b", rec, outB2)
	update(t, r, b2)
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitDone(t, r, "b", e3.Seq)
	e4 := publishEvent(bus, "e4", nil)
	waitDone(t, r, "b", e4.Seq)

	if ids := eventIDs(t, readLines(t, outA)); !slices.Equal(ids, []string{"e1", "e2", "e3"}) &&
		!slices.Equal(ids, []string{"e1", "e2"}) && !slices.Equal(ids, []string{"e1"}) {
		t.Fatalf("a got %v", ids)
	}
	if ids := eventIDs(t, readLines(t, outB)); !slices.Equal(ids, []string{"e2"}) {
		t.Fatalf("b (old settings) got %v, want [e2]", ids)
	}
	if ids := eventIDs(t, readLines(t, outB2)); !slices.Equal(ids, []string{"e3", "e4"}) {
		t.Fatalf("b (new settings) got %v, want [e3 e4]", ids)
	}
	if h, _ := statsOf(r, "b"); h.Runs != 3 {
		t.Fatalf("b's counters did not survive the change: %+v", h)
	}

	// The same settings again: nothing restarts.
	update(t, r, b2)
	e5 := publishEvent(bus, "e5", nil)
	waitDone(t, r, "b", e5.Seq)
	if ids := eventIDs(t, readLines(t, outB2)); !slices.Equal(ids, []string{"e3", "e4", "e5"}) {
		t.Fatalf("b got %v", ids)
	}

	_ = r.Close()
	if err := r.Update([]config.Hook{b2}); err != ErrClosed {
		t.Fatalf("Update after Close = %v, want ErrClosed", err)
	}
	_ = bus.Close()
	check()
}

func TestUpdateRefusesBadHooks(t *testing.T) {
	dir := t.TempDir()
	bus := openBus(t, events.Config{})
	r := newRunner(t, Config{Bus: bus, Dir: filepath.Join(dir, "hooks")})
	cmd := script(t, dir, "h.sh", `cat >> "$1"`)
	good := hook("good", cmd, filepath.Join(dir, "good"))
	badFilter := hook("bf", cmd, filepath.Join(dir, "bf"))
	badFilter.Filter = "data.id ="
	for _, tc := range []struct {
		name string
		h    config.Hook
		want string
	}{
		{"filter", badFilter, "hook bf: filter"},
		{"name", hook("../x", cmd), "not a valid hook name"},
		{"command", config.Hook{Name: "nocmd"}, "no command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Update([]config.Hook{good, tc.h})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Update = %v, want an error with %q", err, tc.want)
			}
			if _, ok := statsOf(r, "good"); !ok {
				t.Fatal("the good hook was not applied")
			}
		})
	}
	// A hook that ran keeps its settings when its new ones are refused.
	ok := hook("bf", cmd, filepath.Join(dir, "bf"))
	update(t, r, good, ok)
	if err := r.Update([]config.Hook{good, badFilter}); err == nil {
		t.Fatal("bad filter accepted")
	}
	e := publishEvent(bus, "x", nil)
	waitDone(t, r, "bf", e.Seq)
	if n := len(readLines(t, filepath.Join(dir, "bf"))); n != 1 {
		t.Fatalf("bf ran %d times, want 1", n)
	}
}

func TestRemovedHookFinishesItsRun(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	dir := t.TempDir()
	hooksDir := filepath.Join(dir, "hooks")
	bus := openBus(t, events.Config{})
	r := newRunner(t, Config{Bus: bus, Dir: hooksDir})
	out, gate := filepath.Join(dir, "out"), filepath.Join(dir, "gate")
	cmd := script(t, dir, "gated.sh", `while [ ! -e "$2" ]; do sleep 0.01; done; cat >> "$1"`)
	update(t, r, hook("h", cmd, out, gate))
	publishEvent(bus, "e1", nil)
	testutil.Eventually(t, waitLong, func() bool { s, _ := statsOf(r, "h"); return s.Running }, "h running")
	publishEvent(bus, "e2", nil)

	update(t, r) // removes h while it runs for e1
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitLong, func() bool {
		_, err := os.Stat(filepath.Join(hooksDir, "h.cursor"))
		return os.IsNotExist(err) && len(readLines(t, out)) == 1
	}, "the run for e1 finished and the cursor removed")
	_ = r.Close()
	if ids := eventIDs(t, readLines(t, out)); !slices.Equal(ids, []string{"e1"}) {
		t.Fatalf("removed hook ran for %v, want [e1] only", ids)
	}
	_ = bus.Close()
	check()
}
