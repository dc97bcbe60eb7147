package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// trigTimeout bounds the waits of the trigger tests: a hang, not a speed.
const trigTimeout = 60 * time.Second

// triggerRecorder is a trigger command that appends, per run, a header
// line "== OUTCOME KEY COUNT" and then its stdin to the file out.
func triggerRecorder(out string) string {
	return fmt.Sprintf(`/bin/sh -c 'echo "== $AGENT_TRIGGER_OUTCOME $AGENT_TRIGGER_KEY $AGENT_TRIGGER_COUNT" >> %[1]s; cat >> %[1]s'`, out)
}

// triggerRun is one run read back from a recorder's file.
type triggerRun struct {
	header string
	lines  []string
}

func triggerRuns(t testing.TB, path string) []triggerRun {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var runs []triggerRun
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if strings.HasPrefix(l, "== ") {
			runs = append(runs, triggerRun{header: strings.TrimPrefix(l, "== ")})
		} else if len(runs) > 0 && l != "" {
			runs[len(runs)-1].lines = append(runs[len(runs)-1].lines, l)
		}
	}
	return runs
}

// waitTriggerRuns waits until the file holds n runs, each complete (its
// header's count of lines), and returns them.
func waitTriggerRuns(t testing.TB, path string, n int) []triggerRun {
	t.Helper()
	deadline := time.Now().Add(trigTimeout)
	for {
		runs := triggerRuns(t, path)
		complete := len(runs) >= n
		for _, r := range runs {
			f := strings.Fields(r.header)
			complete = complete && len(f) > 0 && f[len(f)-1] == fmt.Sprint(len(r.lines))
		}
		if complete {
			return runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d complete runs within %v, want %d: %+v", path, len(runs), trigTimeout, n, runs)
		}
		time.Sleep(pollEvery)
	}
}

// eventLines returns the event records of n's journal as `agent events -o
// json` prints them, by seq.
func (n *node) eventLines() map[uint64]string {
	n.c.t.Helper()
	out := n.mustCLI("events", "--since", "0", "--kind", "event", "-o", "json", "--duration", "1s")
	lines := map[uint64]string{}
	for _, l := range strings.Split(out, "\n") {
		var r record
		if l != "" && json.Unmarshal([]byte(l), &r) == nil {
			lines[r.Seq] = l
		}
	}
	return lines
}

// checkVerbatim fails unless every line is a record of n's journal, byte
// for byte as `agent events -o json` prints it.
func checkVerbatim(t testing.TB, n *node, lines []string) {
	t.Helper()
	journal := n.eventLines()
	for _, l := range lines {
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("stdin line is not a record: %q", l)
		}
		if journal[r.Seq] != l {
			t.Fatalf("stdin line differs from agent events -o json:\n got %s\nwant %s", l, journal[r.Seq])
		}
	}
}

// listedTrigger is the part of `agent trigger ls -o json` the tests read.
type listedTrigger struct {
	Name string `json:"name"`
	Open []struct {
		Key              string  `json:"key"`
		Count            int     `json:"count"`
		ExpiresInSeconds float64 `json:"expires_in_seconds"`
	} `json:"open"`
	Fires uint64 `json:"fires"`
}

func (n *node) triggerList() []listedTrigger {
	n.c.t.Helper()
	var l []listedTrigger
	if err := json.Unmarshal([]byte(n.mustCLI("trigger", "ls", "-o", "json")), &l); err != nil {
		n.c.t.Fatalf("trigger ls -o json: %v", err)
	}
	return l
}

// waitOpen waits until n's trigger holds a stream with key and count
// events, and returns its expires_in_seconds.
func (n *node) waitOpen(trigger, key string, count int) float64 {
	n.c.t.Helper()
	deadline := time.Now().Add(trigTimeout)
	for {
		for _, tr := range n.triggerList() {
			for _, s := range tr.Open {
				if tr.Name == trigger && s.Key == key && s.Count == count {
					return s.ExpiresInSeconds
				}
			}
		}
		if time.Now().After(deadline) {
			n.c.t.Fatalf("%s: no open stream %s [%s] with %d events within %v: %+v", n.name, trigger, key, count, trigTimeout, n.triggerList())
		}
		time.Sleep(pollEvery)
	}
}

