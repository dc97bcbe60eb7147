package heartbeat

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/internal/testutil"
	"agent/monitor"
)

func TestSuccessors(t *testing.T) {
	for _, c := range []struct {
		self  string
		names []string
		n     int
		want  []string
	}{
		{"n1", []string{"n2", "n3", "n4"}, 2, []string{"n2", "n3"}},
		{"n3", []string{"n1", "n2", "n4"}, 2, []string{"n4", "n1"}},
		{"n4", []string{"n3", "n1", "n2"}, 2, []string{"n1", "n2"}},
		{"n2", []string{"n1"}, 2, []string{"n1"}},
		{"n1", nil, 2, nil},
		{"b", []string{"a", "c", "d"}, 1, []string{"c"}},
	} {
		if got := successors(c.self, c.names, c.n); !slices.Equal(got, c.want) {
			t.Errorf("successors(%s, %v, %d) = %v, want %v", c.self, c.names, c.n, got, c.want)
		}
	}
}

// slowDetector keeps memberlist from declaring anyone dead within a test:
// what a test then sees dead, the crash watch found.
func slowDetector(c *Config) {
	c.Tune = func(mc *memberlist.Config) {
		testutil.FastTimings(mc)
		mc.ProbeInterval = time.Minute
		mc.ProbeTimeout = 30 * time.Second
	}
}

// watchedBy waits until n holds count watch streams.
func watchedBy(t *testing.T, n *testNode, count int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		n.hb.nt.mu.Lock()
		defer n.hb.nt.mu.Unlock()
		return len(n.hb.nt.held) == count
	}, "%s never watched by %d peers", n.name, count)
}

// crashAgent stops n as a SIGKILL would (Abort).
func crashAgent(n *testNode) {
	n.once.Do(func() {
		_ = n.hb.Abort()
		n.cancel()
		<-n.done
	})
}

func TestCrashWatchFindsKilledAgent(t *testing.T) {
	leak := testutil.CheckGoroutines(t)
	nodes := startCluster(t, 5, slowDetector)
	waitConverged(t, nodes)
	// Every node watches two: the victim is watched by n1 and n2, and
	// n4 and n5 learn it from them.
	victim := nodes[2]
	watchedBy(t, victim, 2)
	crashAgent(victim)
	for _, n := range []*testNode{nodes[0], nodes[1], nodes[3], nodes[4]} {
		testutil.Eventually(t, 10*time.Second, func() bool {
			return n.store.Members()["n3"].State == monitor.StateDead
		}, "%s never saw n3 dead", n.name)
		if got := n.hb.Stats().CrashesFound; got != 1 {
			t.Errorf("%s: CrashesFound = %d, want 1", n.name, got)
		}
	}
	if ids := fmt.Sprint(nodes[4].bus.eventIDs()); !slices.Contains(nodes[4].bus.eventIDs(), "node_down:n3") {
		t.Errorf("n5 events %s lack node_down:n3", ids)
	}
	// memberlist still holds n3 alive (its detector is slowed down):
	// the crash watch alone marked it.
	if ms := nodes[0].hb.ml.Members(); !slices.ContainsFunc(ms, func(n *memberlist.Node) bool { return n.Name == "n3" }) {
		t.Error("memberlist already declared n3 dead: the test shows nothing of the watch")
	}
	for _, n := range nodes {
		n.kill()
	}
	leak()
}

func TestCrashWatchTrustsGoodbye(t *testing.T) {
	nodes := startCluster(t, 4, nil)
	waitConverged(t, nodes)
	// Close without leave: memberlist finds n3 dead, the watchers heard
	// its goodbye and leave it to memberlist.
	nodes[2].kill()
	for _, n := range []*testNode{nodes[0], nodes[1], nodes[3]} {
		testutil.Eventually(t, 10*time.Second, func() bool {
			return n.store.Members()["n3"].State == monitor.StateDead
		}, "%s never saw n3 dead", n.name)
		if got := n.hb.Stats().CrashesFound; got != 0 {
			t.Errorf("%s: CrashesFound = %d after an orderly close, want 0", n.name, got)
		}
	}
}

func TestCrashWatchRestartBeforeProbe(t *testing.T) {
	nodes := startCluster(t, 3, slowDetector)
	waitConverged(t, nodes)
	victim := nodes[2]
	_, port, _ := splitHostPort(victim.hb.Addr())
	watchedBy(t, victim, 2)
	crashAgent(victim)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return nodes[0].store.Members()["n3"].State == monitor.StateDead
	}, "n1 never saw n3 dead")
	// Back on the same address before memberlist missed it: memberlist
	// reports nothing, the recheck of crashed peers sees the port answer.
	back := startNode(t, "n3", port, []string{nodes[0].hb.Addr()}, slowDetector)
	t.Cleanup(back.kill)
	nodes[2] = back
	testutil.Eventually(t, 10*time.Second, func() bool {
		return nodes[0].store.Members()["n3"].State == monitor.StateAlive &&
			nodes[1].store.Members()["n3"].State == monitor.StateAlive
	}, "n3 never seen alive again")
	waitConverged(t, nodes)
}

func TestWatchStreamsSortedFromMemberlists(t *testing.T) {
	nt, err := listenNet(t.Context(), "127.0.0.1", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = nt.Shutdown() }()
	addr := nt.tcp.Addr().String()
	// A memberlist stream keeps its first byte.
	c, err := nt.DialTimeout(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	s := <-nt.StreamCh()
	buf := make([]byte, 5)
	for i := range buf {
		if _, err := s.Read(buf[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if string(buf) != "hello" {
		t.Errorf("memberlist read %q, want hello", buf)
	}
	_ = s.Close()
	_ = c.Close()
	// A watch stream is held, and told goodbye on shutdown.
	w, err := nt.DialTimeout(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close() }()
	if _, err := w.Write([]byte{watchHello}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		nt.mu.Lock()
		defer nt.mu.Unlock()
		return len(nt.held) == 1
	}, "watch stream not held")
	go func() { _ = nt.Shutdown() }()
	_ = w.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 1)
	if n, err := w.Read(got); n != 1 || got[0] != watchBye {
		t.Errorf("watcher read %q, %v; want the goodbye", got[:n], err)
	}
}
