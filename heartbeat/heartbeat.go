package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Close stops the loops and shuts memberlist down. Safe to call twice.
func (h *Heartbeat) Close() error {
	h.stopOnce.Do(func() { close(h.stop) })
	h.work.close()
	h.reliable.close()
	h.wg.Wait()
	return h.ml.Shutdown()
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
