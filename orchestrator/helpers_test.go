package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"agent/config"
	"agent/internal/testutil"
	"agent/monitor"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// world is the fake state of the service processes on every node: what
// the fake runner's start, stop and check act on. It records violations of
// "one failover instance up at a time".
type world struct {
	mu         sync.Mutex
	up         map[string]map[string]bool // svc -> node -> up
	failStart  map[string]bool            // node -> start fails
	failover   map[string]bool            // svc -> failover topology
	starts     map[string]int             // node/svc -> starts
	stops      map[string]int             // node/svc -> stops
	violations []string
	delay      time.Duration
	checkDelay map[string]time.Duration // node -> how long its checks take
	checking   map[string]int           // node -> checks begun
	rng        *rand.Rand
	// flex targets to watch: once reached, a stop below is a violation.
	flexTarget  map[string]int
	flexReached map[string]bool
}

func newWorld() *world {
	return &world{
		up: map[string]map[string]bool{}, failStart: map[string]bool{}, failover: map[string]bool{},
		starts: map[string]int{}, stops: map[string]int{}, checkDelay: map[string]time.Duration{}, checking: map[string]int{}, rng: rand.New(rand.NewSource(1)),
	}
}

func (w *world) setUp(node, svc string, up bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.setUpLocked(node, svc, up)
}

func (w *world) setUpLocked(node, svc string, up bool) {
	if w.up[svc] == nil {
		w.up[svc] = map[string]bool{}
	}
	w.up[svc][node] = up
	if up && w.failover[svc] {
		if n := len(w.upNodesLocked(svc)); n > 1 {
			w.violations = append(w.violations, fmt.Sprintf("%s up on %v", svc, w.upNodesLocked(svc)))
		}
	}
	if target, ok := w.flexTarget[svc]; ok {
		n := len(w.upNodesLocked(svc))
		switch {
		case n >= target:
			w.flexReached[svc] = true
		case !up && w.flexReached[svc]:
			w.violations = append(w.violations, fmt.Sprintf("%s below its target %d: up on %v", svc, target, w.upNodesLocked(svc)))
		}
	}
}

// watchFlex makes a stop that leaves svc below target a violation, once
// the target was reached.
func (w *world) watchFlex(svc string, target int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flexTarget == nil {
		w.flexTarget, w.flexReached = map[string]int{}, map[string]bool{}
	}
	w.flexTarget[svc] = target
}

// clearViolations forgets the violations recorded so far (a test that
// caused one on purpose).
func (w *world) clearViolations() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.violations = nil
}

func (w *world) upNodesLocked(svc string) []string {
	var out []string
	for n, u := range w.up[svc] {
		if u {
			out = append(out, n)
		}
	}
	return out
}

func (w *world) upNodes(svc string) map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for _, n := range w.upNodesLocked(svc) {
		out[n] = true
	}
	return out
}

func (w *world) count(m map[string]int, node, svc string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return m[node+"/"+svc]
}

func (w *world) setFailStart(node string, fail bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failStart[node] = fail
}

func (w *world) violated() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...)
}

// fakeRunner runs the commands of one node against the world.
type fakeRunner struct {
	w    *world
	node string
}

func (r *fakeRunner) Run(ctx context.Context, c Command) (int, error) {
	r.w.mu.Lock()
	if want := []string{"AGENT_NODENAME=" + r.node, "AGENT_SVCNAME=" + c.Service, "AGENT_ACTION=" + c.Action}; !slices.Equal(c.Env[max(0, len(c.Env)-3):], want) {
		r.w.violations = append(r.w.violations, fmt.Sprintf("%s %s on %s: environment %q, want it to end with %q", c.Service, c.Action, r.node, c.Env, want))
	}
	d := r.w.delay
	if d > 0 {
		d = time.Duration(r.w.rng.Int63n(int64(d)) + 1)
	}
	if c.Action == ActionCheck {
		d += r.w.checkDelay[r.node]
		r.w.checking[r.node]++
	}
	r.w.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return -1, ctx.Err()
		}
	}
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	key := r.node + "/" + c.Service
	switch c.Action {
	case ActionStart:
		r.w.starts[key]++
		if r.w.failStart[r.node] {
			return 1, nil
		}
		r.w.setUpLocked(r.node, c.Service, true)
	case ActionStop:
		r.w.stops[key]++
		r.w.setUpLocked(r.node, c.Service, false)
	case ActionCheck:
		if r.w.up[c.Service][r.node] {
			return 0, nil
		}
		return 1, nil
	}
	return 0, nil
}

