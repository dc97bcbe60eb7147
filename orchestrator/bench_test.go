package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/config"
	"agent/heartbeat"
	"agent/monitor"
)

// hbNode is one agent of a benchmark cluster: a store, a real heartbeat on
// loopback and an orchestrator.
type hbNode struct {
	name   string
	store  *monitor.Store
	hb     *heartbeat.Heartbeat
	orch   *Orchestrator
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu       sync.Mutex
	downAt   map[string]time.Time // node_down seen, by node
	startAt  time.Time            // instance_start emitted here
	startWhy string
	dupAt    time.Time // instance_duplicate emitted here
	dupStop  time.Time // instance_stop reason duplicate emitted here
}

func (n *hbNode) publish(_, kind string, data json.RawMessage) {
	if kind == monitor.KindEvent {
		var e struct{ ID, Reason, Node string }
		_ = json.Unmarshal(data, &e)
		now := time.Now()
		n.mu.Lock()
		switch e.ID {
		case "node_down":
			n.downAt[e.Node] = now
		case EventInstanceStart:
			n.startAt, n.startWhy = now, e.Reason
		case EventInstanceDuplicate:
			n.dupAt = now
		case EventInstanceStop:
			if e.Reason == ReasonDuplicate {
				n.dupStop = now
			}
		}
		n.mu.Unlock()
	}
	// Every record (a patch of the data or of the membership) may change
	// a decision: this is how the agent should wire Notify too.
	if n.orch != nil {
		n.orch.Notify()
	}
}

func (n *hbNode) kill() {
	n.once.Do(func() {
		n.cancel()
		n.wg.Wait()
		_ = n.hb.Close()
		_ = n.orch.Close()
	})
}

type timings struct {
	profile string
	tune    func(*memberlist.Config)
	ready   time.Duration
	// quorum turns quorum on, with a memberlist ping as the prober and
	// the default lease.
	quorum bool
}

// pingProber probes a peer with a memberlist ping, as the agent does.
type pingProber struct{ n *hbNode }

func (p pingProber) Probe(_ context.Context, node string) error {
	m, ok := p.n.store.Members()[node]
	if !ok {
		return fmt.Errorf("no member %s", node)
	}
	addr, err := net.ResolveUDPAddr("udp", m.Addr)
	if err != nil {
		return err
	}
	_, err = p.n.hb.Memberlist().Ping(node, addr)
	return err
}

func startHBNode(b *testing.B, name string, seeds []string, w *world, tm timings) *hbNode {
	return startHBNodeOn(b, name, 0, seeds, w, tm, false)
}

// startHBNodeOn starts a node on port (0: any). With rejoin it behaves as
// a restarting agent: status rejoin until it holds its peers' data and
// its first checks are in, then idle.
func startHBNodeOn(b *testing.B, name string, port int, seeds []string, w *world, tm timings, rejoin bool) *hbNode {
	n := &hbNode{name: name, downAt: map[string]time.Time{}}
	st, err := monitor.New(monitor.Config{Name: name, ClusterName: "bench", Publish: n.publish, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	n.store = st
	n.hb, err = heartbeat.New(heartbeat.Config{
		Name: name, ClusterName: "bench", BindAddr: "127.0.0.1", BindPort: port, Seeds: seeds, Profile: tm.profile,
		ForgetAfter: time.Hour, Tune: tm.tune, Logger: quietLogger(),
	}, st)
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Store: st, ReadyPeriod: tm.ready, Tick: 100 * time.Millisecond,
		Runner: &fakeRunner{w: w, node: name}, Logger: quietLogger()}
	if tm.quorum {
		cfg.Quorum, cfg.Prober = true, pingProber{n}
	}
	n.orch, err = New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(2)
	go func() { defer n.wg.Done(); _ = n.hb.Run(ctx) }()
	go func() { defer n.wg.Done(); _ = n.orch.Run(ctx) }()
	if !rejoin {
		_, _, _ = st.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = monitor.StatusIdle })
		return n
	}
	_, _, _ = st.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = monitor.StatusRejoin })
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for ctx.Err() == nil {
			if len(st.NodeNames()) == 3 && n.orch.Checked() {
				_, _, _ = st.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = monitor.StatusIdle })
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return n
}

