package integration

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"agent/internal/netfault"
)

// The fault tests run five agents in a network namespace of their own, on
// its loopback (127.0.0.1-5), and cut links with nft rules in it (package
// netfault says how senders are told apart).

// faultNS is the test's namespace, with its rule changes failing the test.
type faultNS struct {
	*netfault.NS
	t testing.TB
}

// newFaultNS creates the namespace (deleted in t.Cleanup, after the
// agents registered later are killed).
func newFaultNS(t *testing.T) *faultNS {
	t.Helper()
	return &faultNS{NS: netfault.NewT(t, "agent-itest"), t: t}
}

// have says whether cmd is on PATH.
func have(cmd string) bool { _, err := exec.LookPath(cmd); return err == nil }

// drop cuts the traffic sent by nodes from to nodes to; with pct < 100 a
// random pct percent of it.
func (ns *faultNS) drop(from, to []int, pct int) {
	ns.t.Helper()
	netfault.Must(ns.t, ns.Drop(from, to, pct))
}

// partition cuts a from b both ways.
func (ns *faultNS) partition(a, b []int) {
	ns.t.Helper()
	netfault.Must(ns.t, ns.Partition(a, b))
}

// heal removes every rule.
func (ns *faultNS) heal() {
	ns.t.Helper()
	netfault.Must(ns.t, ns.Heal())
}

func newFaultCluster(t *testing.T, nodes int) (*faultNS, *cluster) {
	ns := newFaultNS(t)
	c := newCluster(t, clusterOpts{Nodes: nodes, NetNS: ns.Name, Gid: netfault.GID})
	c.waitConverged()
	return ns, c
}

// deadExpr is a filter that holds when every one of nodes is dead.
func deadExpr(nodes []int) string {
	var s []string
	for _, i := range nodes {
		s = append(s, fmt.Sprintf("cluster.nodes.n%d.state=dead", i))
	}
	return strings.Join(s, " and ")
}

func TestFaultPartitionHeals(t *testing.T) {
	t.Parallel()
	testPartition(t, 0)
}

// testPartition splits {n1,n2} from {n3,n4,n5} until each side has the
// other dead, changes data on both sides, holds the split for hold more,
// heals it and expects byte-identical monitor.nodes everywhere.
func testPartition(t *testing.T, hold time.Duration) {
	ns, c := newFaultCluster(t, 5)
	a, b := []int{1, 2}, []int{3, 4, 5}
	before := c.waitConverged()

	ns.partition(a, b)
	for _, i := range a {
		c.node(i).waitFor(deadExpr(b), detectTimeout)
	}
	for _, i := range b {
		c.node(i).waitFor(deadExpr(a), detectTimeout)
	}
	// Each side keeps the other's data and goes on changing its own.
	for _, n := range c.nodes {
		for _, m := range c.nodes {
			n.waitFor(fmt.Sprintf("monitor.nodes.%s.gen>=%d", m.name, before.gens[m.name]), time.Second)
		}
	}
	c.node(1).mustCLI("node", "freeze")
	c.node(4).mustCLI("node", "freeze")
	c.node(2).waitFor("monitor.nodes.n1.frozen!=0", detectTimeout)
	c.node(5).waitFor("monitor.nodes.n4.frozen!=0", detectTimeout)
	c.node(3).waitFor("monitor.nodes.n4.frozen!=0", detectTimeout)
	if hold > 0 {
		// The point is the elapsed time itself: memberlist's gossip to
		// the dead must have expired.
		time.Sleep(hold)
	}

	ns.heal()
	v := c.waitConverged()
	for _, frozen := range []string{"n1", "n4"} {
		c.node(3).waitFor(fmt.Sprintf("monitor.nodes.%s.frozen!=0", frozen), time.Second)
		c.node(2).waitFor(fmt.Sprintf("monitor.nodes.%s.frozen!=0", frozen), time.Second)
	}
	t.Logf("healed: monitor.nodes sha256 %s on all five, gens %v", v.hash, v.gens)
}

func TestFaultOneWayLoss(t *testing.T) {
	t.Parallel()
	ns, c := newFaultCluster(t, 5)
	// n1 cannot send to n3 at all; n1-n2 lose 30% of what they send to
	// n3-n5. n3's traffic to everyone flows.
	ns.drop([]int{1}, []int{3}, 100)
	ns.drop([]int{1, 2}, []int{3, 4, 5}, 30)
	for round := range 6 {
		for _, i := range []int{1, 3, 5} {
			c.node(i).mustCLI("node", []string{"freeze", "thaw"}[round%2])
		}
	}
	// Whatever failure detection made of it, the data agrees once healed.
	ns.heal()
	v := c.waitConverged()
	for _, i := range []int{1, 3, 5} {
		c.node(2).waitFor(fmt.Sprintf("monitor.nodes.n%d.frozen=0", i), time.Second)
	}
	t.Logf("converged after one-way loss: sha256 %s gens %v", v.hash, v.gens)
}

func TestFaultKillRestartLoop(t *testing.T) {
	t.Parallel()
	_, c := newFaultCluster(t, 5)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	gens := startGenSampler(t, c.nodes)
	for round := range 3 {
		victim := c.node(1 + rng.IntN(5))
		others := c.except(victim)
		victim.signal(syscall.SIGKILL)
		victim.wait()
		// A change while it is down must reach it when it is back.
		others[0].mustCLI("node", []string{"freeze", "thaw"}[round%2])
		for _, n := range others {
			n.waitFor(fmt.Sprintf("cluster.nodes.%s.state=dead", victim.name), detectTimeout)
		}
		victim.restart()
		v := c.waitConverged()
		t.Logf("round %d: killed %s, converged at sha256 %s", round, victim.name, v.hash)
	}
	gens.finish()
	gens.mu.Lock()
	defer gens.mu.Unlock()
	for _, e := range gens.errs {
		t.Errorf("gen went backwards: %s", e)
	}
}
