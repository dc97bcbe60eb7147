package triggers

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"agent/config"
	"agent/events"
	"agent/internal/testutil"
)

// waitLong bounds the waits of these tests: a hang, not a speed.
const waitLong = 30 * time.Second

// rig is a bus, a trigger runner on it, and a directory the test
// commands write to.
type rig struct {
	t      *testing.T
	root   string // state and output
	busDir string
	bus    *events.Bus
	r      *Runner
	cfg    Config
}

func newRig(t *testing.T) *rig {
	t.Helper()
	t.Cleanup(testutil.CheckGoroutines(t)) // runs after the rig's own cleanup
	root := t.TempDir()
	g := &rig{t: t, root: root, busDir: filepath.Join(root, "journal")}
	g.openBus()
	g.cfg = Config{
		Dir:          filepath.Join(root, "triggers"),
		Nodename:     "n1",
		Logger:       quietLog(),
		SyncInterval: 5 * time.Millisecond,
		RetryBase:    10 * time.Millisecond,
		RetryMax:     40 * time.Millisecond,
		KillGrace:    time.Second,
	}
	t.Cleanup(func() {
		if g.r != nil {
			g.r.Close()
		}
		if g.bus != nil {
			g.bus.Close()
		}
	})
	return g
}

func (g *rig) openBus() {
	g.t.Helper()
	b, err := events.Open(events.Config{Dir: g.busDir, Logger: quietLog()})
	if err != nil {
		g.t.Fatal(err)
	}
	g.bus = b
}

// start opens a runner with triggers.
func (g *rig) start(list ...config.Trigger) {
	g.t.Helper()
	cfg := g.cfg
	cfg.Bus = g.bus
	r, err := New(cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	g.r = r
	if err := r.Update(list); err != nil {
		g.t.Fatal(err)
	}
}

// stop closes the runner.
func (g *rig) stop() {
	g.t.Helper()
	if err := g.r.Close(); err != nil {
		g.t.Fatal(err)
	}
	g.r = nil
}

// emit publishes an event record and returns its line.
func (g *rig) emit(id string, kv ...string) []byte {
	d := map[string]string{"id": id}
	for i := 0; i+1 < len(kv); i += 2 {
		d[kv[i]] = kv[i+1]
	}
	data, _ := json.Marshal(d)
	return g.bus.Publish("n1", events.KindEvent, data).JSON()
}

// recorder is a trigger command that appends one JSON object per run to
// runs.jsonl: its environment and stdin. exit is its exit status, or
// "fail N" to fail the first N runs of each key.
func (g *rig) recorder(exit string) []string {
	script := filepath.Join(g.root, "rec.sh")
	text := `#!/bin/sh
in=$(cat | base64 -w0)
n=0
if [ -f "$DIR/tries" ]; then n=$(cat "$DIR/tries"); fi
printf '{"env":"%s","in":"%s"}\n' "$(env | sort | base64 -w0)" "$in" >> "$DIR/runs.jsonl"
case "$1" in
fail) n=$((n+1)); echo $n > "$DIR/tries"; [ $n -le "$2" ] && { echo "try $n failed" >&2; exit 3; } ;;
esac
exit 0
`
	text = strings.Replace(text, "$DIR", g.root, -1)
	if err := os.WriteFile(script, []byte(text), 0o700); err != nil {
		g.t.Fatal(err)
	}
	return append([]string{script}, strings.Fields(exit)...)
}

// run is one recorded command run.
type run struct {
	env   map[string]string
	stdin []byte
}

func (g *rig) runs() []run {
	b, err := os.ReadFile(filepath.Join(g.root, "runs.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		g.t.Fatal(err)
	}
	var out []run
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var raw struct{ Env, In string }
		if err := json.Unmarshal(line, &raw); err != nil {
			continue // a line being written
		}
		r := run{env: map[string]string{}, stdin: decode64(raw.In)}
		for _, kv := range strings.Split(string(decode64(raw.Env)), "\n") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				r.env[k] = v
			}
		}
		out = append(out, r)
	}
	return out
}

