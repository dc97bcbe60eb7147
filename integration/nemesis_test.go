package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"agent/internal/netfault"
)

// The nemesis: a seeded random schedule of faults against real agents in a
// network namespace, with quorum = true, a failover service and a flex
// service whose commands keep state files, and a checker that samples the
// state files every 20 ms. Invariants:
//
//   - never two failover instances up, except that the instance of a node
//     whose agent crashed, was stopped or paused is excused from the fault
//     until failure detection plus two check intervals after the agent is
//     back; and a duplicate always comes with an instance_duplicate event;
//   - the flex service never below its target, except while the instance
//     of a node cut off from the majority is replaced (a network fault, and
//     failure detection plus the ready period after it);
//   - after the final heal, exactly one failover instance and exactly the
//     flex target, within 30 s.
//
// CI runs a short schedule; AGENT_NEMESIS=30m runs a long one. The seed is
// printed; AGENT_NEMESIS_SEED=N replays a schedule.

const (
	// nemesisCheck is the check interval of the nemesis services.
	nemesisCheck = 500 * time.Millisecond
	// nemesisDetect bounds failure detection in the local profile, for
	// the excuse windows (generous: a loaded machine is slow).
	nemesisDetect = 12 * time.Second
	// nemesisReady is the agents' default ready period.
	nemesisReady = 5 * time.Second
	// nemesisSettle bounds the final convergence.
	nemesisSettle = 30 * time.Second
)

// nemesisDuration is how long the fault schedule of each cluster runs.
func nemesisDuration(t *testing.T) time.Duration {
	if v := os.Getenv("AGENT_NEMESIS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("AGENT_NEMESIS=%q: %v", v, err)
		}
		return d
	}
	if testing.Short() {
		return 30 * time.Second
	}
	return 100 * time.Second
}

func nemesisSeed(t *testing.T) uint64 {
	if v := os.Getenv("AGENT_NEMESIS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("AGENT_NEMESIS_SEED=%q: %v", v, err)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

func TestNemesis(t *testing.T) {
	t.Parallel()
	netfault.Require(t)
	seed := nemesisSeed(t)
	d := nemesisDuration(t)
	t.Logf("nemesis seed %d, %v per cluster (replay: AGENT_NEMESIS_SEED=%d)", seed, d, seed)
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%dnodes", size), func(t *testing.T) {
			t.Parallel()
			runNemesis(t, size, seed+uint64(size), d)
		})
	}
}

// flexConf is a flex service over every node, with the state-file
// commands of failoverConf.
func flexConf(name string, target int) string {
	f := `"$` + stateDirEnv + `/` + name
	return fmt.Sprintf(`[service]
nodes = *
topology = flex
flex_target = %[1]d
orchestrate = ha
check = /bin/sh -c 'test -f %[2]s.up"'
start = /bin/sh -c 'touch %[2]s.up" && echo start >> %[2]s.log"'
stop = /bin/sh -c 'rm -f %[2]s.up" && echo stop >> %[2]s.log"'
check_interval = %[3]s
timeout = 10s
`, target, f, nemesisCheck)
}

// nemesisFailoverConf is failoverConf with the nemesis check interval.
func nemesisFailoverConf(name, nodes string) string {
	return strings.Replace(failoverConf(name, nodes), "check_interval = 200ms", "check_interval = "+nemesisCheck.String(), 1)
}

// window is a span of time during which something is excused.
type window struct {
	from, to time.Time
	what     string
	// back is when the agent was back (agent faults).
	back time.Time
}

// nemesis is one run: the cluster, the schedule's record and the checker.
type nemesis struct {
	t      *testing.T
	c      *cluster
	ns     *faultNS
	rng    *rand.Rand
	target int
	log    []string

	mu sync.Mutex
	// agentOut: node index -> windows where its agent is away (crash,
	// stop, pause), to the end of its excuse.
	agentOut map[int][]window
	// netFault: windows of network faults, to the end of their excuse.
	netFault []window
	// samples
	samples    int
	violations []string
	dups       []window // failover episodes with two or more up
}

