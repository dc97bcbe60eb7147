package orchestrator

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"agent/config"
	"agent/monitor"
)

// TestNeverTwoFailoverInstances drives a healthy cluster through random
// service failures, failing starts, node freezes and service orders, and
// checks with the fake world that a failover service never runs on two
// nodes at once.
func TestNeverTwoFailoverInstances(t *testing.T) {
	runs, steps := 6, 40
	if testing.Short() {
		runs, steps = 2, 10
	}
	total := 0
	for seed := int64(1); seed <= int64(runs); seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			c := newCluster(t, three, clusterOpts{ready: 60 * time.Millisecond})
			c.w.mu.Lock()
			c.w.delay = 3 * time.Millisecond
			c.w.rng = rand.New(rand.NewSource(seed))
			c.w.mu.Unlock()
			nodes := append([]string(nil), three...)
			rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
			c.addService(testService("web", config.Failover, nodes...))
			actions := []string{"start", "start", "start", "thaw", "thaw", "stop", "freeze"}
			for i := 0; i < steps; i++ {
				n := three[rng.Intn(len(three))]
				switch rng.Intn(5) {
				case 0, 1:
					for up := range c.w.upNodes("web") {
						c.w.setUp(up, "web", false)
					}
				case 2:
					c.w.setFailStart(n, rng.Intn(3) == 0)
				case 3:
					_, _, _ = c.node(n).store.UpdateLocal("cli", func(d *monitor.NodeData) {
						if d.Frozen == 0 {
							d.Frozen = time.Now().Unix()
						} else {
							d.Frozen = 0
						}
					})
				case 4:
					if err := c.node(n).orch.Order("web", actions[rng.Intn(len(actions))]); err != nil {
						t.Fatal(err)
					}
				}
				c.waitChecks(uint64(1 + rng.Intn(4)))
				if v := c.w.violated(); len(v) > 0 {
					t.Fatalf("step %d: %v\n%s", i, v, c.dump())
				}
			}
			starts := 0
			for _, n := range three {
				starts += c.w.count(c.w.starts, n, "web")
			}
			total += starts
			t.Logf("%d starts, %d start failures", starts, func() (n uint64) {
				for _, x := range c.all() {
					n += x.orch.Stats().StartFailures
				}
				return n
			}())
		})
	}
	if !testing.Short() && total < 3*runs {
		t.Errorf("only %d starts in %d runs: the runs exercised little", total, runs)
	}
}