// TestTriggerFlappingFiresOncePerFourEventsPerNode: on n1, a flapping
// trigger over real node_down/node_up events (n2 and n3 killed and
// restarted twice) fires once for each of them, with its four records. n4
// stays up: its confirmations keep failure detection short. The cluster
// runs the default lan profile: with the harness's local one (1 s probes,
// confirmations awaited), seeing two nodes dead took up to 20 s a cycle
// under load, which alone used up the trigger tests' CI budget.
func TestTriggerFlappingFiresOncePerFourEventsPerNode(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 4, Profile: "lan", Extra: func(n *node) string {
		return fmt.Sprintf("[trigger#flapping]\nmatch = data.id in [\"node_down\",\"node_up\"]\ndistinct = data.node\ncount = 4\nwindow = 10m\nfire_command = %s\n",
			triggerRecorder(filepath.Join(n.root, "flapping.out")))
	}})
	n1 := c.node(1)
	out := filepath.Join(n1.root, "flapping.out")
	flapping := c.nodes[1:3]
	for _, n := range c.nodes[1:] {
		n1.waitFor("cluster.nodes."+n.name+".state=alive", trigTimeout)
	}
	start := time.Now()
	for i := range 2 {
		t.Logf("cycle %d at %v", i+1, time.Since(start).Round(time.Millisecond))
		for _, n := range flapping {
			n.signal(syscall.SIGKILL)
			n.wait()
		}
		for _, n := range flapping {
			n1.waitFor("cluster.nodes."+n.name+".state=dead", trigTimeout)
		}
		t.Logf("down seen at %v", time.Since(start).Round(time.Millisecond))
		for _, n := range flapping {
			n.restart()
		}
		for _, n := range flapping {
			n1.waitFor("cluster.nodes."+n.name+".state=alive", trigTimeout)
		}
	}
	t.Logf("up seen at %v", time.Since(start).Round(time.Millisecond))
	runs := waitTriggerRuns(t, out, 2)
	keys := map[string]bool{}
	for _, r := range runs {
		f := strings.Fields(r.header)
		if len(f) != 3 || f[0] != "fire" || f[2] != "4" || len(r.lines) != 4 {
			t.Fatalf("run %q with %d lines, want a fire of 4", r.header, len(r.lines))
		}
		keys[f[1]] = true
		var ids []string
		for _, l := range r.lines {
			var rec record
			json.Unmarshal([]byte(l), &rec)
			if rec.Data["node"] != strings.TrimPrefix(f[1], "data.node=") {
				t.Errorf("run %s holds an event of node %v", f[1], rec.Data["node"])
			}
			ids = append(ids, fmt.Sprint(rec.Data["id"]))
		}
		if strings.Join(ids, " ") != "node_down node_up node_down node_up" {
			t.Errorf("run %s: events %v", f[1], ids)
		}
		checkVerbatim(t, n1, r.lines)
	}
	if !keys["data.node=n2"] || !keys["data.node=n3"] || len(runs) != 2 {
		t.Fatalf("runs %v, want one fire per node", keys)
	}
	// The fires were published; no other run happened.
	fires := 0
	for _, r := range n1.journalEvents() {
		if r.Data["id"] == "trigger_fire" {
			fires++
		}
	}
	if fires != 2 {
		t.Errorf("%d trigger_fire events, want 2", fires)
	}
	time.Sleep(500 * time.Millisecond)
	if got := len(triggerRuns(t, out)); got != 2 {
		t.Errorf("%d runs, want 2", got)
	}
}