// bus keeps the records a store publishes.
type bus struct {
	mu     sync.Mutex
	events []map[string]any
}

func (b *bus) publish(_, kind string, data json.RawMessage) {
	if kind != monitor.KindEvent {
		return
	}
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	b.mu.Lock()
	b.events = append(b.events, m)
	b.mu.Unlock()
}

// find returns the events with id and, when reason is set, that reason.
func (b *bus) find(id, reason string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, e := range b.events {
		if e["id"] == id && (reason == "" || e["reason"] == reason) {
			out = append(out, e)
		}
	}
	return out
}

// tnode is one agent of a test cluster: a store, an orchestrator and a
// relay that copies its data to the peers it is linked to.
type tnode struct {
	name   string
	store  *monitor.Store
	orch   *Orchestrator
	bus    *bus
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// cluster connects stores directly: a local change is copied whole to the
// linked peers (ApplyFull), membership is set by the test.
type cluster struct {
	t     testing.TB
	w     *world
	o     clusterOpts
	names []string

	mu       sync.Mutex
	nodes    []*tnode
	cut      map[[2]string]bool // unlinked pairs (data and probes)
	dead     map[string]bool
	services []config.Service
	persist  map[string]monitor.PersistentState
}

type clusterOpts struct {
	ready  time.Duration
	quorum bool
	split  config.SplitAction
	// membershipQuorum leaves ClusterNodes empty: the quorum counts the
	// high-water mark.
	membershipQuorum bool
	// probe gives each node a prober that answers across linked pairs
	// only, with this lease.
	probe time.Duration
	// disagreeAfter is Config.DisagreeAfter.
	disagreeAfter time.Duration
}

func newCluster(t testing.TB, names []string, o clusterOpts) *cluster {
	t.Helper()
	if o.ready == 0 {
		// The ready period is the time allowed for peers' data to arrive
		// before a start; with 50 ms, two suites under -race on two cores
		// delayed the relay enough for two nodes to start web together.
		o.ready = 200 * time.Millisecond
	}
	c := &cluster{t: t, w: newWorld(), o: o, names: names, cut: map[[2]string]bool{}, dead: map[string]bool{},
		persist: map[string]monitor.PersistentState{}}
	for _, name := range names {
		c.nodes = append(c.nodes, c.newNode(name))
	}
	for _, n := range c.nodes {
		for _, p := range c.nodes {
			if p != n {
				n.store.SetMember(p.name, monitor.StateAlive, "127.0.0.1:0")
			}
		}
	}
	for _, n := range c.nodes {
		c.run(n)
		_, _, _ = n.store.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = monitor.StatusIdle })
	}
	t.Cleanup(c.stop)
	return c
}