// waitRuns waits until n runs are recorded and returns them.
func (g *rig) waitRuns(n int) []run {
	g.t.Helper()
	var got []run
	testutil.Eventually(g.t, waitLong, func() bool { got = g.runs(); return len(got) >= n }, "%d runs", n)
	return got
}

// journal returns the events with an id prefix, in order.
func (g *rig) journal(prefix string) []map[string]any {
	g.t.Helper()
	sub, err := g.bus.Subscribe(events.SubscribeOptions{Resume: true, Since: 0, Epoch: epochOf(g.bus)})
	if err != nil {
		g.t.Fatal(err)
	}
	defer sub.Close()
	head, _ := g.bus.Position()
	var out []map[string]any
	for seq := sub.Start(); seq < head; {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		rec, err := sub.Next(ctx)
		cancel()
		if err != nil {
			g.t.Fatal(err)
		}
		seq = rec.Seq
		var d map[string]any
		if json.Unmarshal(rec.Data, &d) == nil {
			if id, _ := d["id"].(string); strings.HasPrefix(id, prefix) {
				out = append(out, d)
			}
		}
	}
	return out
}

func (g *rig) waitEvents(prefix string, n int) []map[string]any {
	g.t.Helper()
	var got []map[string]any
	testutil.Eventually(g.t, waitLong, func() bool { got = g.journal(prefix); return len(got) >= n }, "%d %s events", n, prefix)
	return got
}

func epochOf(b *events.Bus) string { _, e := b.Position(); return e }

func decode64(s string) []byte {
	var out bytes.Buffer
	dec := json.NewDecoder(strings.NewReader(`"` + s + `"`))
	var b []byte
	if dec.Decode(&b) != nil {
		return nil
	}
	out.Write(b)
	return out.Bytes()
}

func trig(name, match string, mod func(*config.Trigger)) config.Trigger {
	c := config.DefaultTrigger(name)
	c.Match = match
	if mod != nil {
		mod(&c)
	}
	return c
}

func TestRunnerFiresWithRecordsAndEnvironment(t *testing.T) {
	g := newRig(t)
	t.Setenv("AGENT_TOKEN", "secret")
	t.Setenv("NOTIFY_SOCKET", "/run/x")
	g.start(trig("flapping", `data.id in ["node_down","node_up"]`, func(c *config.Trigger) {
		c.Distinct = []string{"data.node"}
		c.Count = 4
		c.FireCommand = g.recorder("0")
	}))
	var want = map[string][]byte{}
	for i := range 8 {
		id := []string{"node_down", "node_up"}[i/2%2]
		for _, n := range []string{"n2", "n3"} {
			line := g.emit(id, "node", n)
			want[n] = append(append(want[n], line...), '\n')
		}
		g.emit("node_freeze", "node", "n2")
	}
	runs := g.waitRuns(4)
	sort.Slice(runs, func(i, j int) bool { return string(runs[i].stdin) < string(runs[j].stdin) })
	got := map[string][]byte{}
	for _, r := range runs {
		n := strings.TrimPrefix(r.env["AGENT_TRIGGER_KEY"], "data.node=")
		got[n] = append(got[n], r.stdin...)
		for k, v := range map[string]string{"AGENT_TRIGGER": "flapping", "AGENT_TRIGGER_OUTCOME": "fire", "AGENT_TRIGGER_COUNT": "4",
			"AGENT_TRIGGER_REASON": "count", "AGENT_NODENAME": "n1"} {
			if r.env[k] != v {
				t.Errorf("%s=%q, want %q", k, r.env[k], v)
			}
		}
		for _, k := range []string{"AGENT_TOKEN", "NOTIFY_SOCKET"} {
			if _, ok := r.env[k]; ok {
				t.Errorf("the command got %s", k)
			}
		}
		if lines := bytes.Count(r.stdin, []byte("\n")); lines != 4 {
			t.Errorf("stdin has %d lines, want 4", lines)
		}
	}
	for _, n := range []string{"n2", "n3"} {
		if !bytes.Equal(sortLines(got[n]), sortLines(want[n])) {
			t.Errorf("stdin of %s:\n%s\nwant (byte for byte, as agent events -o json prints them):\n%s", n, got[n], want[n])
		}
	}
	fires := g.waitEvents("trigger_fire", 4)
	f := fires[0]
	if f["trigger"] != "flapping" || f["count"] != 4.0 || f["reason"] != "count" || f["command"] != true ||
		!strings.HasPrefix(f["key"].(string), "data.node=") || f["first_seq"].(float64) >= f["last_seq"].(float64) {
		t.Errorf("trigger_fire %v", f)
	}
	testutil.Eventually(t, waitLong, func() bool {
		st := g.r.Stats()
		return len(st.Triggers) == 1 && st.Triggers[0].Fires == 4 && st.Triggers[0].Runs == 4 && st.Triggers[0].Pending == 0
	}, "4 fires, 4 runs: %+v", func() any { return g.r.Stats() })
	g.stop()
}

