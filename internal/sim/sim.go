package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/heartbeat"
	"agent/internal/faultnet"
	"agent/monitor"
)

// Config says what cluster to simulate.
type Config struct {
	// Nodes is the cluster size (at least 2).
	Nodes int
	// Scale is k, the factor every timing is multiplied by; default 1
	// (real time).
	Scale float64
	// Seed drives the network's random choices and the simulation's
	// (which node changes, who joins through whom).
	Seed uint64
	// JoinBatch is how many nodes start at once; each waits for the
	// batch before it to have joined. Default 50.
	JoinBatch int
	// StartTimeout bounds the start-up, until every node sees every
	// other alive and holds its data; default 2 minutes plus 1 s per
	// node, times Scale.
	StartTimeout time.Duration
	// Heartbeat, when set, adjusts each node's heartbeat config last.
	Heartbeat func(*heartbeat.Config)
	// Memberlist, when set, adjusts each node's memberlist config last
	// (after the scaling and the transport).
	Memberlist func(*memberlist.Config)
	// Progress, when set, is told what a long start-up is doing.
	Progress func(format string, args ...any)
}

// Node is one simulated node.
type Node struct {
	// Name is the node's name (n1 … nN).
	Name string
	// Store is its monitor store.
	Store *monitor.Store
	// Heartbeat is its heartbeat.
	Heartbeat *heartbeat.Heartbeat

	cancel context.CancelFunc
	done   chan error
}

// Cluster is a running simulated cluster.
type Cluster struct {
	cfg   Config
	net   *faultnet.Network
	nodes []*Node
	track *tracker
	rng   *rand.Rand
	// Goroutines is the process's goroutine count once the cluster has
	// converged, before any measurement.
	Goroutines int
	// StartTime is how long the start-up took, until convergence.
	StartTime time.Duration
}

// Start starts cfg.Nodes nodes, joins them into one cluster and waits
// until every node sees every other alive and holds every node's current
// data. On error, whatever started is stopped.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Nodes < 2 {
		return nil, fmt.Errorf("sim: %d nodes: want at least 2", cfg.Nodes)
	}
	if cfg.Scale == 0 {
		cfg.Scale = 1
	}
	if cfg.Scale < 1 {
		return nil, fmt.Errorf("sim: scale %g: want 1 or more", cfg.Scale)
	}
	if cfg.JoinBatch <= 0 {
		cfg.JoinBatch = 50
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = cfg.scale(2*time.Minute + time.Duration(cfg.Nodes)*time.Second)
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string, ...any) {}
	}
	c := &Cluster{
		cfg: cfg,
		// A node's packets arrive in bursts when many peers probe it or
		// answer it at once; a real socket buffer holds hundreds.
		net: faultnet.New(cfg.Seed, faultnet.Options{PacketBuffer: 4096}),
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x5157)),
	}
	names := make([]string, cfg.Nodes)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i+1)
	}
	c.track = newTracker(names)
	t0 := time.Now()
	if err := c.startAll(ctx, names); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.completeMembership(ctx, time.Now().Add(cfg.StartTimeout-time.Since(t0))); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.WaitConverged(ctx, cfg.StartTimeout-time.Since(t0)); err != nil {
		c.Close()
		return nil, err
	}
	c.StartTime = time.Since(t0)
	c.Goroutines = runtime.NumGoroutine()
	return c, nil
}

