package heartbeat

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/internal/faultnet"
	"agent/internal/testutil"
	"agent/monitor"
)

// faultSeed is the seed of a randomized fault test: AGENT_FAULT_SEED when
// set (to replay a failure), else the clock. It is logged either way.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("AGENT_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("AGENT_FAULT_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with AGENT_FAULT_SEED=%d)", seed, seed)
	return seed
}

// onNetwork puts every node of a test on the fault network, with the
// fast timings.
func onNetwork(fn *faultnet.Network, more func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Tune = func(mc *memberlist.Config) {
			testutil.FastTimings(mc)
			fn.Install(mc)
		}
		if more != nil {
			more(c)
		}
	}
}

// faultStep is one step of a random fault schedule, as logged.
type faultStep struct {
	what string
	hold time.Duration
}

// randomFaults applies one random fault (added to those in place) and
// returns what it did.
func randomFaults(rng *rand.Rand, fn *faultnet.Network, names []string) string {
	pick := func() string { return names[rng.IntN(len(names))] }
	pickOther := func(a string) string {
		for {
			if b := pick(); b != a {
				return b
			}
		}
	}
	switch rng.IntN(8) {
	case 0:
		perm := rng.Perm(len(names))
		k := 1 + rng.IntN(len(names)-1)
		var a, b []string
		for i, p := range perm {
			if i < k {
				a = append(a, names[p])
			} else {
				b = append(b, names[p])
			}
		}
		fn.Partition(a, b)
		return fmt.Sprintf("partition %v | %v", a, b)
	case 1:
		// A bridge: a and b cannot talk, c reaches both.
		a := pick()
		b := pickOther(a)
		fn.Cut(a, b)
		fn.Cut(b, a)
		return fmt.Sprintf("bridge %s x %s", a, b)
	case 2:
		a := pick()
		b := pickOther(a)
		fn.Cut(a, b)
		return fmt.Sprintf("one-way cut %s -> %s", a, b)
	case 3:
		a := pick()
		loss := 0.1 + 0.5*rng.Float64()
		fn.Set(a, faultnet.Any, faultnet.Fault{Loss: loss})
		return fmt.Sprintf("loss %.2f from %s", loss, a)
	case 4:
		d := time.Duration(rng.IntN(30)) * time.Millisecond
		j := time.Duration(1+rng.IntN(50)) * time.Millisecond
		fn.SetDefault(faultnet.Fault{Delay: d, Jitter: j})
		return fmt.Sprintf("delay %v jitter %v everywhere", d, j)
	case 5:
		p := 0.1 + 0.4*rng.Float64()
		fn.SetDefault(faultnet.Fault{Duplicate: p, Jitter: 5 * time.Millisecond})
		return fmt.Sprintf("duplicate %.2f everywhere", p)
	case 6:
		a := pick()
		fn.Isolate(a)
		return fmt.Sprintf("isolate %s", a)
	default:
		fn.Heal()
		return "heal"
	}
}

// TestRandomFaultsConverge runs a seeded random schedule of faults (splits,
// bridges, one-way cuts, loss, delay, reordering, duplication, isolation)
// while the nodes keep changing their data, then heals the network: the
// cluster must become one again, with identical data on every node. The
// seed is logged; AGENT_FAULT_SEED replays it.
func TestRandomFaultsConverge(t *testing.T) {
	seed := faultSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	fn := faultnet.New(seed, faultnet.Options{})
	defer fn.Close()
	nodes := startCluster(t, 5, onNetwork(fn, nil))
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.name
	}
	var steps []faultStep
	for range 10 {
		what := randomFaults(rng, fn, names)
		// Some steps outlast the fast timings' GossipToTheDeadTime
		// (500 ms): memberlist alone no longer talks to the dead then.
		hold := time.Duration(50+rng.IntN(400)) * time.Millisecond
		if rng.IntN(3) == 0 {
			hold = time.Duration(1000+rng.IntN(1500)) * time.Millisecond
		}
		steps = append(steps, faultStep{what, hold})
		end := time.Now().Add(hold)
		for time.Now().Before(end) {
			randomChange(rng, nodes[rng.IntN(len(nodes))].store)
			time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		}
	}
	fn.Heal()
	healed := time.Now()
	var b strings.Builder
	for i, s := range steps {
		fmt.Fprintf(&b, "\n  %d: %s, held %v", i, s.what, s.hold)
	}
	t.Logf("schedule:%s", b.String())
	testutil.Eventually(t, 30*time.Second, func() bool { return oneCluster(nodes) },
		"seed %d: no single cluster with identical data 30 s after the heal; views:%s", seed, func() any { return views(nodes) })
	t.Logf("one cluster again %v after the heal; network %+v", time.Since(healed).Round(time.Millisecond), fn.Total())
}

// oneCluster says whether every node sees every other alive and holds
// the same monitor.nodes, with every node's data.
func oneCluster(nodes []*testNode) bool {
	want := monitorNodes(nodes[0].store)
	for _, n := range nodes {
		if monitorNodes(n.store) != want || len(n.store.NodeNames()) != len(nodes) {
			return false
		}
		members := n.store.Members()
		for _, m := range nodes {
			if members[m.name].State != monitor.StateAlive {
				return false
			}
		}
	}
	return true
}

// views describes what each node sees, for a failure message.
func views(nodes []*testNode) string {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "\n  %s:", n.name)
		members := n.store.Members()
		for _, m := range nodes {
			gen, _, _ := n.store.Held(m.name)
			fmt.Fprintf(&b, " %s=%s/gen %d", m.name, members[m.name].State, gen)
		}
	}
	return b.String()
}
