package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// ErrNameConflict means another live node of the cluster already uses this
// node's name: the agent must not join under it.
var ErrNameConflict = errors.New("node name already in use in the cluster")

// Config configures the heartbeat of one agent.
type Config struct {
	// Name is this node's name (memberlist node name).
	Name string
	// ClusterName labels every packet, so two clusters never merge.
	ClusterName string
	// Secret is the gossip encryption key (16, 24 or 32 bytes), or nil.
	Secret []byte
	// BindAddr and BindPort are where memberlist listens (UDP and TCP).
	BindAddr string
	BindPort int
	// Advertise is the address (host or host:port) peers should use, when
	// it differs from the bind address.
	Advertise string
	// Profile picks memberlist's timings: lan (default), wan or local.
	Profile string
	// Seeds are host:port addresses to join; retried until one answers.
	Seeds []string
	// ForgetAfter is how long a dead or left peer's data is kept; default 5m.
	ForgetAfter time.Duration
	// Coalesce is the window within which local changes that follow a send
	// are merged into one delta; default 5ms.
	Coalesce time.Duration
	// FullRetry is how long to wait for an answer to a full request before
	// asking again; default 1s.
	FullRetry time.Duration
	// Refresh is how often the forget grace and unanswered full requests
	// are checked; default 1s.
	Refresh time.Duration
	// Tune, when set, adjusts the memberlist config last (tests shrink the
	// timings to milliseconds or set an in-memory transport).
	Tune func(*memberlist.Config)
	// DropIncoming, when set, drops the user messages it returns true for
	// (tests: message loss on purpose).
	DropIncoming func(msg []byte) bool
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Stats are the heartbeat's counters.
type Stats struct {
	DeltasSent, DeltasReceived, DeltasApplied, DeltasStale uint64
	FullSent, FullReceived, FullApplied, FullRequests      uint64
	Resyncs, BadMessages, BytesSent, OrdersReceived        uint64
	ReliableSends, SendErrors                              uint64
}

type counters struct {
	deltasSent, deltasReceived, deltasApplied, deltasStale atomic.Uint64
	fullSent, fullReceived, fullApplied, fullRequests      atomic.Uint64
	resyncs, badMessages, bytesSent, ordersReceived        atomic.Uint64
	reliableSends, sendErrors                              atomic.Uint64
}

// Heartbeat runs memberlist for one agent and exchanges monitor data.
type Heartbeat struct {
	cfg   Config
	store *monitor.Store
	log   *slog.Logger
	ml    *memberlist.Memberlist
	c     counters

	// addr is this node's heartbeat address, stored once memberlist.Create
	// has returned. memberlist listens before Create returns, so a peer can
	// reach the merge delegate while New is still running; and after a
	// leave memberlist drops its own entry (LocalNode then dereferences
	// nil) while still answering joins. Nothing looks the local node up
	// after New.
	addr atomic.Pointer[string]

	udpLimit int
	onOrder  atomic.Pointer[func(Order)]

	work     *queue[task] // main-loop work from delegates
	reliable *queue[task] // TCP sends, one goroutine
	conflict atomic.Pointer[error]
	joined   atomic.Bool // set once the initial join is over: later conflicts are the joiner's

	mu         sync.Mutex
	peers      map[string]*memberlist.Node // alive or suspect peers, by name
	gone       map[string]time.Time        // dead or left peers: since when
	pending    map[string]time.Time        // outstanding full requests: when sent
	leaving    map[string]time.Time        // peers that announced a graceful leave
	lastSent   []byte                      // local data as last sent
	lastGen    uint64
	lastSendT  time.Time
	lastRejoin time.Time

	rejoining atomic.Bool // a rejoin of dead peers is under way

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type taskKind int

const (
	taskMember taskKind = iota
	taskSendFull
	taskRequestFull
	taskSend
	taskOrder
)

type task struct {
	kind  taskKind
	node  memberlist.Node
	state string
	name  string
	why   string
	msg   []byte
	order Order
	done  chan struct{} // taskPing: closed when handled
}

// New creates the memberlist (binding its ports) and wires it to the store.
// Nothing is joined until Run, but memberlist answers from here on: a peer
// that reaches this address (rejoining a restarted node) applies its data
// to the store at once, so whatever the store's records reach must be
// ready before New is called.
func New(cfg Config, store *monitor.Store) (*Heartbeat, error) {
	if cfg.ForgetAfter == 0 {
		cfg.ForgetAfter = 5 * time.Minute
	}
	if cfg.Coalesce == 0 {
		cfg.Coalesce = 5 * time.Millisecond
	}
	if cfg.FullRetry == 0 {
		cfg.FullRetry = time.Second
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Heartbeat{
		cfg:      cfg,
		store:    store,
		log:      cfg.Logger.With("component", "heartbeat"),
		work:     newQueue[task](),
		reliable: newQueue[task](),
		peers:    map[string]*memberlist.Node{},
		gone:     map[string]time.Time{},
		pending:  map[string]time.Time{},
		leaving:  map[string]time.Time{},
		stop:     make(chan struct{}),
	}
	mc, err := h.memberlistConfig()
	if err != nil {
		return nil, err
	}
	h.udpLimit = mc.UDPBufferSize - 120 - len(mc.Label)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start heartbeat on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	h.ml = ml
	addr := ml.LocalNode().Address()
	h.addr.Store(&addr)
	_, raw, _ := store.Local()
	h.lastGen, _, _ = store.Held(cfg.Name)
	h.lastSent = raw
	store.SetMember(cfg.Name, monitor.StateAlive, addr)
	return h, nil
}

// idleGossipInterval is memberlist's gossip rate in the lan and local
// profiles. Deltas go to each peer directly, never by gossip, and
// memberlist piggybacks its own membership news on every probe and ack as
// well, so gossip carries little; but each round wakes the process, and
// those wake-ups were most of an idle agent's CPU (memberlist's 100 ms:
// about 1% of a core in a 5-node cluster; 200 ms: 0.5%).
const idleGossipInterval = 500 * time.Millisecond

func (h *Heartbeat) memberlistConfig() (*memberlist.Config, error) {
	var mc *memberlist.Config
	switch h.cfg.Profile {
	case "", "lan":
		mc = memberlist.DefaultLANConfig()
		mc.PushPullInterval = 10 * time.Second
		mc.GossipInterval = idleGossipInterval
	case "wan":
		mc = memberlist.DefaultWANConfig()
	case "local":
		mc = memberlist.DefaultLocalConfig()
		mc.PushPullInterval = 5 * time.Second
		mc.GossipInterval = idleGossipInterval
	default:
		return nil, fmt.Errorf("heartbeat profile %q: want lan, wan or local", h.cfg.Profile)
	}
	mc.Name = h.cfg.Name
	mc.Label = h.cfg.ClusterName
	mc.BindAddr = h.cfg.BindAddr
	mc.BindPort = h.cfg.BindPort
	mc.AdvertisePort = h.cfg.BindPort
	if h.cfg.Advertise != "" {
		host, port, err := net.SplitHostPort(h.cfg.Advertise)
		if err != nil {
			host, port = h.cfg.Advertise, strconv.Itoa(h.cfg.BindPort)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("heartbeat advertise %q: bad port", h.cfg.Advertise)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, p
	}
	if len(h.cfg.Secret) > 0 {
		mc.SecretKey = h.cfg.Secret
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.DeadNodeReclaimTime = 10 * time.Second
	mc.Delegate = (*delegate)(h)
	mc.Events = (*eventDelegate)(h)
	mc.Merge = (*mergeDelegate)(h)
	mc.Logger = log.New(&slogWriter{log: h.log}, "", 0)
	if h.cfg.Tune != nil {
		h.cfg.Tune(mc)
	}
	return mc, nil
}

// Memberlist exposes the underlying memberlist (tests, metrics).
func (h *Heartbeat) Memberlist() *memberlist.Memberlist { return h.ml }

// Addr is this node's heartbeat address host:port.
func (h *Heartbeat) Addr() string { return *h.addr.Load() }

// OnOrder installs the handler of orders received for this node.
func (h *Heartbeat) OnOrder(fn func(Order)) { h.onOrder.Store(&fn) }

// Stats returns the counters.
func (h *Heartbeat) Stats() Stats {
	c := &h.c
	return Stats{
		DeltasSent: c.deltasSent.Load(), DeltasReceived: c.deltasReceived.Load(),
		DeltasApplied: c.deltasApplied.Load(), DeltasStale: c.deltasStale.Load(),
		FullSent: c.fullSent.Load(), FullReceived: c.fullReceived.Load(),
		FullApplied: c.fullApplied.Load(), FullRequests: c.fullRequests.Load(),
		Resyncs: c.resyncs.Load(), BadMessages: c.badMessages.Load(),
		BytesSent: c.bytesSent.Load(), OrdersReceived: c.ordersReceived.Load(),
		ReliableSends: c.reliableSends.Load(), SendErrors: c.sendErrors.Load(),
	}
}

// Run joins the seeds (retrying with backoff until one answers or ctx ends)
// and runs the exchange until ctx is done or Close is called. It returns
// ErrNameConflict (wrapped) when the cluster already has a live node of this
// name.
func (h *Heartbeat) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	h.wg.Add(2)
	go func() { defer h.wg.Done(); h.reliableLoop(ctx) }()
	go func() { defer h.wg.Done(); h.mainLoop(ctx) }()
	err := h.join(ctx)
	h.joined.Store(true)
	if err != nil {
		cancel()
		h.wg.Wait()
		return err
	}
	<-ctx.Done()
	h.wg.Wait()
	return nil
}

func (h *Heartbeat) join(ctx context.Context) error {
	if len(h.cfg.Seeds) == 0 {
		return nil
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := h.ml.Join(h.cfg.Seeds)
		if p := h.conflict.Load(); p != nil {
			return *p
		}
		if n > 0 {
			h.log.Info("joined cluster", "cluster", h.cfg.ClusterName, "contacted", n)
			return nil
		}
		// Nobody answered yet: we may be the first node up. Keep trying
		// in the background of an otherwise working agent.
		if attempt == 1 || attempt%10 == 0 {
			h.log.Warn("no seed answered, retrying", "seeds", h.cfg.Seeds, "attempt", attempt, "err", err)
		}
		if len(h.ml.Members()) > 1 {
			return nil // someone joined us meanwhile
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if backoff < 10*time.Second {
			backoff *= 2
		}
	}
}

// Leave announces a graceful departure and waits up to timeout for it to
// propagate. Peers mark this node left.
func (h *Heartbeat) Leave(timeout time.Duration) error {
	h.flush()
	h.mu.Lock()
	peers := make([]*memberlist.Node, 0, len(h.peers))
	for _, n := range h.peers {
		peers = append(peers, n)
	}
	h.mu.Unlock()
	msg := encode(msgLeave, leaveMsg{Node: h.cfg.Name})
	for _, n := range peers {
		if err := h.ml.SendReliable(n, msg); err != nil {
			h.log.Debug("leave notice not delivered", "peer", n.Name, "err", err)
		}
	}
	return h.ml.Leave(timeout)
}

// Close stops the loops and shuts memberlist down. Safe to call twice.
func (h *Heartbeat) Close() error {
	h.stopOnce.Do(func() { close(h.stop) })
	h.work.close()
	h.reliable.close()
	h.wg.Wait()
	return h.ml.Shutdown()
}

// SendOrder forwards an order to its target node over TCP.
func (h *Heartbeat) SendOrder(o Order) error {
	h.mu.Lock()
	n, ok := h.peers[o.Target]
	h.mu.Unlock()
	if !ok {
		// memberlist may know the peer before the main loop has
		// processed its join.
		for _, m := range h.ml.Members() {
			if m.Name == o.Target {
				n, ok = m, true
				break
			}
		}
	}
	if !ok {
		return fmt.Errorf("node %s is not an alive member of the cluster", o.Target)
	}
	o.From = h.cfg.Name
	return h.ml.SendReliable(n, encode(msgOrder, o))
}

func (h *Heartbeat) mainLoop(ctx context.Context) {
	local := h.store.LocalChanged()
	var coalesce *time.Timer
	var coalesceC <-chan time.Time
	tick := time.NewTicker(h.cfg.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if coalesce != nil {
				coalesce.Stop()
			}
			return
		case <-local:
			if coalesceC != nil {
				continue // a send is already scheduled
			}
			wait := h.cfg.Coalesce - h.cfg.Now().Sub(h.lastSendTime())
			if wait <= 0 {
				h.flush()
				continue
			}
			coalesce = time.NewTimer(wait)
			coalesceC = coalesce.C
		case <-coalesceC:
			coalesceC = nil
			h.flush()
		case <-h.work.ready():
			for _, t := range h.work.drain() {
				h.handle(t)
			}
		case <-tick.C:
			h.refresh()
		}
	}
}

func (h *Heartbeat) lastSendTime() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastSendT
}

// flush sends the local changes made since the last send as one delta.
func (h *Heartbeat) flush() {
	gen, raw, _ := h.store.Local()
	h.mu.Lock()
	if gen == h.lastGen {
		h.mu.Unlock()
		return
	}
	base, prev := h.lastGen, h.lastSent
	h.lastGen, h.lastSent, h.lastSendT = gen, raw, h.cfg.Now()
	targets := make([]*memberlist.Node, 0, len(h.peers))
	for _, n := range h.peers {
		targets = append(targets, n)
	}
	h.mu.Unlock()
	ops, err := monitor.Diff(prev, raw, "")
	if err != nil {
		h.log.Error("diff local data", "err", err)
		return
	}
	msg := encode(msgDelta, deltaMsg{Node: h.cfg.Name, Boot: h.store.Boot(), Base: base, Gen: gen, Ops: ops})
	for _, n := range targets {
		h.c.deltasSent.Add(1)
		if len(msg) > h.udpLimit {
			h.reliable.push(task{kind: taskSend, node: *n, msg: msg})
			continue
		}
		h.send(n, msg, false)
	}
}

func (h *Heartbeat) send(n *memberlist.Node, msg []byte, reliable bool) {
	var err error
	if reliable {
		h.c.reliableSends.Add(1)
		err = h.ml.SendReliable(n, msg)
	} else {
		err = h.ml.SendBestEffort(n, msg)
	}
	if err != nil {
		h.c.sendErrors.Add(1)
		h.log.Debug("send failed", "node", n.Name, "err", err)
		return
	}
	h.c.bytesSent.Add(uint64(len(msg)))
}

func (h *Heartbeat) reliableLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.reliable.ready():
			for _, t := range h.reliable.drain() {
				if ctx.Err() != nil {
					return
				}
				n := t.node
				h.send(&n, t.msg, true)
			}
		}
	}
}