// startAll starts the nodes batch by batch, each joining through n1,
// after the batch before it has joined. n1 then holds every member that
// joined before, and the push/pull of a join hands the newcomer the whole
// membership: joining through random older nodes instead left newcomers
// unaware of some members until the next push/pull (tens of seconds).
func (c *Cluster) startAll(ctx context.Context, names []string) error {
	deadline := time.Now().Add(c.cfg.StartTimeout)
	for lo := 0; lo < len(names); lo += c.cfg.JoinBatch {
		hi := min(lo+c.cfg.JoinBatch, len(names))
		for i := lo; i < hi; i++ {
			var seeds []string
			if i > 0 {
				seeds = []string{c.net.Addr(names[0])}
			}
			n, err := c.startNode(names[i], i, seeds)
			if err != nil {
				return err
			}
			c.nodes = append(c.nodes, n)
		}
		// The next batch joins through these: they must be in.
		for i := max(lo, 1); i < hi; i++ {
			for c.nodes[i].Heartbeat.Memberlist().NumMembers() < 2 {
				if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
					return err
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("sim: %s did not join within %v", names[i], c.cfg.StartTimeout)
				}
			}
		}
		c.cfg.Progress("%d of %d nodes started", hi, len(names))
	}
	return nil
}

// completeMembership has every node that does not see every other yet
// join n1 again, until all do. Nodes that joined in one batch learn of
// each other by gossip, which does not always reach everyone (few
// retransmits in a small cluster, and the broadcast queues of a thousand
// nodes hold thousands of news at start); memberlist's push/pull finds
// the rest, but only every 5 s × k × log2(N/32): minutes at 1000 nodes.
// A second push/pull with n1, which every node joined through, does it
// at once. This is the harness being impatient, not the protocol being
// helped: the measurements start after it.
//
// The joins run rejoinParallel at a time: one at a time, a round over
// 700 lagging nodes of a 1000-node cluster (each join a push/pull of
// the whole membership, waiting on n1 and on a starved scheduler) took
// longer than the nodes took to drift again.
func (c *Cluster) completeMembership(ctx context.Context, deadline time.Time) error {
	seed := []string{c.net.Addr(c.nodes[0].Name)}
	for {
		want := c.nodes[0].Heartbeat.Memberlist().NumMembers()
		var short []*memberlist.Memberlist
		missing := 0
		for _, n := range c.nodes[1:] {
			if ml := n.Heartbeat.Memberlist(); ml.NumMembers() < want {
				short = append(short, ml)
				missing += want - ml.NumMembers()
			}
		}
		if want == len(c.nodes) && len(short) == 0 {
			return nil
		}
		c.cfg.Progress("membership: n1 sees %d of %d nodes, %d nodes see fewer (%d members missing in all)", want, len(c.nodes), len(short), missing)
		if time.Now().After(deadline) {
			return fmt.Errorf("sim: membership incomplete after %v: n1 sees %d of %d nodes, %d nodes see fewer", c.cfg.StartTimeout, want, len(c.nodes), len(short))
		}
		work := make(chan *memberlist.Memberlist)
		var wg sync.WaitGroup
		for range min(rejoinParallel, len(short)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ml := range work {
					_, _ = ml.Join(seed)
				}
			}()
		}
		for _, ml := range short {
			work <- ml
		}
		close(work)
		wg.Wait()
		if err := sleepCtx(ctx, c.cfg.scale(time.Second)); err != nil {
			return err
		}
	}
}

// rejoinParallel is how many lagging nodes completeMembership joins to n1
// at once: well under memberlist's 128 push/pulls in flight per node.
const rejoinParallel = 8

// startNode starts node name; idx is its index for the tracker, or -1
// for a node the tracker does not follow.
func (c *Cluster) startNode(name string, idx int, seeds []string) (*Node, error) {
	st, err := monitor.New(monitor.Config{
		Name: name, ClusterName: "sim", Logger: quiet(),
		Publish: func(string, string, json.RawMessage) {},
	})
	if err != nil {
		return nil, err
	}
	if idx >= 0 {
		st.SetObserver(c.track.observer(idx))
	}
	k := c.cfg.Scale
	hc := heartbeat.Config{
		Name: name, ClusterName: "sim", Profile: "local", Seeds: seeds, Logger: quiet(),
		Tune: func(mc *memberlist.Config) {
			scaleMemberlist(mc, k)
			c.net.Install(mc)
			if c.cfg.Memberlist != nil {
				c.cfg.Memberlist(mc)
			}
		},
	}
	scaleHeartbeat(&hc, k)
	if c.cfg.Heartbeat != nil {
		c.cfg.Heartbeat(&hc)
	}
	hb, err := heartbeat.New(hc, st)
	if err != nil {
		return nil, fmt.Errorf("sim: node %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{Name: name, Store: st, Heartbeat: hb, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- hb.Run(ctx) }()
	if _, _, err := st.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = monitor.StatusIdle }); err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

// stop stops a node as a kill would (no leave).
func (n *Node) stop() {
	_ = n.Heartbeat.Close()
	n.cancel()
	<-n.done
}

// Close stops every node and the network.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, n := range c.nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			n.stop()
			<-sem
		}()
	}
	wg.Wait()
	c.nodes = nil
	c.net.Close()
}

