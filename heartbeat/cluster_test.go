package heartbeat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/internal/faultnet"
	"agent/internal/testutil"
	"agent/monitor"
)

// memBus numbers records in memory: enough for the heartbeat tests.
type memBus struct {
	mu   sync.Mutex
	recs []memRecord
}

type memRecord struct {
	nodename, kind string
	data           json.RawMessage
}

func (b *memBus) Publish(nodename, kind string, data json.RawMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recs = append(b.recs, memRecord{nodename, kind, data})
}

func (b *memBus) eventIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for _, r := range b.recs {
		if r.kind != monitor.KindEvent {
			continue
		}
		var d struct {
			ID   string `json:"id"`
			Node string `json:"node"`
		}
		_ = json.Unmarshal(r.data, &d)
		ids = append(ids, d.ID+":"+d.Node)
	}
	return ids
}

type testNode struct {
	name   string
	store  *monitor.Store
	hb     *Heartbeat
	bus    *memBus
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startNode(t *testing.T, name string, port int, seeds []string, tweak func(*Config)) *testNode {
	t.Helper()
	bus := &memBus{}
	st, err := monitor.New(monitor.Config{Name: name, ClusterName: "test", Publish: bus.Publish, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Name: name, ClusterName: "test", BindAddr: "127.0.0.1", BindPort: port, Seeds: seeds,
		Profile: "local", ForgetAfter: time.Hour, FullRetry: 100 * time.Millisecond,
		Refresh: 20 * time.Millisecond, Tune: testutil.FastTimings, Logger: quietLogger(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	hb, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{name: name, store: st, hb: hb, bus: bus, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- hb.Run(ctx) }()
	_, _, _ = st.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = monitor.StatusIdle })
	return n
}

// kill stops a node without leaving: the others must detect it dead.
func (n *testNode) kill() {
	n.once.Do(func() {
		n.cancel()
		<-n.done
		_ = n.hb.Close()
	})
}

func startCluster(t *testing.T, count int, tweak func(*Config)) []*testNode {
	t.Helper()
	nodes := []*testNode{startNode(t, "n1", 0, nil, tweak)}
	seed := nodes[0].hb.Addr()
	for i := 2; i <= count; i++ {
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i), 0, []string{seed}, tweak))
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.kill()
		}
	})
	waitConverged(t, nodes)
	return nodes
}

// monitorNodes returns the canonical monitor.nodes section of a store.
func monitorNodes(s *monitor.Store) string {
	var doc struct {
		Monitor struct {
			Nodes json.RawMessage `json:"nodes"`
		} `json:"monitor"`
	}
	_ = json.Unmarshal(s.Document(), &doc)
	return string(doc.Monitor.Nodes)
}

func waitConverged(t *testing.T, nodes []*testNode) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() bool {
		want := monitorNodes(nodes[0].store)
		for _, n := range nodes[1:] {
			if monitorNodes(n.store) != want {
				return false
			}
		}
		return len(nodes[0].store.NodeNames()) == len(nodes)
	}, "monitor sections differ")
}

func TestClusterConvergesAfterRandomChanges(t *testing.T) {
	leak := testutil.CheckGoroutines(t)
	func() {
		nodes := startCluster(t, 5, nil)
		rng := rand.New(rand.NewPCG(1, 0))
		for i := 0; i < 3000; i++ {
			n := nodes[rng.IntN(len(nodes))]
			randomChange(rng, n.store)
		}
		waitConverged(t, nodes)
		for _, n := range nodes {
			if s := n.hb.Stats(); s.DeltasApplied == 0 {
				t.Errorf("%s applied no delta: %+v", n.name, s)
			}
		}
		for _, n := range nodes {
			n.kill()
		}
	}()
	leak()
}