// newNode builds one node's store and orchestrator (restoring what its
// previous run persisted) without running them.
func (c *cluster) newNode(name string) *tnode {
	t := c.t
	b := &bus{}
	c.mu.Lock()
	restored := c.persist[name]
	c.mu.Unlock()
	st, err := monitor.New(monitor.Config{Name: name, ClusterName: "test", Publish: b.publish, Logger: quietLogger(),
		Restored: restored, Persist: func(p monitor.PersistentState) error {
			c.mu.Lock()
			c.persist[name] = p
			c.mu.Unlock()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	clusterNodes := c.names
	if c.o.membershipQuorum {
		clusterNodes = nil
	}
	cfg := Config{
		Store: st, ClusterNodes: clusterNodes, Quorum: c.o.quorum, SplitAction: c.o.split, ReadyPeriod: c.o.ready, Tick: 20 * time.Millisecond,
		Runner: &fakeRunner{w: c.w, node: name}, Logger: quietLogger(), DisagreeAfter: c.o.disagreeAfter,
	}
	if c.o.probe > 0 {
		cfg.Prober, cfg.Lease = &fakeProber{c: c, from: name}, c.o.probe
	}
	orch, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st.SetObserver(func(string, *monitor.NodeData, *monitor.NodeData) { orch.Notify() })
	return &tnode{name: name, store: st, orch: orch, bus: b, done: make(chan struct{})}
}

// run starts n's relay and orchestrator.
func (c *cluster) run(n *tnode) {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	relayDone := make(chan struct{})
	runDone := make(chan struct{})
	go func() { defer close(relayDone); c.relay(ctx, n) }()
	go func() { defer close(runDone); _ = n.orch.Run(ctx) }()
	go func() { <-relayDone; <-runDone; close(n.done) }()
}

// fakeProber answers across linked pairs only, after a short delay.
type fakeProber struct {
	c    *cluster
	from string
}

func (p *fakeProber) Probe(ctx context.Context, node string) error {
	select {
	case <-time.After(time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	if !p.c.linked(p.from, node) {
		return fmt.Errorf("no answer from %s", node)
	}
	return nil
}

// leave stops a node's agent gracefully: its service processes keep
// running, the others see it leave.
func (c *cluster) leave(name string) {
	n := c.node(name)
	// As the agent does: status shutting down, stop the orchestrator,
	// flush the last data to the peers, then leave.
	_, _, _ = n.store.UpdateLocal("shutdown", func(d *monitor.NodeData) { d.Status = monitor.StatusShuttingDown })
	n.shutdown()
	c.push(n)
	c.mu.Lock()
	c.dead[name] = true
	c.mu.Unlock()
	for _, p := range c.all() {
		if p != n {
			p.store.SetMember(name, monitor.StateLeft, "127.0.0.1:0")
			p.orch.Notify()
		}
	}
}

// crash stops a node's agent alone: its service processes keep running,
// the others declare it dead.
func (c *cluster) crash(name string) {
	n := c.node(name)
	c.mu.Lock()
	c.dead[name] = true
	c.mu.Unlock()
	n.shutdown()
	for _, p := range c.all() {
		if p != n {
			p.store.SetMember(name, monitor.StateDead, "127.0.0.1:0")
			p.orch.Notify()
		}
	}
}

// restart starts a crashed node's agent again, as the agent does: a new
// boot with the persisted state, status rejoin while it exchanges data
// with its peers and makes its first checks, then idle.
func (c *cluster) restart(name string) *tnode {
	c.t.Helper()
	n := c.newNode(name)
	c.mu.Lock()
	for i, x := range c.nodes {
		if x.name == name {
			c.nodes[i] = n
		}
	}
	delete(c.dead, name)
	svcs := append([]config.Service(nil), c.services...)
	c.mu.Unlock()
	_, _, _ = n.store.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = monitor.StatusRejoin })
	for _, s := range svcs {
		cp := s
		if err := n.orch.SetService(&cp); err != nil {
			c.t.Fatal(err)
		}
	}
	for _, p := range c.all() {
		if p != n {
			n.store.SetMember(p.name, monitor.StateAlive, "127.0.0.1:0")
		}
	}
	c.run(n)
	for _, p := range c.all() {
		if p != n {
			p.store.SetMember(name, monitor.StateAlive, "127.0.0.1:0")
			c.push(p)
		}
	}
	c.push(n)
	testutil.Eventually(c.t, 10*time.Second, n.orch.Checked, "%s: first checks never done", name)
	_, _, _ = n.store.UpdateLocal("boot", func(d *monitor.NodeData) { d.Status = monitor.StatusIdle })
	return n
}

func (c *cluster) node(name string) *tnode {
	for _, n := range c.all() {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

func (c *cluster) linked(a, b string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.dead[a] && !c.dead[b] && !c.cut[[2]string{a, b}] && !c.cut[[2]string{b, a}]
}

// relay copies n's data to its linked peers after every local change.
func (c *cluster) relay(ctx context.Context, n *tnode) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.store.LocalChanged():
		}
		c.push(n)
	}
}

func (c *cluster) push(n *tnode) {
	gen, raw, _ := n.store.Local()
	for _, p := range c.all() {
		if p != n && c.linked(n.name, p.name) {
			_, _ = p.store.ApplyFull(n.name, n.store.Boot(), gen, raw, "")
		}
	}
}

// all returns the current nodes.
func (c *cluster) all() []*tnode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tnode(nil), c.nodes...)
}

// kill crashes a node: its orchestrator stops, its service processes die,
// and the others declare it dead.
func (c *cluster) kill(name string) {
	n := c.node(name)
	c.mu.Lock()
	c.dead[name] = true
	c.mu.Unlock()
	n.shutdown()
	c.w.mu.Lock()
	for _, m := range c.w.up {
		delete(m, name)
	}
	c.w.mu.Unlock()
	for _, p := range c.all() {
		if p != n {
			p.store.SetMember(name, monitor.StateDead, "127.0.0.1:0")
			p.orch.Notify()
		}
	}
}

