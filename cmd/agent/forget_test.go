package main

import (
	"strings"
	"testing"
	"time"

	"agent/internal/agenttest"
	"agent/internal/testutil"
)

// TestNodeForget: agent node forget refuses a node that is not dead, this
// node itself and an unknown name (exit 2, one clear line), and removes a
// node that is gone: its data is dropped on every node (forget_peer reason
// cli) and the quorum's high-water mark counts it no more.
func TestNodeForget(t *testing.T) {
	nodes := agenttest.StartCluster(t, 3, agenttest.Options{Cluster: "quorum = true"})
	root := nodes[0].Root
	for _, n := range nodes[:2] {
		testutil.Eventually(t, 10*time.Second, func() bool {
			_, _, d := n.Store().Local()
			return d.Quorum.HWM == 3
		}, "%s: high-water mark never 3", n.Name())
	}
	for _, tc := range []struct{ node, want string }{
		{"n2", "cannot forget n2: node is not dead (alive here)"},
		{"n1", "n1 is this node"},
		{"n9", "unknown node: n9"},
	} {
		code, out, errs := cli(root, "node", "forget", tc.node)
		if code != 2 || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 || out != "" {
			t.Errorf("forget %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.node, code, out, errs, tc.want)
		}
	}
	nodes[2].Stop()
	// Left, or dead when the leave notice was lost (a loaded machine).
	if code, _, errs := cli(root, "wait", "--filter", `cluster.nodes.n3.state in ["left","dead"]`, "--duration", "60s"); code != 0 {
		t.Fatalf("n3 never seen gone: %q", errs)
	}
	if code, out, errs := cli(root, "node", "forget", "n3"); code != 0 || out != "n3 forgotten\n" {
		t.Fatalf("forget n3: %d %q %q", code, out, errs)
	}
	for _, n := range nodes[:2] {
		if code, _, errs := cli(n.Root, "wait", "--filter", "not monitor.nodes.n3 and monitor.nodes."+n.Name()+".quorum.hwm=2", "--duration", "60s"); code != 0 {
			_, doc, _ := cli(n.Root, "daemon", "status", "-o", "json")
			t.Fatalf("%s still holds n3 or counts it: %q\n%s", n.Name(), errs, doc)
		}
		code, out, _ := cli(n.Root, "events", "--kind", "event", "--since", "0", "--filter", "data.id=forget_peer and data.reason=cli and data.node=n3", "--limit", "1", "--duration", "10s")
		if code != 0 || !strings.Contains(out, "forget_peer") {
			t.Errorf("%s: no forget_peer cli for n3: %d %q", n.Name(), code, out)
		}
	}
}
