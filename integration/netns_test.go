package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The fault tests run five agents in a network namespace of their own, on
// its loopback (127.0.0.1-5), and cut links with nft rules in an output
// chain of that namespace.
//
// Addresses alone do not identify a sender on loopback: a TCP connection
// to 127.0.0.3 is made from 127.0.0.1 whoever dials it, since the kernel
// picks the route's source. So node i also runs with group id gidBase+i,
// and the rules match the sending socket's group (meta skgid) as well as
// the addresses (for UDP, sent from the bound address).

const gidBase = 42000

// faultNS is a network namespace with an nft table for the test's rules.
type faultNS struct {
	t    testing.TB
	name string
}

// requireFaultEnv skips (loudly) or, with AGENT_REQUIRE_FAULT_TESTS=1,
// fails when the fault tests cannot run here.
func requireFaultEnv(t *testing.T) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "not root"
	case !have("ip"):
		why = "no ip command (iproute2)"
	case !have("nft"):
		why = "no nft command (nftables)"
	}
	if why != "" {
		faultUnavailable(t, why)
	}
}

func have(cmd string) bool { _, err := exec.LookPath(cmd); return err == nil }

func faultUnavailable(t *testing.T, why string) {
	t.Helper()
	msg := "FAULT TESTS NOT RUN: " + why + " (they need root, iproute2 and nftables; set AGENT_REQUIRE_FAULT_TESTS=1 to make this a failure)"
	if os.Getenv("AGENT_REQUIRE_FAULT_TESTS") == "1" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "WARNING:", msg)
	t.Skip(msg)
}

// newFaultNS creates the namespace (deleted in t.Cleanup, after the
// agents registered later are killed) with lo up and an empty output chain.
func newFaultNS(t *testing.T) *faultNS {
	t.Helper()
	requireFaultEnv(t)
	ns := &faultNS{t: t, name: fmt.Sprintf("agent-itest-%d-%d", os.Getpid(), rand.IntN(1e6))}
	if out, err := exec.Command("ip", "netns", "add", ns.name).CombinedOutput(); err != nil {
		faultUnavailable(t, fmt.Sprintf("ip netns add: %v: %s", err, bytes.TrimSpace(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.name).CombinedOutput(); err != nil {
			t.Logf("ip netns del %s: %v: %s", ns.name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", ns.name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", ns.name, err, out)
	}
	ns.nft("add table inet itest")
	ns.nft("add chain inet itest out { type filter hook output priority 0 ; policy accept ; }")
	return ns
}

// nft runs one nft command in the namespace.
func (ns *faultNS) nft(rule string) {
	ns.t.Helper()
	args := append([]string{"netns", "exec", ns.name, "nft"}, strings.Fields(rule)...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		if os.Getenv("AGENT_REQUIRE_FAULT_TESTS") != "1" && strings.Contains(string(out), "Operation not supported") {
			faultUnavailable(ns.t.(*testing.T), "nft: "+strings.TrimSpace(string(out)))
		}
		ns.t.Fatalf("nft %s: %v: %s", rule, err, out)
	}
}

func addrSet(nodes []int) string {
	var s []string
	for _, i := range nodes {
		s = append(s, fmt.Sprintf("127.0.0.%d", i))
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

func gidSet(nodes []int) string {
	var s []string
	for _, i := range nodes {
		s = append(s, fmt.Sprint(gidBase+i))
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// drop cuts the traffic sent by nodes from to nodes to; with pct < 100 a
// random pct percent of it.
func (ns *faultNS) drop(from, to []int, pct int) {
	ns.t.Helper()
	loss := ""
	if pct < 100 {
		loss = fmt.Sprintf("numgen random mod 100 < %d ", pct)
	}
	ns.nft(fmt.Sprintf("add rule inet itest out ip saddr %s ip daddr %s %sdrop", addrSet(from), addrSet(to), loss))
	ns.nft(fmt.Sprintf("add rule inet itest out meta skgid %s ip daddr %s %sdrop", gidSet(from), addrSet(to), loss))
}

// partition cuts a from b both ways.
func (ns *faultNS) partition(a, b []int) {
	ns.drop(a, b, 100)
	ns.drop(b, a, 100)
}

// heal removes every rule.
func (ns *faultNS) heal() { ns.nft("flush chain inet itest out") }

func newFaultCluster(t *testing.T, nodes int) (*faultNS, *cluster) {
	ns := newFaultNS(t)
	c := newCluster(t, clusterOpts{Nodes: nodes, NetNS: ns.name, Gid: func(i int) uint32 { return uint32(gidBase + i) }})
	waitConverged(t, c.nodes, names(c.nodes), names(c.nodes))
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

// TestFaultLongPartitionHeals holds the partition past memberlist's
// GossipToTheDeadTime (15 s in the local profile), after which memberlist
// itself no longer talks to the other side: only a rejoin of dead peers
// heals it.
func TestFaultLongPartitionHeals(t *testing.T) {
	t.Parallel()
	testPartition(t, 20*time.Second)
}

// testPartition splits {n1,n2} from {n3,n4,n5} until each side has the
// other dead, changes data on both sides, holds the split for hold more,
// heals it and expects byte-identical monitor.nodes everywhere.
func testPartition(t *testing.T, hold time.Duration) {
	ns, c := newFaultCluster(t, 5)
	a, b := []int{1, 2}, []int{3, 4, 5}
	before := waitConverged(t, c.nodes, names(c.nodes), names(c.nodes))

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
	v := waitConverged(t, c.nodes, names(c.nodes), names(c.nodes))
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
	v := waitConverged(t, c.nodes, names(c.nodes), names(c.nodes))
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
		v := waitConverged(t, c.nodes, names(c.nodes), names(c.nodes))
		t.Logf("round %d: killed %s, converged at sha256 %s", round, victim.name, v.hash)
	}
	gens.finish()
	gens.mu.Lock()
	defer gens.mu.Unlock()
	for _, e := range gens.errs {
		t.Errorf("gen went backwards: %s", e)
	}
}