// handle runs one piece of work queued by a delegate, on the main loop.
func (h *Heartbeat) handle(t task) {
	switch t.kind {
	case taskMember:
		h.member(t.node, t.state)
	case taskSendFull:
		h.sendFull(t.name, t.why)
	case taskRequestFull:
		h.requestFull(t.name, t.why)
	case taskOrder:
		if fn := h.onOrder.Load(); fn != nil {
			(*fn)(t.order)
		}
	case taskPing:
		close(t.done)
	}
}

func (h *Heartbeat) member(n memberlist.Node, state string) {
	if n.Name == h.cfg.Name {
		return
	}
	h.mu.Lock()
	switch state {
	case monitor.StateAlive, monitor.StateSuspect:
		nn := n
		h.peers[n.Name] = &nn
		delete(h.gone, n.Name)
	default:
		if _, ok := h.leaving[n.Name]; ok && state == monitor.StateDead {
			state = monitor.StateLeft
		}
		delete(h.leaving, n.Name)
		delete(h.peers, n.Name)
		delete(h.pending, n.Name)
		if _, ok := h.gone[n.Name]; !ok {
			h.gone[n.Name] = h.cfg.Now()
		}
	}
	h.mu.Unlock()
	h.store.SetMember(n.Name, state, n.Address())
	if state == monitor.StateAlive {
		h.sendFull(n.Name, "")
	}
}