// sortLines orders a run's lines so two streams' outputs compare whatever
// the order of the runs.
func sortLines(b []byte) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	sort.Strings(lines)
	return []byte(strings.Join(lines, ""))
}

func TestRunnerExpiresAndList(t *testing.T) {
	g := newRig(t)
	g.start(trig("no-up", `data.id=instance_start or (data.id=instance_status_change and data.avail=up)`, func(c *config.Trigger) {
		c.Distinct = []string{"data.svcname"}
		c.Count = 2
		c.FireWhen = "data.id=instance_status_change"
		c.Window = 300 * time.Millisecond
		c.ExpireCommand = g.recorder("0")
	}))
	g.emit("instance_start", "svcname", "web")
	g.emit("instance_status_change", "svcname", "web", "avail", "up")
	start := g.emit("instance_start", "svcname", "db")
	var list []Listed
	testutil.Eventually(t, waitLong, func() bool {
		var err error
		list, err = g.r.List(context.Background())
		return err == nil && len(list) == 1 && list[0].Fires == 1 && len(list[0].Open) == 1
	}, "one fire and one open stream: %v", func() any { return list })
	if s := list[0].Open[0]; s.Key != "data.svcname=db" || s.Count != 1 || list[0].FireWhen != "data.id=instance_status_change" || list[0].Count != 2 {
		t.Errorf("listed %+v", list[0])
	}
	runs := g.waitRuns(1)
	if runs[0].env["AGENT_TRIGGER_OUTCOME"] != "expire" || runs[0].env["AGENT_TRIGGER_KEY"] != "data.svcname=db" ||
		!bytes.Equal(runs[0].stdin, append(start, '\n')) {
		t.Errorf("expiry run: %v %q", runs[0].env, runs[0].stdin)
	}
	exp := g.waitEvents("trigger_expire", 1)
	if exp[0]["reason"] != "window" || exp[0]["key"] != "data.svcname=db" {
		t.Errorf("trigger_expire %v", exp[0])
	}
	if fires := g.journal("trigger_fire"); len(fires) != 1 || fires[0]["command"] != false {
		t.Errorf("trigger_fire events %v: want one, without a command", fires)
	}
	if n := len(g.runs()); n != 1 {
		t.Errorf("%d runs: a fire without fire_command ran something", n)
	}
	g.stop()
}

func TestRunnerRetries(t *testing.T) {
	g := newRig(t)
	g.start(trig("r", "data.id=x", func(c *config.Trigger) {
		c.FireCommand = g.recorder("fail 2")
		c.Retries = 3
	}))
	g.emit("x")
	runs := g.waitRuns(3)
	if runs[2].env["AGENT_TRIGGER_ATTEMPT"] != "3" {
		t.Errorf("attempt %q", runs[2].env["AGENT_TRIGGER_ATTEMPT"])
	}
	testutil.Eventually(t, waitLong, func() bool {
		st := g.r.Stats()
		return st.Triggers[0].Runs == 3 && st.Triggers[0].RunFailures == 2 && st.Triggers[0].Pending == 0
	}, "3 runs, 2 failed: %v", func() any { return g.r.Stats() })
	if f := g.journal("trigger_failed"); len(f) != 0 {
		t.Errorf("trigger_failed after a success: %v", f)
	}

	// Retries spent: trigger_failed with the error.
	os.Remove(filepath.Join(g.root, "tries"))
	g.r.Update([]config.Trigger{trig("r", "data.id=x", func(c *config.Trigger) {
		c.FireCommand = g.recorder("fail 9")
		c.Retries = 1
	})})
	testutil.Eventually(t, waitLong, func() bool { l, _ := g.r.List(context.Background()); return len(l) == 1 }, "reloaded")
	g.emit("x")
	failed := g.waitEvents("trigger_failed", 1)
	if failed[0]["trigger"] != "r" || failed[0]["attempts"] != 2.0 || !strings.Contains(failed[0]["error"].(string), "exit status 3: try 2 failed") {
		t.Errorf("trigger_failed %v", failed[0])
	}
	g.stop()
}