func randomChange(rng *rand.Rand, s *monitor.Store) {
	_, _, _ = s.UpdateLocal("cli", func(d *monitor.NodeData) {
		switch rng.IntN(4) {
		case 0:
			if d.Frozen == 0 {
				d.Frozen = time.Now().Unix()
			} else {
				d.Frozen = 0
			}
		case 1:
			d.Labels[fmt.Sprintf("k%d", rng.IntN(20))] = fmt.Sprintf("v%d", rng.IntN(1000))
		case 2:
			delete(d.Labels, fmt.Sprintf("k%d", rng.IntN(20)))
		case 3:
			d.Stats.Load15m = float64(rng.IntN(100)) / 10
			d.Stats.MemAvailPct = rng.IntN(100)
		}
	})
}

func TestLostDeltasRepaired(t *testing.T) {
	// n2 drops every delta from n1 for a while: it must notice the gap on
	// the next delta it does take, or be repaired by anti-entropy when
	// nothing follows.
	var mu sync.Mutex
	dropping, dropped := false, 0
	tweak := func(c *Config) {
		if c.Name != "n2" {
			return
		}
		c.DropIncoming = func(msg []byte) bool {
			mu.Lock()
			defer mu.Unlock()
			drop := dropping && len(msg) > 0 && msg[0] == msgDelta
			if drop {
				dropped++
			}
			return drop
		}
	}
	nodes := startCluster(t, 3, tweak)
	mu.Lock()
	dropping = true
	mu.Unlock()
	for i := 0; i < 20; i++ {
		_, _, _ = nodes[0].store.UpdateLocal("cli", func(d *monitor.NodeData) { d.Labels["x"] = fmt.Sprint(i) })
	}
	// Keep dropping until the deltas have gone out (n3, which drops
	// nothing, holds the last value) and n2 has really lost one: the
	// changes may go out as a single coalesced delta, and n2 may read its
	// copy later than n3 does.
	testutil.Eventually(t, 10*time.Second, func() bool {
		d, _ := nodes[2].store.Node("n1")
		mu.Lock()
		defer mu.Unlock()
		return d.Labels["x"] == "19" && dropped > 0
	}, "n3 never got n1's changes, or n2 never dropped one")
	mu.Lock()
	dropping = false
	mu.Unlock()
	// No further change: only anti-entropy (push/pull) can repair n2.
	waitConverged(t, nodes)
	d, _ := nodes[1].store.Node("n1")
	if d.Labels["x"] != "19" {
		t.Fatalf("n2 holds n1 label x=%q, want 19", d.Labels["x"])
	}
	// The store shows the repair a moment before the counters do (they
	// are bumped after the apply returns).
	testutil.Eventually(t, 10*time.Second, func() bool { return nodes[1].hb.Stats().Resyncs > 0 },
		"no resync counted on n2, stats %+v", func() any { return nodes[1].hb.Stats() })
}

func TestKillAndRestart(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	victim := nodes[2]
	addr := victim.hb.Addr()
	_, _, _ = victim.store.UpdateLocal("cli", func(d *monitor.NodeData) { d.Labels["before"] = "kill" })
	waitConverged(t, nodes)
	victim.kill()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return nodes[0].store.Members()["n3"].State == monitor.StateDead
	}, "n1 never marked n3 dead")
	if _, ok := nodes[0].store.Node("n3"); !ok {
		t.Fatal("n3's data was dropped before the grace period")
	}
	_, portStr, _ := splitHostPort(addr)
	restarted := startNode(t, "n3", portStr, []string{nodes[0].hb.Addr()}, nil)
	nodes[2] = restarted
	waitConverged(t, nodes)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return nodes[0].store.Members()["n3"].State == monitor.StateAlive
	}, "n1 never saw n3 alive again")
	ids := fmt.Sprint(nodes[0].bus.eventIDs())
	for _, want := range []string{"node_down:n3", "node_up:n3", "peer_resync:n3"} {
		if !bytes.Contains([]byte(ids), []byte(want)) {
			t.Errorf("n1 events %s lack %s", ids, want)
		}
	}
}