// sendFull sends the local data whole to node by TCP.
func (h *Heartbeat) sendFull(node, why string) {
	h.mu.Lock()
	n, ok := h.peers[node]
	h.mu.Unlock()
	if !ok {
		return
	}
	gen, raw, _ := h.store.Local()
	msg := encode(msgFull, fullMsg{Node: h.cfg.Name, Boot: h.store.Boot(), Gen: gen, Data: raw, Why: why})
	h.c.fullSent.Add(1)
	h.reliable.push(task{kind: taskSend, node: *n, msg: msg})
}

// requestFull asks node for its whole data, unless a request is already
// outstanding and recent.
func (h *Heartbeat) requestFull(node, why string) {
	h.mu.Lock()
	n, ok := h.peers[node]
	sent, pending := h.pending[node]
	now := h.cfg.Now()
	if !ok || (pending && now.Sub(sent) < h.cfg.FullRetry) {
		h.mu.Unlock()
		return
	}
	h.pending[node] = now
	h.mu.Unlock()
	h.c.fullRequests.Add(1)
	h.send(n, encode(msgFullReq, fullReqMsg{From: h.cfg.Name, Of: node, Why: why}), false)
}

// refresh forgets peers gone longer than ForgetAfter, retries
// unanswered full requests and drops stale leave notices. (memberlist
// reports no suspicion to its delegates, so cluster.nodes shows alive
// until a peer is declared dead.)
func (h *Heartbeat) refresh() {
	now := h.cfg.Now()
	var forget []string
	h.mu.Lock()
	for name, since := range h.gone {
		if now.Sub(since) >= h.cfg.ForgetAfter {
			forget = append(forget, name)
			delete(h.gone, name)
		}
	}
	for name, at := range h.leaving {
		if now.Sub(at) >= time.Minute {
			delete(h.leaving, name)
		}
	}
	// A pending full request that was never answered is retried.
	var retry []string
	for name, sent := range h.pending {
		if now.Sub(sent) >= h.cfg.FullRetry {
			retry = append(retry, name)
		}
	}
	h.mu.Unlock()
	for _, name := range forget {
		h.store.Forget(name, "grace_expired")
	}
	h.rejoinDead(now)
	for _, name := range retry {
		h.requestFull(name, "retry")
	}
}

