package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"agent/internal/agenttest"
	"agent/monitor"
)

// cli runs the command line against the agent under root.
func cli(root string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(append([]string{"--root", root}, args...), &o, &e)
	return code, o.String(), e.String()
}

func TestStatusAndFilter(t *testing.T) {
	nodes := agenttest.StartCluster(t, 2, agenttest.Options{})
	root := nodes[0].Root
	code, out, errs := cli(root, "daemon", "status", "--filter", "monitor.nodes.n2.frozen")
	if code != 0 || strings.TrimSpace(out) != "0" {
		t.Fatalf("status --filter: %d %q %q", code, out, errs)
	}
	code, out, _ = cli(root, "daemon", "status", "--filter", "monitor.nodes.n2.status")
	if code != 0 || strings.TrimSpace(out) != `"idle"` {
		t.Fatalf("raw string value: %d %q", code, out)
	}
	code, out, _ = cli(root, "daemon", "status", "-o", "json")
	var doc map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc["monitor"] == nil {
		t.Fatalf("status -o json: %d %q", code, out)
	}
	code, out, _ = cli(root, "status")
	if code != 0 || !strings.Contains(out, "n1") || !strings.Contains(out, "n2") || !strings.Contains(out, "alive") {
		t.Fatalf("status table: %d\n%s", code, out)
	}
	code, _, errs = cli(root, "daemon", "status", "--filter", "monitor.nodes.n9")
	if code != 2 || !strings.Contains(errs, "no value at monitor.nodes.n9") {
		t.Fatalf("missing path: %d %q", code, errs)
	}
}

func TestNoAgentExits2(t *testing.T) {
	code, _, errs := cli(t.TempDir(), "status")
	if code != 2 || !strings.Contains(errs, "no agent answers") {
		t.Fatalf("no agent: %d %q", code, errs)
	}
	code, _, errs = cli(t.TempDir(), "wait", "--filter", "a=")
	if code != 2 || !strings.Contains(errs, "column 3") {
		t.Fatalf("bad filter: %d %q", code, errs)
	}
	code, _, errs = cli(t.TempDir(), "events", "--since", "yesterday")
	if code != 2 || !strings.Contains(errs, "--since") {
		t.Fatalf("bad --since: %d %q", code, errs)
	}
	code, _, _ = cli(t.TempDir(), "no-such-command")
	if code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
}

func TestWait(t *testing.T) {
	nodes := agenttest.StartCluster(t, 2, agenttest.Options{})
	root := nodes[0].Root

	// True at once.
	if code, out, errs := cli(root, "wait", "--filter", "monitor.nodes.n2.frozen=0", "--duration", "10s"); code != 0 {
		t.Fatalf("wait true at once: %d %q %q", code, out, errs)
	}
	// Timeout.
	code, out, _ := cli(root, "wait", "--filter", "monitor.nodes.n2.frozen!=0", "--duration", "200ms")
	if code != 1 || strings.TrimSpace(out) != "timeout" {
		t.Fatalf("wait timeout: %d %q", code, out)
	}
	// True later, because of a change on another node.
	var wg sync.WaitGroup
	var got int
	var gotOut, gotErr string
	wg.Add(1)
	go func() {
		defer wg.Done()
		got, gotOut, gotErr = cli(root, "wait", "--filter", "monitor.nodes.n2.labels.ready=yes", "--duration", "30s")
	}()
	// Let the wait subscribe before the change; a change before it would
	// make it true at once, which passes too, so this does not race.
	time.Sleep(100 * time.Millisecond)
	if _, _, err := nodes[1].Store().UpdateLocal("cli", func(d *monitor.NodeData) { d.Labels["ready"] = "yes" }); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got != 0 {
		t.Fatalf("wait for a remote change: %d %q %q", got, gotOut, gotErr)
	}
}

func TestFreezeThawRemoteAndEvents(t *testing.T) {
	nodes := agenttest.StartCluster(t, 2, agenttest.Options{})
	root := nodes[0].Root
	code, out, errs := cli(root, "node", "freeze", "--node", "n2")
	if code != 0 || strings.TrimSpace(out) != "n2 frozen" {
		t.Fatalf("freeze n2: %d %q %q", code, out, errs)
	}
	code, out, _ = cli(root, "node", "freeze")
	if code != 0 || strings.TrimSpace(out) != "n1 frozen" {
		t.Fatalf("freeze self: %d %q", code, out)
	}
	code, out, _ = cli(root, "node", "thaw", "--node", "n2")
	if code != 0 || strings.TrimSpace(out) != "n2 thawed" {
		t.Fatalf("thaw n2: %d %q", code, out)
	}
	code, _, errs = cli(root, "node", "freeze", "--node", "n7")
	if code != 2 || !strings.Contains(errs, "n7") {
		t.Fatalf("unknown node: %d %q", code, errs)
	}

	// The history holds the freeze events, in JSON and in text.
	code, out, errs = cli(root, "events", "--kind", "event", "--since", "1h", "--filter", "data.id~^node_(freeze|thaw)", "--limit", "3", "-o", "json", "--duration", "10s")
	if code != 0 {
		t.Fatalf("events: %d %q", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 freeze/thaw events, got:\n%s", out)
	}
	want := []struct{ id, reason, node string }{{"node_freeze", "peer", "n2"}, {"node_freeze", "cli", "n1"}, {"node_thaw", "peer", "n2"}}
	for i, line := range lines {
		var rec struct {
			Kind string `json:"kind"`
			Data struct{ ID, Reason, Node string }
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d is not a record: %v: %s", i, err, line)
		}
		got := struct{ id, reason, node string }{rec.Data.ID, rec.Data.Reason, rec.Data.Node}
		if rec.Kind != "event" || got != want[i] {
			t.Errorf("event %d = %s, want %+v", i, line, want[i])
		}
	}
	code, out, _ = cli(root, "events", "--kind", "patch", "--since", "1h", "--limit", "1", "--duration", "10s")
	if code != 0 || !strings.Contains(out, "patch") || !strings.Contains(out, "/monitor") {
		t.Fatalf("events text: %d %q", code, out)
	}
	// Nothing follows the snapshot on a quiet cluster: --duration ends the
	// tail, and a loaded machine may need longer than a quiet one to
	// connect and send it, so the duration grows until the snapshot comes.
	for _, d := range []string{"500ms", "2s", "8s", "30s"} {
		code, out, _ = cli(root, "events", "--snapshot", "--limit", "1", "-o", "json", "--duration", d, "--kind", "event")
		if code != 0 || strings.Contains(out, `"kind":"full"`) {
			break
		}
	}
	if code != 0 || !strings.Contains(out, `"kind":"full"`) {
		t.Fatalf("events --snapshot: %d %q", code, out)
	}
}

func TestEventsDurationEnds(t *testing.T) {
	nodes := agenttest.StartCluster(t, 1, agenttest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() {
		code, _, _ := cli(nodes[0].Root, "events", "--duration", "100ms")
		done <- code
	}()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("events --duration: exit %d", code)
		}
	case <-ctx.Done():
		t.Fatal("events --duration never ended")
	}
}

func TestEventsSinceZeroIsEverything(t *testing.T) {
	nodes := agenttest.StartCluster(t, 1, agenttest.Options{})
	code, out, errs := cli(nodes[0].Root, "events", "--since", "0", "--limit", "1", "-o", "json", "--duration", "10s")
	if code != 0 || !strings.Contains(out, `"seq":1,`) {
		t.Fatalf("--since 0: %d %q %q", code, out, errs)
	}
}
