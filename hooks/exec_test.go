package hooks

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"agent/events"
	"agent/internal/testutil"
)

func TestTimeoutKillsTheProcessGroup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		trap  string // the script's trap: with SIGTERM ignored, only SIGKILL ends the group
		child string // the child started in the background
	}{
		{"sigterm", "", "sleep 100"},
		{"sigkill", "trap '' TERM", "sleep 100"},
		// The script dies of SIGTERM, its child ignores it and keeps stdout
		// open: the group still gets SIGKILL once the script exited.
		{"child ignores sigterm", "", "(trap '' TERM; sleep 100; :)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := testutil.CheckGoroutines(t)
			dir := t.TempDir()
			bus := openBus(t, events.Config{})
			r := newRunner(t, Config{Bus: bus, KillGrace: 50 * time.Millisecond})
			pidFile, out := filepath.Join(dir, "pid"), filepath.Join(dir, "out")
			// On "hang" the script starts a child in its group that would
			// sleep for 100s, and waits for it. Without a trap of the case,
			// a SIGTERM that comes before the child's pid is written (a
			// loaded machine) is held until then, then takes effect.
			hold, release := "trap 'term=1' TERM", `trap - TERM
if [ -n "$term" ]; then kill -TERM $$; fi`
			if tc.trap != "" {
				hold, release = tc.trap, ""
			}
			cmd := script(t, dir, "h.sh", hold+`
if [ "$AGENT_EVENT_ID" = hang ]; then
	`+tc.child+` &
	echo $! > "$1.tmp" && mv "$1.tmp" "$1"
fi
`+release+`
if [ "$AGENT_EVENT_ID" = hang ]; then
	wait
	wait
fi
cat >> "$2"`)
			h := hook("h", cmd, pidFile, out)
			h.Timeout = 3 * time.Second
			update(t, r, h)

			publishEvent(bus, "hang", nil)
			next := publishEvent(bus, "next", nil)
			waitDone(t, r, "h", next.Seq)

			b, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatalf("the hanging run did not start its child: %v", err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, waitLong, func() bool { return testutil.ProcessGone(pid) },
				"the hook's child %d killed with its group", pid)
			if ids := eventIDs(t, readLines(t, out)); !slices.Equal(ids, []string{"next"}) {
				t.Fatalf("runs after the timeout: %v, want [next]", ids)
			}
			s, _ := statsOf(r, "h")
			if s.Runs != 2 || s.Timeouts != 1 || s.Failures != 1 {
				t.Fatalf("stats = %+v, want 2 runs, 1 timeout, 1 failure", s)
			}
			_ = r.Close()
			_ = bus.Close()
			check()
		})
	}
}

func TestFailuresAndOutputLimit(t *testing.T) {
	dir := t.TempDir()
	bus := openBus(t, events.Config{})
	r := newRunner(t, Config{Bus: bus, OutputLimit: 10})
	// Prints far more than the limit on both streams, then fails.
	cmd := script(t, dir, "h.sh", `i=0; while [ $i -lt 2000 ]; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); done; exit 3`)
	update(t, r, hook("fail", cmd), hook("missing", filepath.Join(dir, "does-not-exist")))
	rec := publishEvent(bus, "x", nil)
	waitDone(t, r, "fail", rec.Seq)
	waitDone(t, r, "missing", rec.Seq)
	if s, _ := statsOf(r, "fail"); s.Runs != 1 || s.Failures != 1 || s.Timeouts != 0 {
		t.Fatalf("fail stats = %+v", s)
	}
	if s, _ := statsOf(r, "missing"); s.Runs != 1 || s.Failures != 1 || s.DurationCount != 0 {
		t.Fatalf("missing stats = %+v", s)
	}

	res := r.runCommand(&spec{name: "x", command: []string{cmd}, timeout: waitLong}, rec, "x")
	if res.ExitCode != 3 || !res.Failed() {
		t.Fatalf("exit = %d, failed = %v", res.ExitCode, res.Failed())
	}
	if string(res.Stdout.Data) != "line 0\nlin" || string(res.Stderr.Data) != "err 0\nerr " || res.Stdout.Dropped == 0 {
		t.Fatalf("stdout %q stderr %q dropped %d", res.Stdout.Data, res.Stderr.Data, res.Stdout.Dropped)
	}
}

func TestCloseInterruptsARunWhichRunsAgain(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	dir := t.TempDir()
	journal, hooksDir := filepath.Join(dir, "journal"), filepath.Join(dir, "hooks")
	bus := openBus(t, events.Config{Dir: journal})
	r := newRunner(t, Config{Bus: bus, Dir: hooksDir, KillGrace: 50 * time.Millisecond})
	out, started := filepath.Join(dir, "out"), filepath.Join(dir, "started")
	// The first run of "slow" hangs; the one after a restart does not.
	cmd := script(t, dir, "h.sh", `
if [ "$AGENT_EVENT_ID" = slow ] && [ ! -e "$2" ]; then : > "$2"; sleep 100; fi
cat >> "$1"`)
	update(t, r, hook("h", cmd, out, started))
	first := publishEvent(bus, "fast", nil)
	publishEvent(bus, "slow", nil)
	testutil.Eventually(t, waitLong, func() bool { _, err := os.Stat(started); return err == nil },
		"the slow run started")
	_ = r.Close() // kills the slow run without waiting for its timeout
	c, err := readCursor(filepath.Join(hooksDir, "h.cursor"))
	if err != nil || c.Seq != first.Seq {
		t.Fatalf("cursor after Close = %+v, %v; want seq %d: the interrupted run is not done", c, err, first.Seq)
	}
	_ = bus.Close()

	bus = openBus(t, events.Config{Dir: journal})
	r = newRunner(t, Config{Bus: bus, Dir: hooksDir})
	update(t, r, hook("h", cmd, out, started))
	last := publishEvent(bus, "after", nil)
	waitDone(t, r, "h", last.Seq)
	if ids := eventIDs(t, readLines(t, out)); !slices.Equal(ids, []string{"fast", "slow", "after"}) {
		t.Fatalf("runs %v, want [fast slow after]", ids)
	}
	_ = r.Close()
	_ = bus.Close()
	check()
}