// receive handles one user message. Called by memberlist's receive
// goroutines: it applies to the store and enqueues, never blocks.
func (h *Heartbeat) receive(buf []byte) {
	if h.cfg.DropIncoming != nil && h.cfg.DropIncoming(buf) {
		return
	}
	if len(buf) == 0 {
		h.c.badMessages.Add(1)
		return
	}
	switch buf[0] {
	case msgDelta:
		var m deltaMsg
		if err := decode(buf, &m); err != nil || m.Node == "" {
			h.bad(err)
			return
		}
		h.c.deltasReceived.Add(1)
		res, why := h.store.ApplyDelta(m.Node, m.Boot, m.Base, m.Gen, m.Ops)
		switch res {
		case monitor.Applied:
			h.c.deltasApplied.Add(1)
		case monitor.Stale:
			h.c.deltasStale.Add(1)
		case monitor.NeedFull:
			h.work.push(task{kind: taskRequestFull, name: m.Node, why: why})
		}
	case msgFullReq:
		var m fullReqMsg
		if err := decode(buf, &m); err != nil || m.From == "" {
			h.bad(err)
			return
		}
		if m.Of == h.cfg.Name {
			h.work.push(task{kind: taskSendFull, name: m.From, why: m.Why})
		}
	case msgFull:
		var m fullMsg
		if err := decode(buf, &m); err != nil || m.Node == "" {
			h.bad(err)
			return
		}
		h.applyFull(m)
	case msgLeave:
		var m leaveMsg
		if err := decode(buf, &m); err != nil || m.Node == "" {
			h.bad(err)
			return
		}
		h.mu.Lock()
		h.leaving[m.Node] = h.cfg.Now()
		h.mu.Unlock()
	case msgOrder:
		var o Order
		if err := decode(buf, &o); err != nil || o.Target != h.cfg.Name {
			h.bad(err)
			return
		}
		h.c.ordersReceived.Add(1)
		h.work.push(task{kind: taskOrder, order: o})
	default:
		h.bad(nil)
	}
}