// TestTriggerStreamSurvivesKill: an open stream survives kill -9 and fires
// with the events from before the crash.
func TestTriggerStreamSurvivesKill(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1, Extra: func(n *node) string {
		return fmt.Sprintf("[trigger#orders]\nmatch = data.id in [\"node_freeze\",\"node_thaw\"]\ndistinct = data.node\ncount = 4\nfire_command = %s\n",
			triggerRecorder(filepath.Join(n.root, "orders.out")))
	}})
	n := c.node(1)
	out := filepath.Join(n.root, "orders.out")
	postOrder(t, n, "freeze")
	postOrder(t, n, "thaw")
	n.waitOpen("orders", "data.node=n1", 2)
	before := n.eventLines()
	text := n.mustCLI("trigger", "ls")
	if !strings.Contains(text, "data.node=n1") || !strings.Contains(text, "orders") {
		t.Errorf("trigger ls:\n%s", text)
	}

	n.signal(syscall.SIGKILL)
	n.wait()
	n.restart()
	n.waitOpen("orders", "data.node=n1", 2)
	postOrder(t, n, "freeze")
	postOrder(t, n, "thaw")

	runs := waitTriggerRuns(t, out, 1)
	r := runs[0]
	if r.header != "fire data.node=n1 4" || len(r.lines) != 4 {
		t.Fatalf("run %q with %d lines", r.header, len(r.lines))
	}
	for _, l := range r.lines[:2] {
		found := false
		for _, b := range before {
			found = found || b == l
		}
		if !found {
			t.Errorf("the first events are not the ones from before the crash: %s", l)
		}
	}
	checkVerbatim(t, n, r.lines)
	time.Sleep(500 * time.Millisecond)
	if got := len(triggerRuns(t, out)); got != 1 {
		t.Errorf("%d runs, want 1", got)
	}
}

// TestTriggerExpiryDuringDowntimeRunsAtStart: a stream whose window ends
// while the agent is stopped expires at start, and its expire_command
// runs with its events.
func TestTriggerExpiryDuringDowntimeRunsAtStart(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1, Extra: func(n *node) string {
		// The node restarts frozen, with a node_freeze reason boot: not
		// this trigger's.
		return fmt.Sprintf("[trigger#freeze-stuck]\nmatch = data.id=node_freeze and data.reason!=boot\ncount = 5\nwindow = 3s\nexpire_command = %s\n",
			triggerRecorder(filepath.Join(n.root, "stuck.out")))
	}})
	n := c.node(1)
	out := filepath.Join(n.root, "stuck.out")
	postOrder(t, n, "freeze")
	left := n.waitOpen("freeze-stuck", "", 1)
	n.signal(syscall.SIGKILL)
	n.wait()
	// Stay stopped past the end of the window.
	time.Sleep(time.Duration(left*float64(time.Second)) + 500*time.Millisecond)
	if runs := triggerRuns(t, out); len(runs) != 0 {
		t.Fatalf("ran before the restart: %+v", runs)
	}
	n.restart()
	runs := waitTriggerRuns(t, out, 1)
	if runs[0].header != "expire  1" || len(runs[0].lines) != 1 {
		t.Fatalf("run %q %v, want an expiry with the freeze", runs[0].header, runs[0].lines)
	}
	var rec record
	json.Unmarshal([]byte(runs[0].lines[0]), &rec)
	if rec.Data["id"] != "node_freeze" {
		t.Fatalf("stdin %s", runs[0].lines[0])
	}
	checkVerbatim(t, n, runs[0].lines)
	exp := 0
	for _, r := range n.journalEvents() {
		if r.Data["id"] == "trigger_expire" && r.Data["reason"] == "window" {
			exp++
		}
	}
	if exp != 1 {
		t.Errorf("%d trigger_expire events, want 1", exp)
	}
	if l := n.triggerList(); len(l) != 1 || len(l[0].Open) != 0 {
		t.Errorf("trigger ls after the expiry: %+v", l)
	}
}