// partition cuts the links between the two groups and sets each side's
// membership view.
func (c *cluster) partition(a, b []string) {
	c.cutLinks(a, b)
	c.setViews(a, b, monitor.StateDead)
}

// heal relinks everything and resends every node's data.
func (c *cluster) heal(a, b []string) {
	c.mu.Lock()
	c.cut = map[[2]string]bool{}
	c.mu.Unlock()
	c.setViews(a, b, monitor.StateAlive)
	for _, n := range c.all() {
		c.push(n)
	}
}

func (c *cluster) setViews(a, b []string, state string) {
	for _, x := range a {
		for _, y := range b {
			c.node(x).store.SetMember(y, state, "127.0.0.1:0")
			c.node(y).store.SetMember(x, state, "127.0.0.1:0")
		}
	}
	for _, n := range c.all() {
		n.orch.Notify()
	}
}

func (n *tnode) shutdown() {
	n.once.Do(func() {
		n.cancel()
		<-n.done
		_ = n.orch.Close()
	})
}

func (c *cluster) stop() {
	for _, n := range c.all() {
		n.shutdown()
	}
}

// addService declares s on every live node.
func (c *cluster) addService(s config.Service) {
	c.t.Helper()
	c.w.mu.Lock()
	c.w.failover[s.Name] = s.Topology != config.Flex
	c.w.mu.Unlock()
	c.mu.Lock()
	kept := c.services[:0]
	for _, x := range c.services {
		if x.Name != s.Name {
			kept = append(kept, x)
		}
	}
	c.services = append(kept, s)
	c.mu.Unlock()
	for _, n := range c.all() {
		cp := s
		if err := n.orch.SetService(&cp); err != nil {
			c.t.Fatal(err)
		}
	}
}

func testService(name string, topo config.Topology, nodes ...string) config.Service {
	s := config.DefaultService(name)
	s.Topology = topo
	if len(nodes) > 0 {
		s.Nodes = nodes
	}
	s.Check, s.Start, s.Stop = []string{"check"}, []string{"start"}, []string{"stop"}
	s.CheckInterval = 20 * time.Millisecond
	s.Timeout = 5 * time.Second
	return s
}

// instance returns node on's view of node of's instance of svc.
func (c *cluster) instance(on, of, svc string) monitor.Instance {
	d, _ := c.node(on).store.Node(of)
	return d.Services[svc]
}

func (c *cluster) waitUp(svc string, want ...string) {
	c.t.Helper()
	testutil.Eventually(c.t, 10*time.Second, func() bool {
		up := c.w.upNodes(svc)
		if len(up) != len(want) {
			return false
		}
		for _, n := range want {
			if !up[n] {
				return false
			}
		}
		return true
	}, "%s not up on exactly %v (up: %v; violations: %v)", svc, want,
		func() any { return c.w.upNodes(svc) }, func() any { return c.w.violated() })
}

// waitChecks waits until every live node ran at least k more checks: a
// way to let the orchestration go round several times without sleeping.
func (c *cluster) waitChecks(k uint64) {
	c.t.Helper()
	base := map[string]uint64{}
	for _, n := range c.all() {
		base[n.name] = n.orch.Stats().Checks
	}
	testutil.Eventually(c.t, 10*time.Second, func() bool {
		for _, n := range c.all() {
			c.mu.Lock()
			dead := c.dead[n.name]
			c.mu.Unlock()
			if !dead && n.orch.Stats().Checks < base[n.name]+k {
				return false
			}
		}
		return true
	}, "checks did not run")
}

func (c *cluster) summary(on, svc string) Summary {
	var doc struct {
		Monitor struct {
			Services map[string]Summary `json:"services"`
		} `json:"monitor"`
	}
	_ = json.Unmarshal(c.node(on).store.Document(), &doc)
	return doc.Monitor.Services[svc]
}

// dump is the cluster data of every node, for failure messages.
func (c *cluster) dump() string {
	var out string
	for _, n := range c.all() {
		out += "\n" + n.name + ": " + string(n.store.Document())
	}
	return out
}

// lazy formats as f() when printed.
type lazy func() string

func (l lazy) String() string { return l() }