func runNemesis(t *testing.T, size int, seed uint64, d time.Duration) {
	ns := newFaultNS(t)
	cc := "quorum = true"
	if size == 5 {
		cc += "\nnodes = n1 n2 n3 n4 n5"
	}
	c := newCluster(t, clusterOpts{Nodes: size, NetNS: ns.Name, Gid: netfault.GID, ClusterConf: cc})
	c.waitConverged()
	target := size/2 + 1 // a majority can always host it
	nodeList := strings.Join(names(c.nodes), " ")
	writeService(t, c.nodes, "web", nemesisFailoverConf("web", nodeList))
	writeService(t, c.nodes, "api", flexConf("api", target))
	waitUpOn(t, c.nodes, "web", "n1")
	waitCount(t, c.nodes, "api", target)

	n := &nemesis{t: t, c: c, ns: ns, rng: rand.New(rand.NewPCG(seed, 0)), target: target, agentOut: map[int][]window{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d (replay: AGENT_NEMESIS_SEED=%d); schedule:\n  %s", seed-uint64(size), seed-uint64(size), strings.Join(n.log, "\n  "))
		}
	})
	stop := n.startChecker()
	end := time.Now().Add(d)
	steps := 0
	for time.Now().Before(end) {
		n.step()
		steps++
	}
	n.finalHeal()
	n.settle()
	stop()
	n.verify()
	n.mu.Lock()
	var longest, afterBack time.Duration
	for _, dup := range n.dups {
		longest = max(longest, dup.to.Sub(dup.from))
		for _, ws := range n.agentOut {
			for _, w := range ws {
				if !dup.to.Before(w.from) && !dup.to.After(w.to) {
					afterBack = max(afterBack, dup.to.Sub(w.back))
				}
			}
		}
	}
	t.Logf("%d nodes: %d fault steps over %v, %d samples of the state files; %d duplicate episodes, all excused and each with instance_duplicate: the longest lasted %v, the slowest resolved %v after its agent was back",
		size, steps, d, n.samples, len(n.dups), longest.Round(time.Millisecond), afterBack.Round(time.Millisecond))
	n.mu.Unlock()
}

// waitCount waits until exactly k nodes among nodes have svc up.
func waitCount(t testing.TB, nodes []*node, svc string, k int) {
	t.Helper()
	deadline := time.Now().Add(svcTimeout)
	for len(upOn(nodes, svc)) != k {
		if time.Now().After(deadline) {
			t.Fatalf("%s: up on %v, want %d instances", svc, upOn(nodes, svc), k)
		}
		time.Sleep(pollEvery)
	}
}

func (n *nemesis) logf(format string, args ...any) {
	line := time.Now().Format("15:04:05.000") + " " + fmt.Sprintf(format, args...)
	n.log = append(n.log, line)
	n.t.Log(line)
}

// between returns a random duration in [lo, hi).
func (n *nemesis) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)))
}