func (h *Heartbeat) applyFull(m fullMsg) {
	h.c.fullReceived.Add(1)
	h.mu.Lock()
	delete(h.pending, m.Node)
	h.mu.Unlock()
	held, _, had := h.store.Held(m.Node)
	ok, err := h.store.ApplyFull(m.Node, m.Boot, m.Gen, m.Data, m.Why)
	if err != nil {
		h.bad(err)
		return
	}
	if ok {
		h.c.fullApplied.Add(1)
		if had && held != 0 {
			h.c.resyncs.Add(1)
		}
	}
}

func (h *Heartbeat) bad(err error) {
	h.c.badMessages.Add(1)
	h.log.Debug("dropped malformed message", "err", err)
}

// slogWriter routes memberlist's log lines to slog at a level read from
// their [LEVEL] prefix.
type slogWriter struct{ log *slog.Logger }

var _ io.Writer = (*slogWriter)(nil)

func (w *slogWriter) Write(p []byte) (int, error) {
	line := string(p)
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
		line = line[:len(line)-1]
	}
	level := slog.LevelInfo
	switch {
	case len(line) > 7 && line[:7] == "[DEBUG]":
		level = slog.LevelDebug
	case len(line) > 6 && line[:6] == "[WARN]":
		level = slog.LevelWarn
	case len(line) > 5 && line[:5] == "[ERR]":
		level = slog.LevelError
	}
	w.log.Log(context.Background(), level, line, "source", "memberlist")
	return len(p), nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	return host, p, err
}