func TestForgetAfterGrace(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) { c.ForgetAfter = 200 * time.Millisecond })
	nodes[2].kill()
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, ok := nodes[0].store.Node("n3")
		return !ok
	}, "n3 never forgotten")
	if ids := fmt.Sprint(nodes[0].bus.eventIDs()); !bytes.Contains([]byte(ids), []byte("forget_peer:n3")) {
		t.Errorf("no forget_peer event: %s", ids)
	}
}

// leaveSeen makes nodes[i] leave gracefully and waits until nodes[0]
// sees it left.
func leaveSeen(t *testing.T, nodes []*testNode, i int) {
	t.Helper()
	if err := nodes[i].hb.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return nodes[0].store.Members()[nodes[i].name].State == monitor.StateLeft
	}, "%s never saw %s leave", nodes[0].name, nodes[i].name)
}

func TestGracefulLeave(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leaveSeen(t, nodes, 2)
}

// patient makes a cluster that never judges a live node dead within a
// test, however loaded the machine: the name conflict tests are about
// names, not failure detection.
func patient(c *memberlist.Config) {
	testutil.FastTimings(c)
	c.SuspicionMult = 1000
	c.TCPTimeout = 10 * time.Second
}

// runNewcomer runs a second node named n1 that joins seed, and returns
// what its Run returned.
func runNewcomer(t *testing.T, seed string, tune func(*memberlist.Config)) error {
	t.Helper()
	bus := &memBus{}
	st, _ := monitor.New(monitor.Config{Name: "n1", ClusterName: "test", Publish: bus.Publish, Logger: quietLogger()})
	hb, err := New(Config{Name: "n1", ClusterName: "test", BindAddr: "127.0.0.1", Seeds: []string{seed},
		Profile: "local", Tune: tune, Logger: quietLogger()}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	// Only a hang ends here: a join attempt lasts at most TCPTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return hb.Run(ctx)
}

func TestNameConflictRefused(t *testing.T) {
	nodes := startCluster(t, 2, func(c *Config) { c.Tune = patient })
	// The newcomer knows only n2: n2 must refuse it, and keep the genuine
	// n1's data (the push/pull of a refused merge brings nothing).
	if err := runNewcomer(t, nodes[1].hb.Addr(), patient); !isConflict(err) {
		t.Fatalf("Run = %v, want a name conflict", err)
	}
	if _, boot, _ := nodes[1].store.Held("n1"); boot != nodes[0].store.Boot() {
		t.Fatalf("n2 holds n1's data of boot %s, the genuine n1 runs %s: the newcomer's data got in", boot, nodes[0].store.Boot())
	}
}

// TestNameOfLiveNodeJudgedDeadRefused: n2 has judged n1 dead, but n1's
// process lives (here its link to n2 is cut; on a loaded machine it was
// too slow to answer probes). A newcomer named n1 must not take the name.
func TestNameOfLiveNodeJudgedDeadRefused(t *testing.T) {
	fn := faultnet.New(1, faultnet.Options{})
	defer fn.Close()
	nodes := startCluster(t, 2, onNetwork(fn, nil))
	n1, n2 := nodes[0].hb.Addr(), nodes[1].hb.Addr()
	fn.Cut(n1, n2)
	fn.Cut(n2, n1)
	testutil.Eventually(t, 30*time.Second, func() bool {
		return nodes[1].store.Members()["n1"].State == monitor.StateDead
	}, "n2 never judged n1 dead")
	err := runNewcomer(t, n2, func(c *memberlist.Config) {
		testutil.FastTimings(c)
		fn.Install(c)
	})
	if !isConflict(err) {
		t.Fatalf("Run = %v, want a name conflict", err)
	}
}

func TestMalformedMessagesDropped(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	// A copy of n2's view of n1, taken under n2's lock: the nodes
	// memberlist's Members returns are its own, updated concurrently.
	testutil.Eventually(t, 10*time.Second, func() bool {
		nodes[1].hb.mu.Lock()
		defer nodes[1].hb.mu.Unlock()
		return nodes[1].hb.peers["n1"] != nil
	}, "n2 never saw n1 alive")
	nodes[1].hb.mu.Lock()
	n1 := *nodes[1].hb.peers["n1"]
	nodes[1].hb.mu.Unlock()
	target := &n1
	for _, msg := range [][]byte{{msgDelta}, []byte("dgarbage"), []byte("f{\"n\":1}"), []byte("zzz"), {msgOrder, '{', '}'}} {
		if err := nodes[1].hb.ml.SendReliable(target, msg); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return nodes[0].hb.Stats().BadMessages >= 5 }, "bad messages not counted")
	_, _, _ = nodes[0].store.UpdateLocal("cli", func(d *monitor.NodeData) { d.Labels["still"] = "working" })
	waitConverged(t, nodes)
}