// TestRunnerRestart: an open stream survives a restart and fires with the
// events from before; an expiry that fell due while the runner was stopped
// runs at start; a command interrupted by the stop runs again.
func TestRunnerRestart(t *testing.T) {
	g := newRig(t)
	flap := trig("flap", "data.id=node_down", func(c *config.Trigger) {
		c.Distinct = []string{"data.node"}
		c.Count = 3
		c.FireCommand = g.recorder("0")
	})
	win := trig("win", "data.id=instance_start", func(c *config.Trigger) {
		c.Count = 5
		c.Window = 400 * time.Millisecond
		c.ExpireCommand = g.recorder("0")
	})
	g.start(flap, win)
	var want []byte
	for range 2 {
		want = append(append(want, g.emit("node_down", "node", "n2")...), '\n')
	}
	start := g.emit("instance_start")
	testutil.Eventually(t, waitLong, func() bool {
		l, _ := g.r.List(context.Background())
		return len(l) == 2 && len(l[0].Open) == 1 && l[0].Open[0].Count == 2 && len(l[1].Open) == 1
	}, "two streams open")
	g.stop()
	g.bus.Close()
	time.Sleep(500 * time.Millisecond) // the window of "win" ends while stopped
	g.openBus()
	g.start(flap, win)

	runs := g.waitRuns(1)
	if runs[0].env["AGENT_TRIGGER"] != "win" || runs[0].env["AGENT_TRIGGER_OUTCOME"] != "expire" || !bytes.Equal(runs[0].stdin, append(start, '\n')) {
		t.Fatalf("at start: %v %q, want win's expiry", runs[0].env, runs[0].stdin)
	}
	want = append(append(want, g.emit("node_down", "node", "n2")...), '\n')
	runs = g.waitRuns(2)
	if !bytes.Equal(runs[1].stdin, want) || runs[1].env["AGENT_TRIGGER_COUNT"] != "3" {
		t.Fatalf("fire after the restart: %q, want %q", runs[1].stdin, want)
	}
	g.stop()
	if n := len(g.runs()); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
}

// TestRunnerInterruptedCommandRunsAgain: a command still running when the
// runner stops is terminated and runs again at the next start.
func TestRunnerInterruptedCommandRunsAgain(t *testing.T) {
	g := newRig(t)
	marker := filepath.Join(g.root, "started")
	slow := trig("slow", "data.id=x", func(c *config.Trigger) {
		// Long the first time, short the second.
		c.FireCommand = []string{"/bin/sh", "-c", "echo run >> " + marker + "; [ $(wc -l < " + marker + ") -gt 1 ] || sleep 30"}
		c.Timeout = time.Minute
	})
	g.start(slow)
	g.emit("x")
	testutil.Eventually(t, waitLong, func() bool { b, _ := os.ReadFile(marker); return len(b) > 0 }, "the command started")
	g.stop()
	g.start(slow)
	testutil.Eventually(t, waitLong, func() bool { b, _ := os.ReadFile(marker); return bytes.Count(b, []byte("run")) == 2 }, "the command ran again")
	// Its end is committed with no record read since the start: the
	// position kept is still the one resumed from.
	testutil.Eventually(t, waitLong, func() bool { return g.r.Stats().Triggers[0].Pending == 0 }, "the run never ended")
	g.stop()
	g.start(slow)
	g.emit("y")
	testutil.Eventually(t, waitLong, func() bool { head, _ := g.bus.Position(); return g.r.Stats().Seq == head }, "caught up")
	g.stop()
	if b, _ := os.ReadFile(marker); bytes.Count(b, []byte("run")) != 2 {
		t.Errorf("runs: %q, want 2", b)
	}
	if n := len(g.journal("trigger_fire")); n != 1 {
		t.Errorf("%d trigger_fire events, want 1 (published once)", n)
	}
	if s := g.journal("trigger_skipped"); len(s) != 0 {
		t.Errorf("a loss reported: %v", s)
	}
}