func waitFor(b *testing.B, timeout time.Duration, cond func() bool, what string, state ...func() string) time.Time {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			more := ""
			for _, f := range state {
				more += f()
			}
			b.Fatalf("timeout waiting for %s%s", what, more)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Now()
}

// BenchmarkFailover measures, in a three-node in-process cluster over real
// memberlist on loopback, the time from killing the node that runs a
// failover service to the instance up on the next node, and its parts:
// detection (kill to node_down on the next node), ready (node_down to
// instance_start: the ready period and the evaluation) and start (the
// start command and the check after it; the fake runner is instant).
func BenchmarkFailover(b *testing.B) {
	for _, tm := range []struct {
		name string
		timings
	}{
		{"defaults", timings{profile: "lan", ready: DefaultReadyPeriod}},
		{"defaults_quorum", timings{profile: "lan", ready: DefaultReadyPeriod, quorum: true}},
		{"local_profile_ready1s", timings{profile: "local", ready: time.Second}},
		{"fast_ms_ready50ms", timings{profile: "local", ready: 50 * time.Millisecond, tune: func(c *memberlist.Config) {
			c.ProbeInterval = 50 * time.Millisecond
			c.ProbeTimeout = 25 * time.Millisecond
			c.GossipInterval = 10 * time.Millisecond
			c.SuspicionMult = 2
		}}},
	} {
		b.Run(tm.name, func(b *testing.B) {
			reportPhases(b, func() [3]time.Duration {
				d, r, s := failoverOnce(b, tm.timings)
				return [3]time.Duration{d, r, s}
			}, "failover_ms", [3]string{"detect_ms", "ready_ms", "start_ms"})
		})
	}
}

// reportPhases runs once b.N times and reports the mean of each of the
// three phases it times, and of their sum (total), in milliseconds.
func reportPhases(b *testing.B, once func() [3]time.Duration, total string, phases [3]string) {
	var sum [3]time.Duration
	for range b.N {
		for i, d := range once() {
			sum[i] += d
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) / 1000 }
	b.ReportMetric(ms(sum[0]+sum[1]+sum[2]), total)
	for i, name := range phases {
		b.ReportMetric(ms(sum[i]), name)
	}
}

// webOnThree starts three nodes with the failover service web, waits
// until it runs on n1 and every node agrees, and returns the nodes (to
// kill at the end: *nodes may change) and the service.
func webOnThree(b *testing.B, w *world, tm timings) ([]*hbNode, config.Service) {
	n1 := startHBNode(b, "n1", nil, w, tm)
	nodes := []*hbNode{n1}
	for i := 2; i <= 3; i++ {
		nodes = append(nodes, startHBNode(b, fmt.Sprintf("n%d", i), []string{n1.hb.Addr()}, w, tm))
	}
	// Declared once everyone sees everyone: a node alone would be its
	// own leader.
	waitFor(b, 30*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.store.NodeNames()) != 3 {
				return false
			}
		}
		return true
	}, "the three nodes joined")
	svc := testService("web", config.Failover, "n1", "n2", "n3")
	svc.CheckInterval = time.Second
	for _, n := range nodes {
		s := svc
		if err := n.orch.SetService(&s); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, 30*time.Second, func() bool {
		for _, n := range nodes {
			if !n.orch.Done("web") || len(n.store.NodeNames()) != 3 {
				return false
			}
		}
		return w.upNodes("web")["n1"]
	}, "web up on n1 everywhere", func() string {
		out := ""
		for _, n := range nodes {
			out += "\n" + n.name + ": " + string(n.store.Document())
		}
		return out
	})
	return nodes, svc
}

