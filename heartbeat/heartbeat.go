package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// ErrNameConflict means another live node of the cluster already uses this
// node's name: the agent must not join under it.
var ErrNameConflict = errors.New("node name already in use in the cluster")

// Stats are the heartbeat's counters.
type Stats struct {
	DeltasSent, DeltasReceived, DeltasApplied, DeltasStale uint64
	FullSent, FullReceived, FullApplied, FullRequests      uint64
	// Resyncs counts the peers' data repaired with a whole copy: after a
	// gap or a failed delta, a digest that differed, or a push/pull that
	// found the copy held behind past the grace for a delta in flight.
	// First copies and new runs of a peer are not repairs.
	Resyncs, BadMessages, BytesSent, OrdersReceived uint64
	ReliableSends, SendErrors                       uint64
	// DigestsSent and DigestsReceived count digests of data (messages and
	// ack payloads); Divergences, those that showed a copy to repair.
	DigestsSent, DigestsReceived, Divergences uint64
	// QueueOverflows counts peer queues that hit their limit; Superseded,
	// queued deltas and full copies replaced by a newer full copy.
	QueueOverflows, Superseded uint64
	// RelayRequests counts requests for a node's data sent to a third
	// node because the owner did not answer; RelaysSent, the copies of
	// another node's data this node sent on such a request.
	RelayRequests, RelaysSent uint64
	// CrashesFound counts peers marked dead by the crash watch (their
	// watch stream closed and their port refused a connection), before
	// memberlist's failure detector declared them dead.
	CrashesFound uint64
}

type counters struct {
	deltasSent, deltasReceived, deltasApplied, deltasStale atomic.Uint64
	fullSent, fullReceived, fullApplied, fullRequests      atomic.Uint64
	resyncs, badMessages, bytesSent, ordersReceived        atomic.Uint64
	reliableSends, sendErrors                              atomic.Uint64
	digestsSent, digestsReceived, divergences              atomic.Uint64
	relayRequests, relaysSent                              atomic.Uint64
	queueOverflows, queueSuperseded                        atomic.Uint64
	crashesFound                                           atomic.Uint64
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
	// dial opens a stream to a heartbeat address as memberlist does (its
	// transport), for liveness checks; dialTimeout bounds it.
	dial        func(addr string, timeout time.Duration) (net.Conn, error)
	dialTimeout time.Duration
	onOrder     atomic.Pointer[func(Order)]

	// closing ends when Close is called: stream dials in flight give up.
	closing  context.Context
	shutdown context.CancelFunc

	work        *queue[task] // main-loop work from delegates and senders
	conflict    atomic.Pointer[error]
	joined      atomic.Bool   // set once the initial join is over: later conflicts are the joiner's
	loopDone    chan struct{} // closed when the main loop has returned
	loopStarted atomic.Bool

	// mu guards the maps below; it is never held while sending or while
	// calling into the store.
	mu      sync.Mutex
	peers   map[string]*memberlist.Node // alive or suspect peers, by name
	gone    map[string]time.Time        // dead or left peers: since when
	pending map[string]pendingRequest   // outstanding full requests
	leaving map[string]time.Time        // peers that announced a graceful leave
	queues  map[string]*peerQueue       // reliable sends, one queue per alive peer
	known   *reconnectSet               // peers seen alive, and seeds: retried when dead
	closed  bool                        // Close has begun: no new sender or attempt

	// awaiting holds the peers seen alive whose first copy of data may
	// not have come yet: since when. The copy is the peer's full send on
	// join; when that send fails (a stream that timed out), nothing else
	// would bring it before a probe of that peer carries its digest, and
	// each peer is probed by a given node about once per N probe intervals.
	awaiting map[string]time.Time

	// Owned by the main loop.
	watches     map[string]*watch    // crash watches of the successors (watch.go)
	crashed     map[string]string    // peers marked dead here while memberlist holds them alive: their address
	checking    map[string]bool      // peers with a crash check in flight
	farewell    map[string]time.Time // peers whose watch stream said goodbye: when
	watchRedial bool                 // a watch broke: dial again at the next refresh
	nt          *netTransport        // the transport when it is the heartbeat's own (it holds watch streams); nil for a test's

	lastSent     []byte // local data as last sent
	lastGen      uint64
	lastSendT    time.Time
	digestRounds int       // trailing digests still to send
	digestAt     time.Time // when the next one is due
	checks       map[string]*check

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup // Run's loops
	sendWG   sync.WaitGroup // peer senders and reconnect attempts
}

