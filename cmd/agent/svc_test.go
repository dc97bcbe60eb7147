package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agent/internal/agenttest"
	"agent/internal/testutil"
)

// TestServiceFailover runs a failover service whose commands keep a state
// file per node: it starts on n1 (first of nodes), follows orders with
// --wait, does not fail over when n1's agent leaves with web running, and
// fails over to n2 once n1 is forgotten.
func TestServiceFailover(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "web.%s")
	byNode := map[string]map[string]string{}
	for _, n := range []string{"n1", "n2", "n3"} {
		// Each node's commands keep their own state file.
		byNode[n] = map[string]string{"web": fmt.Sprintf(`[service]
nodes = n1 n2 n3
topology = failover
check = /bin/sh -c "test -f %[1]s"
start = /bin/sh -c "touch %[1]s"
stop = /bin/sh -c "rm -f %[1]s"
check_interval = 100ms
timeout = 5s
`, fmt.Sprintf(state, n))}
	}
	nodes := agenttest.StartCluster(t, 3, agenttest.Options{ServicesByNode: byNode})
	up := func(n string) bool {
		_, err := os.Stat(fmt.Sprintf(state, n))
		return err == nil
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return up("n1") }, "web never started on n1")
	root := nodes[2].Root
	// n3 must see it up before it is asked to stop it.
	if code, _, errs := cli(root, "wait", "--filter", "monitor.services.web.avail=up", "--duration", "30s"); code != 0 {
		t.Fatalf("n3 never saw web up: %d %q", code, errs)
	}
	if code, out, errs := cli(root, "svc", "stop", "web", "--wait", "--duration", "30s"); code != 0 || up("n1") {
		_, ev, _ := cli(nodes[0].Root, "events", "--since", "0", "--duration", "1s", "-o", "json")
		t.Fatalf("svc stop --wait: %d %q %q, n1 up %v; n1's records:\n%s", code, out, errs, up("n1"), ev)
	}
	if code, out, errs := cli(root, "svc", "start", "web", "--wait", "--duration", "30s"); code != 0 || !up("n1") {
		t.Fatalf("svc start --wait: %d %q %q", code, out, errs)
	}
	code, out, _ := cli(root, "svc", "ls")
	if code != 0 || !strings.Contains(out, "up^") {
		t.Fatalf("svc ls: %d\n%s", code, out)
	}
	if code, _, errs := cli(root, "svc", "start", "nosuch"); code != 2 || !strings.Contains(errs, "no service nosuch") {
		t.Fatalf("unknown service: %d %q", code, errs)
	}

	// n1's agent stops gracefully: its service keeps running there, so
	// nothing fails over, and the others say why.
	nodes[0].Stop()
	if code, out, _ := cli(nodes[1].Root, "events", "--kind", "event", "--since", "1h", "--filter", "data.id=failover_blocked and data.left=n1", "--limit", "1", "--duration", "30s"); code != 0 || !strings.Contains(out, "failover_blocked") {
		t.Fatalf("no failover_blocked on n2: %d %q", code, out)
	}
	if code, _, errs := cli(nodes[1].Root, "wait", "--filter", "monitor.nodes.n3.services.web.monitor.left_running.n1", "--duration", "30s"); code != 0 {
		t.Fatalf("n3 does not hold n1 as left running: %q", errs)
	}
	if up("n2") || up("n3") {
		t.Fatal("web failed over while it still runs on the node that left")
	}
	// The operator stops it there and forgets n1: it fails over.
	if err := os.Remove(fmt.Sprintf(state, "n1")); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := cli(nodes[1].Root, "node", "forget", "n1"); code != 0 {
		t.Fatalf("node forget n1: %d %q %q", code, out, errs)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return up("n2") }, "web never failed over to n2")
	if up("n3") {
		_, ev, _ := cli(nodes[2].Root, "events", "--kind", "event", "--since", "1h", "--duration", "1s")
		t.Fatalf("web up on n3 too; n3's events:\n%s", ev)
	}
	if code, out, _ := cli(nodes[1].Root, "events", "--kind", "event", "--since", "1h", "--filter", "data.id=instance_start and data.reason=failover", "--limit", "1", "--duration", "10s"); code != 0 || !strings.Contains(out, "instance_start") {
		t.Fatalf("no instance_start failover event on n2: %d %q", code, out)
	}
}
