package sim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"agent/heartbeat"
	"agent/internal/faultnet"
	"agent/monitor"
)

// tracker records when each receiver's store reaches the generation of a
// watched change. Its observers run under each store's lock; mu is a leaf.
type tracker struct {
	index map[string]int // node name → index; read only after newTracker

	mu     sync.Mutex
	probes map[int]*probe // by owner index
}

// probe is one watched change: owner's data reaching gen.
type probe struct {
	gen   uint64
	t0    time.Time
	got   []bool
	count int
	need  int // receivers for 99 %
	all   int // every receiver
	t1    time.Duration
	t99   time.Duration
	t100  time.Duration
	done  chan struct{}
}

func newTracker(names []string) *tracker {
	t := &tracker{index: make(map[string]int, len(names)), probes: map[int]*probe{}}
	for i, n := range names {
		t.index[n] = i
	}
	return t
}

// observer is the store observer of receiver i.
func (t *tracker) observer(i int) func(node string, old, new *monitor.NodeData) {
	return func(node string, _, new *monitor.NodeData) {
		if new == nil {
			return
		}
		owner, ok := t.index[node]
		if !ok || owner == i {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		p := t.probes[owner]
		if p == nil || new.Gen < p.gen || p.got[i] {
			return
		}
		p.got[i] = true
		p.count++
		el := time.Since(p.t0)
		if p.count == 1 {
			p.t1 = el
		}
		if p.count == p.need {
			p.t99 = el
		}
		if p.count == p.all {
			p.t100 = el
			close(p.done)
		}
	}
}

// watch starts watching owner's data reaching gen, from now.
func (t *tracker) watch(owner int, gen uint64, nodes int) *probe {
	all := nodes - 1
	p := &probe{gen: gen, t0: time.Now(), got: make([]bool, nodes), all: all,
		need: (99*all + 99) / 100, done: make(chan struct{})}
	t.mu.Lock()
	t.probes[owner] = p
	t.mu.Unlock()
	return p
}

// unwatch stops watching owner and returns what the probe saw.
func (t *tracker) unwatch(owner int, p *probe) Spread {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.probes[owner] == p {
		delete(t.probes, owner)
	}
	return Spread{T1: p.t1, T99: p.t99, T100: p.t100, Reached: p.count}
}

// Spread is how one change reached the other nodes.
type Spread struct {
	// Owner is the node that made the change.
	Owner string
	// T1, T99 and T100 are the times until the first, 99 % and 100 % of
	// the other nodes held it (wall time; zero when not reached). T100 less
	// T1 is mostly the owner sending to each peer in turn.
	T1, T99, T100 time.Duration
	// Reached is how many of the other nodes held it in the end.
	Reached int
}

// Spread makes samples changes, one at a time, each on a random node,
// and measures how each reaches the others. Each change sets a label to
// a value of at least size bytes (a small change when size is 0; over
// about 1.2 KiB the delta no longer fits a packet and goes by TCP to each
// peer). A change not everywhere within timeout is recorded with what it
// reached. pause separates two changes (plus a random part as long), so
// that each is sent on its own.
func (c *Cluster) Spread(ctx context.Context, samples, size int, pause, timeout time.Duration) ([]Spread, error) {
	var out []Spread
	for s := range samples {
		owner := c.rng.IntN(len(c.nodes))
		n := c.nodes[owner]
		gen, _, _ := n.Store.Local()
		p := c.track.watch(owner, gen+1, len(c.nodes))
		value := strconv.Itoa(s)
		if len(value) < size {
			value += strings.Repeat("x", size-len(value))
		}
		if _, _, err := n.Store.UpdateLocal("sim", func(d *monitor.NodeData) { d.Labels["spread"] = value }); err != nil {
			return out, err
		}
		wait := time.NewTimer(timeout)
		select {
		case <-p.done:
		case <-wait.C:
		case <-ctx.Done():
		}
		wait.Stop()
		sp := c.track.unwatch(owner, p)
		sp.Owner = n.Name
		out = append(out, sp)
		if sp.T100 == 0 || len(c.nodes) >= 500 {
			hb := c.HeartbeatStats()
			c.cfg.Progress("change %d of %d, on %s: reached %d of %d other nodes; 99 %% after %v, 100 %% after %v (wall); %s; resyncs so far %d, full sends %d",
				s+1, samples, n.Name, sp.Reached, len(c.nodes)-1, sp.T99.Round(time.Millisecond), sp.T100.Round(time.Millisecond),
				c.membership(), hb.Resyncs, hb.FullSent)
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if err := sleepCtx(ctx, pause+time.Duration(c.rng.Int64N(int64(pause)+1))); err != nil {
			return out, err
		}
	}
	return out, nil
}

// Traffic is what the cluster did during a measurement window.
type Traffic struct {
	// Window is the wall time measured.
	Window time.Duration
	// Changes is the number of changes made during it.
	Changes int
	// Net is the network's counters over the window, every node summed.
	Net faultnet.Counters
	// HB is the heartbeats' counters over the window, every node summed.
	HB heartbeat.Stats
	// CPU is the process's CPU time (user and system) over the window.
	CPU time.Duration
}

// BytesPerNodePerSec is the bytes each node sent (packets and streams) per
// second of the window, on average, in wall time.
func (t Traffic) BytesPerNodePerSec(nodes int) float64 {
	return float64(t.Net.BytesSent+t.Net.StreamBytesSent) / float64(nodes) / t.Window.Seconds()
}

// Traffic measures the window d while rate changes per second (wall time;
// 0: idle) are made, each on a random node.
func (c *Cluster) Traffic(ctx context.Context, d time.Duration, rate float64) (Traffic, error) {
	net0, hb0, cpu0 := c.net.Total(), c.HeartbeatStats(), cpuTime()
	t0 := time.Now()
	changes := 0
	var err error
	if rate <= 0 {
		err = sleepCtx(ctx, d)
	} else {
		every := time.Duration(float64(time.Second) / rate)
		tick := time.NewTicker(every)
		end := time.NewTimer(d)
	loop:
		for {
			select {
			case <-ctx.Done():
				err = ctx.Err()
				break loop
			case <-end.C:
				break loop
			case <-tick.C:
				n := c.nodes[c.rng.IntN(len(c.nodes))]
				value := strconv.Itoa(changes)
				if _, _, e := n.Store.UpdateLocal("sim", func(d *monitor.NodeData) { d.Labels["load"] = value }); e != nil {
					err = fmt.Errorf("change on %s: %w", n.Name, e)
					break loop
				}
				changes++
			}
		}
		tick.Stop()
		end.Stop()
	}
	return Traffic{
		Window: time.Since(t0), Changes: changes,
		Net: c.net.Total().Sub(net0), HB: SubStats(c.HeartbeatStats(), hb0), CPU: cpuTime() - cpu0,
	}, err
}

// HeartbeatStats is the counters the simulation reports, summed over
// every node's heartbeat.
func (c *Cluster) HeartbeatStats() heartbeat.Stats {
	var s heartbeat.Stats
	for _, n := range c.nodes {
		s = addStats(s, n.Heartbeat.Stats())
	}
	return s
}

// addStats sums the counters the simulation reports.
func addStats(a, b heartbeat.Stats) heartbeat.Stats {
	a.DeltasSent += b.DeltasSent
	a.DeltasApplied += b.DeltasApplied
	a.FullSent += b.FullSent
	a.FullRequests += b.FullRequests
	a.Resyncs += b.Resyncs
	a.Divergences += b.Divergences
	a.DigestsSent += b.DigestsSent
	a.QueueOverflows += b.QueueOverflows
	a.SendErrors += b.SendErrors
	a.BytesSent += b.BytesSent
	return a
}

// SubStats returns the counters the simulation reports (deltas and full
// copies sent and applied, full requests, resyncs, divergences, digests,
// queue overflows, send errors, bytes) of a less those of an earlier b.
func SubStats(a, b heartbeat.Stats) heartbeat.Stats {
	a.DeltasSent -= b.DeltasSent
	a.DeltasApplied -= b.DeltasApplied
	a.FullSent -= b.FullSent
	a.FullRequests -= b.FullRequests
	a.Resyncs -= b.Resyncs
	a.Divergences -= b.Divergences
	a.DigestsSent -= b.DigestsSent
	a.QueueOverflows -= b.QueueOverflows
	a.SendErrors -= b.SendErrors
	a.BytesSent -= b.BytesSent
	return a
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Join is how a node joining the cluster got and gave the data.
type Join struct {
	// Holds is the time until the newcomer held every node's data; Held,
	// until every node held the newcomer's (wall time).
	Holds, Held time.Duration
	// Net is the network's counters from the start until both were done,
	// every node summed.
	Net faultnet.Counters
}

// JoinOne starts one more node, joining through n1, waits until it holds
// every node's data and every node holds its own, then has it leave. The
// cluster is not the same afterwards (a node joined and left): this is
// the last measurement to make on it.
func (c *Cluster) JoinOne(ctx context.Context, timeout time.Duration) (Join, error) {
	name := fmt.Sprintf("n%d", len(c.nodes)+1)
	net0 := c.net.Total()
	t0 := time.Now()
	n, err := c.startNode(name, -1, []string{c.net.Addr(c.nodes[0].Name)})
	if err != nil {
		return Join{}, err
	}
	defer func() {
		_ = n.Heartbeat.Leave(c.cfg.scale(time.Second))
		n.stop()
	}()
	var j Join
	deadline := t0.Add(timeout)
	for j.Holds == 0 || j.Held == 0 {
		now := time.Now()
		if j.Holds == 0 && len(n.Store.NodeNames()) == len(c.nodes)+1 {
			j.Holds = now.Sub(t0)
		}
		if j.Held == 0 {
			all := true
			for _, m := range c.nodes {
				if _, _, ok := m.Store.Held(name); !ok {
					all = false
					break
				}
			}
			if all {
				j.Held = now.Sub(t0)
			}
		}
		if now.After(deadline) {
			return j, fmt.Errorf("sim: %s joined: holds all data %v, held by all %v, after %v", name, j.Holds > 0, j.Held > 0, timeout)
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return j, err
		}
	}
	j.Net = c.net.Total().Sub(net0)
	return j, nil
}

// membership says how whole the membership is: the fewest members a node
// sees, and how many nodes see fewer than all.
func (c *Cluster) membership() string {
	least, short := len(c.nodes), 0
	for _, n := range c.nodes {
		m := n.Heartbeat.Memberlist().NumMembers()
		least = min(least, m)
		if m < len(c.nodes) {
			short++
		}
	}
	return fmt.Sprintf("%d nodes see fewer than %d members, the fewest %d", short, len(c.nodes), least)
}
