package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/heartbeat"
	"agent/monitor"
)

// hbNode is one in-process node: a monitor store and its heartbeat on
// 127.0.0.1, with memberlist's real transport and the profile of its
// nodeOpts (`local` unless said otherwise).
type hbNode struct {
	name   string
	opts   nodeOpts
	port   int
	store  *monitor.Store
	hb     *heartbeat.Heartbeat
	cancel context.CancelFunc
	done   chan error
	closed bool

	// seen is told about every patch record of another node's change.
	mu   sync.Mutex
	seen func(node string, data json.RawMessage)
}

func (n *hbNode) publish(nodename, kind string, data json.RawMessage) {
	if kind != monitor.KindPatch || nodename == n.name {
		return
	}
	n.mu.Lock()
	fn := n.seen
	n.mu.Unlock()
	if fn != nil {
		fn(nodename, data)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// hbCluster is count in-process nodes joined through n1.
type hbCluster struct {
	cluster string
	nodes   []*hbNode
}

// nodeOpts shape the in-process nodes of a bench cluster.
type nodeOpts struct {
	// profile is the heartbeat profile; default local.
	profile string
	// tune adjusts memberlist's config last (--memberlist).
	tune func(*memberlist.Config)
	// drop, when set, drops the incoming user messages it returns true
	// for, given the receiving node's name.
	drop func(node string, msg []byte) bool
}

func startNode(cluster, name string, seeds []string, o nodeOpts, port int) (*hbNode, error) {
	n := &hbNode{name: name, opts: o, done: make(chan error, 1)}
	st, err := monitor.New(monitor.Config{Name: name, ClusterName: cluster, Publish: n.publish, Logger: quiet()})
	if err != nil {
		return nil, err
	}
	cfg := heartbeat.Config{
		Name: name, ClusterName: cluster, BindAddr: "127.0.0.1", BindPort: port,
		Profile: cmp.Or(o.profile, "local"), Seeds: seeds, ForgetAfter: time.Hour, Logger: quiet(), Tune: o.tune,
	}
	if o.drop != nil {
		cfg.DropIncoming = func(msg []byte) bool { return o.drop(name, msg) }
	}
	hb, err := heartbeat.New(cfg, st)
	if err != nil {
		return nil, err
	}
	_, p, _ := net.SplitHostPort(hb.Addr())
	n.port, _ = strconv.Atoi(p)
	n.store, n.hb = st, hb
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- hb.Run(ctx) }()
	if _, _, err := st.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = monitor.StatusIdle }); err != nil {
		return nil, err
	}
	return n, nil
}

// kill stops a node without leaving, as SIGKILL would: its sockets close
// at once, without a goodbye.
func (n *hbNode) kill() { n.stop(true) }

// stop stops a node without leaving. crash: as a SIGKILL (kill); else
// without a trace peers can take as a crash, what a host that lost power
// or a cut cable looks like to them (the crash watch gets a goodbye and
// leaves the node to memberlist's failure detector).
func (n *hbNode) stop(crash bool) {
	if n.closed {
		return
	}
	n.closed = true
	if crash {
		_ = n.hb.Abort()
	} else {
		_ = n.hb.Close()
	}
	n.cancel()
	<-n.done
}

func startHBCluster(count int, o nodeOpts) (*hbCluster, error) {
	c := &hbCluster{cluster: fmt.Sprintf("bench-%d", rand.IntN(1e6))}
	first, err := startNode(c.cluster, "n1", nil, o, 0)
	if err != nil {
		return nil, err
	}
	c.nodes = append(c.nodes, first)
	seed := []string{first.hb.Addr()}
	for i := 2; i <= count; i++ {
		n, err := startNode(c.cluster, fmt.Sprintf("n%d", i), seed, o, 0)
		if err != nil {
			c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	if err := c.waitConverged(time.Duration(count) * 5 * time.Second); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *hbCluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.kill() }()
	}
	wg.Wait()
}

// waitConverged waits until every node holds every node's current gen.
func (c *hbCluster) waitConverged(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, owner := range c.nodes {
			gen, _, _ := owner.store.Local()
			for _, n := range c.nodes {
				if g, _, held := n.store.Held(owner.name); !held || g != gen {
					ok = false
				}
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d nodes not converged within %v", len(c.nodes), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *hbCluster) stats() heartbeat.Stats {
	var s heartbeat.Stats
	for _, n := range c.nodes {
		if n.closed {
			continue
		}
		t := n.hb.Stats()
		s.BytesSent += t.BytesSent
		s.Resyncs += t.Resyncs
		s.FullRequests += t.FullRequests
		s.FullSent += t.FullSent
		s.DeltasSent += t.DeltasSent
	}
	return s
}

// propagation is the result of a propagation run.
type propagation struct {
	lat            []time.Duration // change on A → applied on B, one per (change, B)
	changes        int
	bytesPerChange float64
	resyncs        uint64 // full data re-sent after a gap
	fullRequests   uint64
	lost           int // (change, B) pairs not applied within the bound
}

// measurePropagation changes one node's frozen value samples times, in
// turn on each node, and records when each other node applies it.
func (c *hbCluster) measurePropagation(samples int) propagation {
	var res propagation
	type pending struct {
		value string
		t0    time.Time
		got   map[string]bool
		done  chan struct{}
	}
	var mu sync.Mutex
	var cur *pending
	for _, n := range c.nodes {
		name := n.name
		n.mu.Lock()
		n.seen = func(_ string, data json.RawMessage) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if cur == nil || cur.got[name] || !bytes.Contains(data, []byte(cur.value)) {
				return
			}
			cur.got[name] = true
			res.lat = append(res.lat, now.Sub(cur.t0))
			if len(cur.got) == len(c.nodes)-1 {
				close(cur.done)
			}
		}
		n.mu.Unlock()
	}
	before := c.stats()
	base := time.Now().Unix()
	for i := range samples {
		a := c.nodes[i%len(c.nodes)]
		v := base + int64(i) + 1
		p := &pending{value: strconv.FormatInt(v, 10), got: map[string]bool{}, done: make(chan struct{})}
		mu.Lock()
		cur = p
		p.t0 = time.Now()
		mu.Unlock()
		if _, _, err := a.store.UpdateLocal("bench", func(d *monitor.NodeData) { d.Frozen = v }); err != nil {
			panic(err)
		}
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			mu.Lock()
			res.lost += len(c.nodes) - 1 - len(p.got)
			mu.Unlock()
		}
		// A pause longer than the coalescing window: each change is sent
		// on its own, as changes spread in time are.
		time.Sleep(time.Duration(10+rand.IntN(20)) * time.Millisecond)
	}
	mu.Lock()
	cur = nil
	mu.Unlock()
	after := c.stats()
	res.changes = samples
	res.bytesPerChange = float64(after.BytesSent-before.BytesSent) / float64(samples)
	res.resyncs = after.Resyncs - before.Resyncs
	res.fullRequests = after.FullRequests - before.FullRequests
	return res
}

// measureDetection kills the last node without a leave and returns how
// long until every other node has it dead.
func (c *hbCluster) measureDetection() (time.Duration, error) {
	victim := c.nodes[len(c.nodes)-1]
	t0 := time.Now()
	victim.kill()
	deadline := t0.Add(2 * time.Minute)
	for {
		all := true
		for _, n := range c.nodes[:len(c.nodes)-1] {
			if n.store.Members()[victim.name].State != monitor.StateDead {
				all = false
				break
			}
		}
		if all {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s not dead everywhere after 2m", victim.name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