func TestRunnerReloadClosesOnMatchChange(t *testing.T) {
	g := newRig(t)
	g.start(trig("t", "data.id=a", func(c *config.Trigger) { c.Count = 5; c.ExpireCommand = g.recorder("0") }))
	g.emit("a")
	g.emit("a")
	testutil.Eventually(t, waitLong, func() bool {
		l, _ := g.r.List(context.Background())
		return len(l[0].Open) == 1 && l[0].Open[0].Count == 2
	}, "open")
	if err := g.r.Update([]config.Trigger{trig("t", "data.id=b", func(c *config.Trigger) { c.Count = 5; c.ExpireCommand = g.recorder("0") })}); err != nil {
		t.Fatal(err)
	}
	runs := g.waitRuns(1)
	if runs[0].env["AGENT_TRIGGER_REASON"] != "reload" || runs[0].env["AGENT_TRIGGER_COUNT"] != "2" {
		t.Errorf("reload run %v", runs[0].env)
	}
	exp := g.waitEvents("trigger_expire", 1)
	if exp[0]["reason"] != "reload" {
		t.Errorf("trigger_expire %v", exp[0])
	}
	g.stop()
}

// TestRunnerReportsLoss: a cursor the journal no longer has (here, a new
// journal: another epoch) is a loss: trigger_skipped, and the open
// streams say they may miss events.
func TestRunnerReportsLoss(t *testing.T) {
	g := newRig(t)
	tr := trig("t", "data.id=a", func(c *config.Trigger) { c.Count = 2; c.FireCommand = g.recorder("0") })
	g.start(tr)
	g.emit("a")
	testutil.Eventually(t, waitLong, func() bool { l, _ := g.r.List(context.Background()); return len(l[0].Open) == 1 }, "open")
	g.stop()
	g.bus.Close()
	g.busDir = filepath.Join(g.root, "journal2") // the journal is lost
	g.openBus()
	g.start(tr)
	skipped := g.waitEvents("trigger_skipped", 1)
	if skipped[0]["reason"] != "epoch" {
		t.Errorf("trigger_skipped %v", skipped[0])
	}
	g.emit("a")
	runs := g.waitRuns(1)
	if runs[0].env["AGENT_TRIGGER_LOST"] != "1" {
		t.Errorf("the stream that was open across the loss: %v", runs[0].env)
	}
	g.stop()
}

// TestRunnerNothingToRun: without triggers nor state, nothing runs and no
// file is written.
func TestRunnerNothingToRun(t *testing.T) {
	g := newRig(t)
	g.start()
	if l, err := g.r.List(context.Background()); err != nil || len(l) != 0 {
		t.Fatalf("list %v %v", l, err)
	}
	g.stop()
	if _, err := os.Stat(filepath.Join(g.cfg.Dir, StateFile)); !os.IsNotExist(err) {
		t.Fatalf("state file: %v", err)
	}
}

// TestRunnerConcurrentUse: List, Stats and Update from several goroutines
// while records flow.
func TestRunnerConcurrentUse(t *testing.T) {
	g := newRig(t)
	g.start(trig("t", "data.id=a", func(c *config.Trigger) { c.Count = 3; c.FireCommand = []string{"/bin/true"} }))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				switch (i + j) % 3 {
				case 0:
					g.r.List(context.Background())
				case 1:
					g.r.Stats()
				case 2:
					g.r.Update([]config.Trigger{trig("t", "data.id=a", func(c *config.Trigger) {
						c.Count = 3 + j%2
						c.FireCommand = []string{"/bin/true"}
					})})
				}
				g.emit("a")
			}
		}()
	}
	wg.Wait()
	g.stop()
}