// TestAloneNodeRejoinsSeeds: n2's only peer n1 dies and is forgotten; when
// n1 comes back without seeds of its own, n2 finds it through its seeds.
func TestAloneNodeRejoinsSeeds(t *testing.T) {
	n1 := startNode(t, "n1", 0, nil, func(c *Config) { c.ForgetAfter = 200 * time.Millisecond })
	addr := n1.hb.Addr()
	n2 := startNode(t, "n2", 0, []string{addr}, func(c *Config) { c.ForgetAfter = 200 * time.Millisecond })
	t.Cleanup(n2.kill)
	waitConverged(t, []*testNode{n1, n2})
	n1.kill()
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, ok := n2.store.Node("n1")
		return !ok
	}, "n2 never forgot n1")
	_, port, _ := splitHostPort(addr)
	back := startNode(t, "n1", port, nil, nil)
	t.Cleanup(back.kill)
	waitConverged(t, []*testNode{back, n2})
}

// TestJoinedWhileStarting: a peer may reach a node while memberlist is
// still being created (a restarted node on the address its peers keep
// rejoining). The merge check must not touch the half-built Heartbeat.
func TestJoinedWhileStarting(t *testing.T) {
	nodes := startCluster(t, 1, nil)
	for i := 0; i < 10; i++ {
		port := testutil.FreePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		stop := testutil.Repeat(2000, func() { _, _ = nodes[0].hb.Memberlist().Join([]string{addr}) })
		n := startNode(t, fmt.Sprintf("s%d", i), port, nil, nil)
		stop()
		n.kill()
	}
}

// TestReachedAfterLeave: once a node has left, memberlist drops its own
// entry after GossipToTheDeadTime, yet still answers joins until shut down.
// Nothing on that path may look the local node up.
func TestReachedAfterLeave(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	leaver := nodes[1]
	addr := leaver.hb.Addr()
	if err := leaver.hb.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	// Past GossipToTheDeadTime (500 ms in the fast timings), the left node
	// is reaped from its own member list at a probe round.
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, m := range leaver.hb.Memberlist().Members() {
			if m.Name == leaver.name {
				return false
			}
		}
		return true
	}, "the left node never dropped itself from its member list")
	for i := 0; i < 5; i++ {
		_, _ = nodes[0].hb.Memberlist().Join([]string{addr})
	}
	if got := leaver.hb.Addr(); got != addr {
		t.Fatalf("Addr() after leave = %q, want %q", got, addr)
	}
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	return host, p, err
}

// TestLeaveAfterRunEnded: the agent ends the heartbeat's Run (its context)
// before it leaves, as on SIGTERM; the change made just before the leave
// ("shutting down") must still reach the peers.
func TestLeaveAfterRunEnded(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	n2 := nodes[1]
	n2.cancel()
	<-n2.done
	n2.done <- nil // for kill
	gen, _, _ := n2.store.UpdateLocal("shutdown", func(d *monitor.NodeData) { d.Status = monitor.StatusShuttingDown })
	if err := n2.hb.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return holds(nodes[0], "n2", gen) },
		"n1 never got n2's last change before its leave")
}
