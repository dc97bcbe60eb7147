package heartbeat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agent/internal/faultnet"
	"agent/internal/testutil"
	"agent/monitor"
)

// TestPartitionOutlastsForget: a split lasts past ForgetAfter (each side
// drops the other's data) and past memberlist's GossipToTheDeadTime (it
// no longer talks to the other side at all). Once healed, the reconnect
// set makes the cluster one again, with identical data.
func TestPartitionOutlastsForget(t *testing.T) {
	fn := faultnet.New(faultSeed(t), faultnet.Options{})
	defer fn.Close()
	nodes := startCluster(t, 4, onNetwork(fn, func(c *Config) { c.ForgetAfter = 300 * time.Millisecond }))
	fn.Partition([]string{"n1", "n2"}, []string{"n3", "n4"})
	gone := func(n *testNode, peers ...string) bool {
		for _, p := range peers {
			if _, held := n.store.Node(p); held {
				return false
			}
			for _, m := range n.hb.Memberlist().Members() {
				if m.Name == p {
					return false
				}
			}
		}
		return true
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return gone(nodes[0], "n3", "n4") && gone(nodes[3], "n1", "n2")
	}, "the sides never forgot each other")
	_, _, _ = nodes[0].store.UpdateLocal("cli", func(d *monitor.NodeData) { d.Labels["side"] = "a" })
	_, _, _ = nodes[3].store.UpdateLocal("cli", func(d *monitor.NodeData) { d.Labels["side"] = "b" })
	fn.Heal()
	testutil.Eventually(t, 30*time.Second, func() bool { return oneCluster(nodes) },
		"not one cluster after the heal:%s", func() any { return views(nodes) })
}

// TestLeftPeerNotRetried: a peer that left gracefully leaves the
// reconnect set; a dead one stays in it.
func TestLeftPeerNotRetried(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leaveSeen(t, nodes, 2)
	nodes[2].kill()
	nodes[1].kill()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return nodes[0].store.Members()["n2"].State == monitor.StateDead
	}, "n1 never saw n2 dead")
	n1 := nodes[0].hb
	n1.mu.Lock()
	_, n2 := n1.known.peers["n2"]
	_, n3 := n1.known.peers["n3"]
	n1.mu.Unlock()
	if !n2 || n3 {
		t.Fatalf("reconnect set: dead n2 there %v (want true), left n3 there %v (want false)", n2, n3)
	}
}

func TestForget(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	n1 := nodes[0]
	if err := n1.hb.Forget("n2"); !errors.Is(err, ErrNotDead) {
		t.Errorf("Forget(alive n2) = %v, want ErrNotDead", err)
	}
	if err := n1.hb.Forget("n1"); !errors.Is(err, ErrNotDead) {
		t.Errorf("Forget(self) = %v, want ErrNotDead", err)
	}
	if err := n1.hb.Forget("nosuch"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("Forget(nosuch) = %v, want ErrUnknownNode", err)
	}
	nodes[2].kill()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return n1.store.Members()["n3"].State == monitor.StateDead
	}, "n1 never saw n3 dead")
	if err := n1.hb.Forget("n3"); err != nil {
		t.Fatalf("Forget(dead n3) = %v", err)
	}
	if _, held := n1.store.Node("n3"); held {
		t.Error("n3's data kept")
	}
	if _, member := n1.store.Members()["n3"]; member {
		t.Error("n3 still in cluster.nodes")
	}
	n1.hb.mu.Lock()
	_, known := n1.hb.known.peers["n3"]
	n1.hb.mu.Unlock()
	if known {
		t.Error("n3 still in the reconnect set")
	}
	if ids := fmt.Sprint(n1.bus.eventIDs()); !strings.Contains(ids, "forget_peer:n3") {
		t.Errorf("no forget_peer event: %s", ids)
	}
}

// TestRestartFindsPeersFromFile: n1 restarts without seeds and the others
// have forgotten it (they will not look for it): it finds them from the
// reconnect set it kept in its file.
func TestRestartFindsPeersFromFile(t *testing.T) {
	fn := faultnet.New(faultSeed(t), faultnet.Options{})
	defer fn.Close()
	dir := t.TempDir()
	files := func(c *Config) { c.PeersFile = filepath.Join(dir, c.Name+".json") }
	nodes := startCluster(t, 3, onNetwork(fn, files))
	n1 := nodes[0]
	testutil.Eventually(t, 10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "n1.json"))
		return strings.Contains(string(b), `"n2"`) && strings.Contains(string(b), `"n3"`)
	}, "n1's reconnect set never saved with n2 and n3")
	n1.kill()
	for _, n := range nodes[1:] {
		testutil.Eventually(t, 10*time.Second, func() bool {
			return n.store.Members()["n1"].State == monitor.StateDead
		}, "%s never saw n1 dead", n.name)
		if err := n.hb.Forget("n1"); err != nil {
			t.Fatal(err)
		}
	}
	back := startNode(t, "n1", 0, nil, onNetwork(fn, files))
	t.Cleanup(back.kill)
	nodes[0] = back
	waitConverged(t, nodes)
}