func isConflict(err error) bool { return errors.Is(err, ErrNameConflict) }

// rejoinDead tries, every few seconds, to join the peers failure detection
// declared dead (not those that left), and the seeds when this node has no
// peer left at all. memberlist stops gossiping to a dead node after
// GossipToTheDeadTime and never probes it again, so without this the two
// sides of a healed partition would stay apart for good, and a node whose
// peers were forgotten (past ForgetAfter) would never look for them again.
func (h *Heartbeat) rejoinDead(now time.Time) {
	h.mu.Lock()
	alone := len(h.peers) == 0
	if now.Sub(h.lastRejoin) < 2*time.Second || (len(h.gone) == 0 && !alone) {
		h.mu.Unlock()
		return
	}
	h.lastRejoin = now
	names := make([]string, 0, len(h.gone))
	for name := range h.gone {
		names = append(names, name)
	}
	h.mu.Unlock()
	members := h.store.Members()
	var addrs []string
	for _, name := range names {
		if m, ok := members[name]; ok && m.State == monitor.StateDead && m.Addr != "" {
			addrs = append(addrs, m.Addr)
		}
	}
	if alone && h.joined.Load() {
		// Not this node, and not a peer that left gracefully: joining a
		// node that is shutting down would bring it back for a moment and
		// make its leave look like a death.
		skip := map[string]bool{h.Addr(): true}
		for _, m := range members {
			if m.State == monitor.StateLeft {
				skip[m.Addr] = true
			}
		}
		for _, seed := range h.cfg.Seeds {
			if !skip[seed] {
				addrs = append(addrs, seed)
			}
		}
	}
	if len(addrs) == 0 || !h.rejoining.CompareAndSwap(false, true) {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer h.rejoining.Store(false)
		if n, err := h.ml.Join(addrs); n > 0 {
			h.log.Info("rejoined dead peers", "contacted", n)
		} else {
			h.log.Debug("dead peers still unreachable", "err", err)
		}
	}()
}