// Nodes are the cluster's nodes, n1 first.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Network is the network the nodes talk over (counters, faults).
func (c *Cluster) Network() *faultnet.Network { return c.net }

// Scale is the cluster's time scale k.
func (c *Cluster) Scale() float64 { return c.cfg.Scale }

// ProbeInterval is the nodes' memberlist probe interval (scaled).
func (c *Cluster) ProbeInterval() time.Duration {
	return c.cfg.scale(memberlist.DefaultLocalConfig().ProbeInterval)
}

// Converged says whether every node sees every other alive and holds every
// node's current data, and if not, the first thing found missing.
func (c *Cluster) Converged() (bool, string) {
	gens := make([]uint64, len(c.nodes))
	for i, n := range c.nodes {
		gens[i], _, _ = n.Store.Local()
	}
	for _, n := range c.nodes {
		if got := n.Heartbeat.Memberlist().NumMembers(); got != len(c.nodes) {
			return false, fmt.Sprintf("%s sees %d members of %d", n.Name, got, len(c.nodes))
		}
		for j, owner := range c.nodes {
			if g, _, ok := n.Store.Held(owner.Name); !ok || g != gens[j] {
				return false, fmt.Sprintf("%s holds gen %d of %s, which is at %d", n.Name, g, owner.Name, gens[j])
			}
		}
	}
	return true, ""
}

// WaitConverged waits until Converged, at most timeout.
func (c *Cluster) WaitConverged(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for {
		ok, why := c.Converged()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sim: %d nodes not converged within %v: %s", len(c.nodes), timeout.Round(time.Second), why)
		}
		if time.Since(last) > 10*time.Second {
			c.cfg.Progress("converging: %s", why)
			last = time.Now()
		}
		// A check reads every node's copy of every node: a million
		// lookups at 1000 nodes. Not more than a tenth of the time.
		if err := sleepCtx(ctx, max(100*time.Millisecond, time.Duration(len(c.nodes)*len(c.nodes))*time.Microsecond)); err != nil {
			return err
		}
	}
}

func (cfg Config) scale(d time.Duration) time.Duration { return time.Duration(float64(d) * cfg.Scale) }

// scaleMemberlist multiplies memberlist's timings by k.
func scaleMemberlist(mc *memberlist.Config, k float64) {
	for _, d := range []*time.Duration{
		&mc.ProbeInterval, &mc.ProbeTimeout, &mc.GossipInterval, &mc.PushPullInterval,
		&mc.TCPTimeout, &mc.GossipToTheDeadTime, &mc.DeadNodeReclaimTime,
	} {
		*d = time.Duration(float64(*d) * k)
	}
}

// scaleHeartbeat sets the heartbeat's own timings to its defaults times k
// (left zero, the defaults, when k is 1).
func scaleHeartbeat(hc *heartbeat.Config, k float64) {
	if k == 1 {
		return
	}
	s := func(d time.Duration) time.Duration { return time.Duration(float64(d) * k) }
	hc.Coalesce = s(5 * time.Millisecond)
	hc.DigestDelay = s(200 * time.Millisecond)
	hc.DigestGrace = s(100 * time.Millisecond)
	hc.FullRetry = s(time.Second)
	hc.Refresh = s(time.Second)
	hc.ForgetAfter = s(5 * time.Minute)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