// idxs is 1..size.
func (n *nemesis) idxs() []int {
	out := make([]int, len(n.c.nodes))
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// victim returns a random node, most often the one running the failover
// service: faults there are the ones that can double it.
func (n *nemesis) victim() int {
	if up := upOn(n.c.nodes, "web"); len(up) == 1 && n.rng.IntN(5) < 3 {
		i, _ := strconv.Atoi(strings.TrimPrefix(up[0], "n"))
		return i
	}
	return 1 + n.rng.IntN(len(n.c.nodes))
}

// split returns a random minority and the majority, the minority most
// often holding the failover service.
func (n *nemesis) split() (minority, majority []int) {
	all := n.idxs()
	n.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	v := n.victim()
	j := slices.Index(all, v)
	all[0], all[j] = all[j], all[0]
	k := 1 + n.rng.IntN((len(all)-1)/2)
	minority, majority = slices.Clone(all[:k]), slices.Clone(all[k:])
	slices.Sort(minority)
	slices.Sort(majority)
	return minority, majority
}

// step runs one fault of the schedule and its recovery.
func (n *nemesis) step() {
	hold := n.between(3*time.Second, 14*time.Second)
	start := time.Now()
	netExcuse := nemesisDetect + nemesisReady + 2*nemesisCheck
	agentExcuse := nemesisDetect + 2*nemesisCheck
	k := n.rng.IntN(7)
	switch k {
	case 0: // majority/minority partition
		a, b := n.split()
		n.logf("partition %v | %v for %v", a, b, hold)
		n.ns.partition(a, b)
		time.Sleep(hold)
		n.ns.heal()
		n.netWindow(start, "partition", netExcuse)
	case 1: // bridge: two sides that reach one node in the middle only
		all := n.idxs()
		n.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		mid := all[0]
		rest := all[1:]
		cut := 1 + n.rng.IntN(len(rest)-1)
		a, b := rest[:cut], rest[cut:]
		n.logf("bridge %v | %d | %v for %v", a, mid, b, hold)
		n.ns.partition(a, b)
		time.Sleep(hold)
		n.ns.heal()
		n.netWindow(start, "bridge", netExcuse)
	case 2: // one-way
		from, to := n.pair()
		n.logf("one-way %d -> %d dropped for %v", from, to, hold)
		n.ns.drop([]int{from}, []int{to}, 100)
		time.Sleep(hold)
		n.ns.heal()
		n.netWindow(start, "one-way", netExcuse)
	case 3: // flapping link
		a, b := n.pair()
		n.logf("flapping %d <-> %d for %v", a, b, hold)
		for end := time.Now().Add(hold); time.Now().Before(end); {
			n.ns.partition([]int{a}, []int{b})
			time.Sleep(n.between(300*time.Millisecond, 1500*time.Millisecond))
			n.ns.heal()
			time.Sleep(n.between(300*time.Millisecond, 1500*time.Millisecond))
		}
		n.netWindow(start, "flapping", netExcuse)
	case 4: // kill -9 of the agent alone
		i := n.victim()
		nd := n.c.node(i)
		n.logf("kill -9 agent of %s, back after %v", nd.name, hold)
		nd.signal(syscall.SIGKILL)
		nd.wait()
		time.Sleep(hold)
		nd.restart()
		n.agentWindow(i, start, "crash", agentExcuse)
	case 5: // SIGSTOP past failure detection
		i := n.victim()
		nd := n.c.node(i)
		pause := n.between(6*time.Second, 16*time.Second)
		n.logf("SIGSTOP agent of %s for %v", nd.name, pause)
		nd.signal(syscall.SIGSTOP)
		time.Sleep(pause)
		nd.signal(syscall.SIGCONT)
		n.agentWindow(i, start, "pause", agentExcuse)
	case 6: // graceful restart
		i := n.victim()
		nd := n.c.node(i)
		n.logf("SIGTERM agent of %s, back after %v", nd.name, hold)
		nd.stop()
		time.Sleep(hold)
		nd.restart()
		n.agentWindow(i, start, "restart", agentExcuse)
	}
	// A quiet spell: after an agent fault, long enough for the excused
	// duplicate to be resolved before the next fault.
	quiet := n.between(2*time.Second, 6*time.Second)
	if k >= 4 {
		quiet = n.between(4*time.Second, 8*time.Second)
	}
	n.logf("quiet %v", quiet)
	time.Sleep(quiet)
}

// pair returns two distinct random nodes.
func (n *nemesis) pair() (int, int) {
	a := 1 + n.rng.IntN(len(n.c.nodes))
	b := 1 + n.rng.IntN(len(n.c.nodes)-1)
	if b >= a {
		b++
	}
	return a, b
}

func (n *nemesis) netWindow(from time.Time, what string, excuse time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.netFault = append(n.netFault, window{from: from, to: time.Now().Add(excuse), what: what})
}

func (n *nemesis) agentWindow(i int, from time.Time, what string, excuse time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	back := time.Now()
	n.agentOut[i] = append(n.agentOut[i], window{from: from, to: back.Add(excuse), what: what, back: back})
	// An agent fault during a network fault's replacement window delays
	// the replacement (the node chosen to start the instance may be the
	// one that went away): the window runs from its return.
	for _, w := range n.netFault {
		if !from.After(w.to) {
			n.netFault = append(n.netFault, window{from: from, to: back.Add(nemesisDetect + nemesisReady + 2*nemesisCheck), what: what + " during a network fault"})
			break
		}
	}
}

// finalHeal removes every fault: the network healed, every agent running.
func (n *nemesis) finalHeal() {
	n.ns.heal()
	for _, nd := range n.c.nodes {
		if !nd.running() {
			nd.restart()
		}
	}
	n.logf("final heal")
}

// settle waits for exactly one failover instance and exactly the flex
// target, and for the agents to agree on it.
func (n *nemesis) settle() {
	t := n.t
	deadline := time.Now().Add(nemesisSettle)
	for {
		web, api := upOn(n.c.nodes, "web"), upOn(n.c.nodes, "api")
		if len(web) == 1 && len(api) == n.target {
			n.logf("settled: web on %v, api on %v", web, api)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("not settled %v after the final heal: web up on %v, api up on %v (target %d)", nemesisSettle, web, api, n.target)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// excusedAgent reports whether node i's agent is away or in its excuse
// window at time at.
func (n *nemesis) excusedAgent(i int, at time.Time) bool {
	for _, w := range n.agentOut[i] {
		if !at.Before(w.from) && !at.After(w.to) {
			return true
		}
	}
	return false
}

// excusedNet reports whether a network fault or its excuse covers at.
func (n *nemesis) excusedNet(at time.Time) bool {
	for _, w := range n.netFault {
		if !at.Before(w.from) && !at.After(w.to) {
			return true
		}
	}
	return false
}

// startChecker samples the state files every 20 ms. The windows of the
// fault in progress are not known yet, so samples are kept and judged
// afterwards (verify), except that every sample is counted.
func (n *nemesis) startChecker() (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	type sample struct {
		at       time.Time
		web, api []string
	}
	var samples []sample
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			samples = append(samples, sample{at: time.Now(), web: upOn(n.c.nodes, "web"), api: upOn(n.c.nodes, "api")})
		}
	}()
	return func() {
		close(quit)
		<-done
		n.mu.Lock()
		defer n.mu.Unlock()
		n.samples = len(samples)
		var cur *window
		for _, s := range samples {
			if len(s.web) > 1 {
				if cur == nil {
					n.dups = append(n.dups, window{from: s.at, what: strings.Join(s.web, " ")})
					cur = &n.dups[len(n.dups)-1]
				}
				cur.to = s.at
				plain := 0
				for _, name := range s.web {
					i, _ := strconv.Atoi(strings.TrimPrefix(name, "n"))
					if !n.excusedAgent(i, s.at) {
						plain++
					}
				}
				if plain > 1 && len(n.violations) < 20 {
					n.violations = append(n.violations, fmt.Sprintf("%s: web up on %v (not excused)", s.at.Format("15:04:05.000"), s.web))
				}
			} else {
				cur = nil
			}
			if len(s.api) < n.target && !n.excusedNet(s.at) && len(n.violations) < 20 {
				n.violations = append(n.violations, fmt.Sprintf("%s: api up on %v, below its target %d (no network fault to excuse it)",
					s.at.Format("15:04:05.000"), s.api, n.target))
			}
		}
	}
}

// verify reports the violations, and checks that every duplicate episode
// came with an instance_duplicate event on some node.
func (n *nemesis) verify() {
	t := n.t
	n.mu.Lock()
	violations, dups := n.violations, n.dups
	n.mu.Unlock()
	if n.samples < 100 {
		t.Errorf("only %d samples of the state files", n.samples)
	}
	for _, v := range violations {
		t.Error(v)
	}
	if len(dups) == 0 {
		return
	}
	var times []time.Time
	for _, nd := range n.c.nodes {
		for _, r := range nd.journalEvents() {
			if r.Data["id"] == "instance_duplicate" && r.Data["svcname"] == "web" {
				times = append(times, r.Time)
			}
		}
	}
	for _, d := range dups {
		ok := false
		for _, at := range times {
			// The event comes once fresh data confirms the duplicate: at
			// the latest when it is resolved, a few ms before the files
			// show it.
			if !at.Before(d.from.Add(-time.Second)) && !at.After(d.to.Add(2*time.Second)) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("duplicate %s from %s to %s without an instance_duplicate event (events at %v)",
				d.what, d.from.Format("15:04:05.000"), d.to.Format("15:04:05.000"), times)
		}
	}
}