func TestReconnectSetBounds(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := loadReconnectSet("", 3, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		s.seen(fmt.Sprint("p", i), fmt.Sprintf("10.0.0.%d:1", i), now.Add(time.Duration(i)*time.Minute))
	}
	if len(s.peers) != 3 {
		t.Fatalf("%d entries, bound 3", len(s.peers))
	}
	for _, old := range []string{"p0", "p1"} {
		if _, ok := s.peers[old]; ok {
			t.Errorf("%s, seen longest ago, kept over a newer one", old)
		}
	}
	s.died("p2", "10.0.0.2:1", now.Add(time.Hour))
	if p := s.peers["p2"]; p.next.Before(now.Add(time.Hour+reconnectFirst/2)) || p.next.After(now.Add(time.Hour+reconnectFirst)) {
		t.Errorf("first attempt at %v, want within [%v, %v] after death", p.next.Sub(now.Add(time.Hour)), reconnectFirst/2, reconnectFirst)
	}
	if !s.remove("p2") || s.remove("p2") {
		t.Error("remove did not report what it removed")
	}
	for range 100 {
		if j := jitter(reconnectMax); j < reconnectMax/2 || j > reconnectMax {
			t.Fatalf("jitter(%v) = %v", reconnectMax, j)
		}
	}
}

func TestReconnectSetFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadReconnectSet(path, 10, time.Now()); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("damaged file: %v, want an error naming it", err)
	}
	seen := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := writeFileAtomic(path, peersFile{Version: 1, Peers: []*knownPeer{{Name: "a", Addr: "10.0.0.1:1", Seen: seen}, {Addr: "no-name"}}}); err != nil {
		t.Fatal(err)
	}
	s, err := loadReconnectSet(path, 10, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.peers) != 1 || !s.peers["a"].Seen.Equal(seen) {
		t.Fatalf("loaded %+v", s.peers)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestBridgeRelaysData: n1 and n2 cannot reach each other, n3 reaches
// both. Nobody is judged dead (the probes go round through n3), and n1's
// changes reach n2 through n3: n2 learns from n3's acks that its copy is
// behind and, n1 not answering, asks n3 for the copy it holds.
func TestBridgeRelaysData(t *testing.T) {
	fn := faultnet.New(faultSeed(t), faultnet.Options{})
	defer fn.Close()
	nodes := startCluster(t, 3, onNetwork(fn, nil))
	fn.Cut("n1", "n2")
	fn.Cut("n2", "n1")
	for i := range 3 {
		gen, _, _ := nodes[0].store.UpdateLocal("cli", func(d *monitor.NodeData) { d.Labels["bridge"] = fmt.Sprint(i) })
		testutil.Eventually(t, 30*time.Second, func() bool { return holds(nodes[1], "n1", gen) },
			"n2 never got n1's gen %d through n3: stats %+v", gen, func() any { return nodes[1].hb.Stats() })
	}
	if s := nodes[1].hb.Stats(); s.RelayRequests == 0 {
		t.Errorf("n2 asked no relay: %+v", s)
	}
	for _, n := range nodes {
		for _, m := range nodes {
			if st := n.store.Members()[m.name].State; st != monitor.StateAlive {
				t.Errorf("%s sees %s %s during the bridge", n.name, m.name, st)
			}
		}
	}
	fn.Heal()
	waitConverged(t, nodes)
}

// TestForgottenDataStaysForgotten: n1 forgets dead n3's data while n2
// still holds it; n2's acks carry n3's digest, which must not bring the
// data back to n1 (n3 is not alive there).
func TestForgottenDataStaysForgotten(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) {
		if c.Name == "n1" {
			c.ForgetAfter = 200 * time.Millisecond
		}
	})
	nodes[2].kill()
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, held := nodes[0].store.Node("n3")
		return !held
	}, "n1 never forgot n3")
	if _, held := nodes[1].store.Node("n3"); !held {
		t.Fatal("n2 forgot n3 too: the test needs it to hold the data")
	}
	// The point is what does not happen: many probe rounds of n1 and n2.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, held := nodes[0].store.Node("n3"); held {
			t.Fatalf("n3's data came back to n1 after it was forgotten; stats %+v", nodes[0].hb.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