// pendingRequest is a full request sent and not answered yet.
type pendingRequest struct {
	at  time.Time
	why string
	via string // a node known to hold a newer copy: asked when the owner does not answer
}

type taskKind int

const (
	taskMember taskKind = iota
	taskSendFull
	taskRequestFull
	taskOrder
	taskFlush
	taskDigest
	taskCandidate
	taskAttempt
	taskWatchEnd
	taskCrashReport
	taskCrashChecked
	taskCrashBack
)

type task struct {
	kind   taskKind
	node   memberlist.Node
	state  string
	name   string
	why    string
	order  Order
	done   chan struct{} // taskFlush, taskPing: closed when handled
	of     string        // taskSendFull: whose data (a relay), "" for this node's
	via    string        // taskDigest: the node that holds the copy digested; taskCrashReport, taskCrashChecked: the peer that reported
	digest monitor.Digest
	full   *fullMsg
	ok     bool
	watch  *watch // taskWatchEnd: the watch that ended
	bye    bool   // taskWatchEnd: the peer said goodbye
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
	if cfg.ReconnectTimeout == 0 {
		cfg.ReconnectTimeout = 72 * time.Hour
	}
	if cfg.MaxPeers == 0 {
		cfg.MaxPeers = 4096
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
	if cfg.DigestDelay == 0 {
		cfg.DigestDelay = 200 * time.Millisecond
	}
	if cfg.DigestGrace == 0 {
		cfg.DigestGrace = 100 * time.Millisecond
	}
	if cfg.QueueLimit == 0 {
		cfg.QueueLimit = 64
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
		loopDone: make(chan struct{}),
		peers:    map[string]*memberlist.Node{},
		gone:     map[string]time.Time{},
		pending:  map[string]pendingRequest{},
		awaiting: map[string]time.Time{},
		leaving:  map[string]time.Time{},
		queues:   map[string]*peerQueue{},
		checks:   map[string]*check{},
		watches:  map[string]*watch{},
		crashed:  map[string]string{},
		checking: map[string]bool{},
		farewell: map[string]time.Time{},
		stop:     make(chan struct{}),
	}
	h.closing, h.shutdown = context.WithCancel(context.Background())
	known, err := loadReconnectSet(cfg.PeersFile, cfg.MaxPeers, cfg.Now())
	if err != nil {
		h.log.Warn("reconnect set not restored, starting from the seeds", "err", err)
	}
	h.known = known
	mc, err := h.memberlistConfig()
	if err != nil {
		h.shutdown()
		return nil, err
	}
	if err := installTransport(h.closing, mc, mc.Logger); err != nil {
		h.shutdown()
		return nil, fmt.Errorf("start heartbeat on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	h.udpLimit = mc.UDPBufferSize - 120 - len(mc.Label)
	h.dial, h.dialTimeout = mc.Transport.DialTimeout, min(mc.TCPTimeout, 2*time.Second)
	h.nt, _ = mc.Transport.(*netTransport)
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = mc.Transport.Shutdown()
		h.shutdown()
		return nil, fmt.Errorf("start heartbeat on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	h.ml = ml
	addr := ml.LocalNode().Address()
	h.addr.Store(&addr)
	h.mu.Lock()
	h.known.seeds(cfg.Seeds, addr)
	h.mu.Unlock()
	_, raw, _ := store.Local()
	h.lastGen, _, _ = store.Held(cfg.Name)
	h.lastSent = raw
	store.SetMember(cfg.Name, monitor.StateAlive, addr)
	return h, nil
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
		DigestsSent: c.digestsSent.Load(), DigestsReceived: c.digestsReceived.Load(),
		Divergences: c.divergences.Load(), QueueOverflows: c.queueOverflows.Load(),
		Superseded:    c.queueSuperseded.Load(),
		RelayRequests: c.relayRequests.Load(), RelaysSent: c.relaysSent.Load(),
		CrashesFound: c.crashesFound.Load(),
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
	h.wg.Add(1)
	h.loopStarted.Store(true)
	go func() { defer h.wg.Done(); defer close(h.loopDone); h.mainLoop(ctx) }()
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

// Close stops the loops, the sends in flight and memberlist, and saves
// the reconnect set. Safe to call twice.
func (h *Heartbeat) Close() error {
	h.stopOnce.Do(func() { close(h.stop) })
	h.work.close()
	h.wg.Wait()
	h.stopWatches()
	h.mu.Lock()
	h.closed = true
	for name, q := range h.queues {
		q.kill()
		delete(h.queues, name)
	}
	h.mu.Unlock()
	h.shutdown()
	err := h.ml.Shutdown()
	h.sendWG.Wait()
	h.saveKnown(true)
	return err
}

// Abort closes the heartbeat's sockets at once, without a goodbye on the
// watch streams peers hold, as the kernel does when the process dies, and
// then stops the rest as Close does: what peers see of a SIGKILL. For
// fault injection in tests and benchmarks.
func (h *Heartbeat) Abort() error {
	if h.nt != nil {
		h.nt.abort()
	}
	return h.Close()
}

func (h *Heartbeat) mainLoop(ctx context.Context) {
	local := h.store.LocalChanged()
	var coalesce *time.Timer
	var coalesceC <-chan time.Time
	// The refresh runs every Refresh while there is something to watch
	// (a dead peer, a request unanswered), else once in idleRefresh: an
	// idle agent's CPU goes to its wake-ups.
	refresh := time.NewTimer(h.cfg.Refresh)
	defer refresh.Stop()
	refreshAt := time.Now().Add(h.cfg.Refresh)
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		if d, ok := h.nextWake(); ok {
			wake.Reset(max(d, 0))
		} else {
			wake.Stop()
		}
		if soon := time.Now().Add(h.cfg.Refresh); refreshAt.After(soon) && h.watching() {
			refresh.Reset(h.cfg.Refresh)
			refreshAt = soon
		}
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
			wait := h.cfg.Coalesce - h.cfg.Now().Sub(h.lastSendT)
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
		case <-wake.C:
			h.due()
		case <-refresh.C:
			h.refresh()
			d := idleRefresh
			if h.watching() {
				d = h.cfg.Refresh
			}
			refresh.Reset(d)
			refreshAt = time.Now().Add(d)
		}
	}
}

// idleRefresh is the refresh period of an agent with nothing to watch.
const idleRefresh = time.Minute

// watching says whether the refresh has work every Refresh: dead or left
// peers whose data awaits forgetting, unanswered full requests, alive
// peers whose data has not come yet, peers of the reconnect set to try or
// to save.
func (h *Heartbeat) watching() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watchRedial || len(h.gone) > 0 || len(h.pending) > 0 || len(h.awaiting) > 0 || (h.known.dirty && h.cfg.PeersFile != "") {
		return true
	}
	for name := range h.known.peers {
		if _, alive := h.peers[name]; !alive {
			return true
		}
	}
	return len(h.known.seedsL) > 0 && len(h.peers) == 0
}

// nextWake is how long until the next digest or divergence check is due.
// Main loop.
func (h *Heartbeat) nextWake() (time.Duration, bool) {
	var at time.Time
	if h.digestRounds > 0 {
		at = h.digestAt
	}
	for _, c := range h.checks {
		if at.IsZero() || c.at.Before(at) {
			at = c.at
		}
	}
	if at.IsZero() {
		return 0, false
	}
	return at.Sub(h.cfg.Now()), true
}

// due sends the trailing digests and runs the divergence checks that fell
// due. Main loop.
func (h *Heartbeat) due() {
	now := h.cfg.Now()
	if h.digestRounds > 0 && !now.Before(h.digestAt) {
		h.digestRounds--
		h.digestAt = now.Add(4 * h.cfg.DigestDelay)
		h.sendDigests()
	}
	for name, c := range h.checks {
		if !now.Before(c.at) {
			delete(h.checks, name)
			h.recheck(name, c)
		}
	}
}

// handle runs one piece of work queued by a delegate, on the main loop.
func (h *Heartbeat) handle(t task) {
	switch t.kind {
	case taskMember:
		h.member(t.node, t.state)
	case taskSendFull:
		h.enqueue(t.name, outMsg{kind: msgFull, why: t.why, of: t.of})
	case taskRequestFull:
		h.requestFull(t.name, t.why, "")
	case taskOrder:
		if fn := h.onOrder.Load(); fn != nil {
			(*fn)(t.order)
		}
	case taskFlush:
		h.flush()
		close(t.done)
	case taskDigest:
		h.divergence(t.name, t.via, t.digest, nil)
	case taskCandidate:
		h.divergence(t.full.Node, "", t.digest, t.full)
	case taskAttempt:
		h.attempted(t.name, t.ok)
	case taskWatchEnd:
		h.watchEnded(t)
	case taskCrashReport:
		h.crashReported(t.name, t.why, t.via)
	case taskCrashChecked:
		h.crashChecked(t)
	case taskCrashBack:
		h.crashBack(t)
	case taskPing:
		close(t.done)
	}
}