func killAll(nodes []*hbNode) {
	for _, n := range nodes {
		n.kill()
	}
}

func failoverOnce(b *testing.B, tm timings) (detect, ready, start time.Duration) {
	b.StopTimer()
	w := newWorld()
	w.failover["web"] = true
	nodes, _ := webOnThree(b, w, tm)
	defer killAll(nodes)
	n1 := nodes[0]
	b.StartTimer()
	killed := time.Now()
	n1.kill()
	w.setUp("n1", "web", false)
	upAt := waitFor(b, 60*time.Second, func() bool { return w.upNodes("web")["n2"] }, "web up on n2")
	b.StopTimer()
	n2 := nodes[1]
	n2.mu.Lock()
	downAt, startAt, why := n2.downAt["n1"], n2.startAt, n2.startWhy
	n2.mu.Unlock()
	if why != ReasonFailover {
		b.Errorf("start reason %q", why)
	}
	if v := w.violated(); len(v) > 0 {
		b.Fatalf("violations: %v", v)
	}
	return downAt.Sub(killed), startAt.Sub(downAt), upAt.Sub(startAt)
}

// BenchmarkDuplicateResolution measures, in a three-node in-process
// cluster over real memberlist on loopback, how long a duplicate lasts
// once the agent that crashed alone is back: web runs on n1, n1's agent
// dies (web keeps running there), n2 fails it over, then n1's agent
// starts again on its address. From that start to n2's instance_stop
// (reason duplicate), in parts: rejoin (the agent back to status idle:
// peers' data in, first check published), confirm (idle to
// instance_duplicate on n2: the recheck handshake) and stop (to web down
// on n2; the fake stop command is instant).
func BenchmarkDuplicateResolution(b *testing.B) {
	for _, tm := range []struct {
		name string
		timings
	}{
		{"defaults", timings{profile: "lan", ready: DefaultReadyPeriod}},
		{"local_profile_ready1s", timings{profile: "local", ready: time.Second}},
	} {
		b.Run(tm.name, func(b *testing.B) {
			reportPhases(b, func() [3]time.Duration {
				r, c, s := duplicateOnce(b, tm.timings)
				return [3]time.Duration{r, c, s}
			}, "resolve_ms", [3]string{"rejoin_ms", "confirm_ms", "stop_ms"})
		})
	}
}

func duplicateOnce(b *testing.B, tm timings) (rejoin, confirm, stop time.Duration) {
	b.StopTimer()
	w := newWorld()
	nodes, svc := webOnThree(b, w, tm)
	defer func() { killAll(nodes) }()
	n1 := nodes[0]
	_, port, err := net.SplitHostPort(n1.hb.Addr())
	if err != nil {
		b.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	n1.kill() // the agent alone: web stays up in the world
	waitFor(b, 60*time.Second, func() bool { return w.upNodes("web")["n2"] }, "web failed over to n2")
	b.StartTimer()
	back := time.Now()
	n1 = startHBNodeOn(b, "n1", p, []string{nodes[1].hb.Addr()}, w, tm, true)
	nodes[0] = n1
	for _, s := range []config.Service{svc} {
		if err := n1.orch.SetService(&s); err != nil {
			b.Fatal(err)
		}
	}
	idle := waitFor(b, 60*time.Second, func() bool {
		_, _, d := n1.store.Local()
		return d.Status == monitor.StatusIdle
	}, "n1 idle again")
	downAt := waitFor(b, 60*time.Second, func() bool { return !w.upNodes("web")["n2"] }, "the duplicate on n2 stopped")
	b.StopTimer()
	n2 := nodes[1]
	n2.mu.Lock()
	dupAt, stopAt := n2.dupAt, n2.dupStop
	n2.mu.Unlock()
	if dupAt.IsZero() || stopAt.IsZero() {
		b.Fatalf("n2: instance_duplicate at %v, stop at %v", dupAt, stopAt)
	}
	return idle.Sub(back), dupAt.Sub(idle), downAt.Sub(dupAt)
}
