package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"agent/config"
	"agent/internal/ride"
	"agent/monitor"
)

// Defaults of Config.
const (
	// DefaultReadyPeriod is how long a failover leader stays ready before
	// it starts an instance.
	DefaultReadyPeriod = 5 * time.Second
	// DefaultTick is the longest time between two evaluations.
	DefaultTick = time.Second
	// DefaultLease is how long probes of a peer must go unanswered before
	// the quorum stops counting it (with a Prober).
	DefaultLease = 3 * time.Second
)

// Log attribute keys.
const (
	logKeyComponent = "component"
	logKeyService   = "service"
	logKeyAction    = "action"
	logKeyReason    = "reason"
	logKeyExit      = "exit"
	logKeyOutput    = "output"
	logKeyStderr    = "stderr"
	logKeySignal    = "signal"
	logKeyTimeout   = "timeout"
	logKeyErr       = "err"
	logKeyPath      = "path"
)

// Errors callers test.
var (
	// ErrNoService: the service is not declared on this node.
	ErrNoService = errors.New("no such service")
	// ErrBadAction: the order is not start, stop, freeze or thaw.
	ErrBadAction = errors.New("unknown service action")
	// ErrClosed: the orchestrator is closed.
	ErrClosed = errors.New("orchestrator closed")
	// ErrForgetAlive: a node to forget is alive (or suspect) here.
	ErrForgetAlive = errors.New("node is not dead")
	// ErrForgetUnknown: a node to forget is not known here.
	ErrForgetUnknown = errors.New("unknown node")
	// ErrForgetSelf: a node cannot forget itself.
	ErrForgetSelf = errors.New("cannot forget this node itself")
	// ErrNoQuorum: refused while this node sees no majority.
	ErrNoQuorum = errors.New("this node has no quorum")
)

// Config configures an Orchestrator.
type Config struct {
	// Store holds the cluster data; required.
	Store *monitor.Store
	// Nodename is this node's name; default Store.Name().
	Nodename string
	// ClusterNodes are the configured cluster nodes ([cluster] nodes), the
	// base of the quorum; empty: the largest quorum high-water mark among
	// this node and its present peers (see the package doc).
	ClusterNodes []string
	// Quorum makes a node that sees no strict majority of the cluster's
	// nodes alive apply SplitAction and orchestrate nothing.
	Quorum bool
	// SplitAction is stop (default), freeze or none.
	SplitAction config.SplitAction
	// ReadyPeriod is how long a failover leader stays ready before it
	// starts an instance; default DefaultReadyPeriod.
	ReadyPeriod time.Duration
	// Tick is the longest time between two evaluations; default
	// DefaultTick. Evaluations also run on Notify, on command results and
	// when a check or a ready period is due.
	Tick time.Duration
	// Runner runs the check, start and stop commands; default ExecRunner.
	Runner CommandRunner
	// Prober, when set with Quorum, is asked every Lease/6 whether each
	// present peer answers: a peer whose probes go unanswered for Lease
	// no longer counts towards the quorum, so that a node cut off from
	// the majority stops its instances within Lease, long before the
	// majority's failure detection plus ReadyPeriod lets it start them.
	Prober Prober
	// Lease is how long a peer's probes must go unanswered before the
	// quorum stops counting it; default DefaultLease. Keep it well under
	// the failure detection time plus ReadyPeriod.
	Lease time.Duration
	// Forgetter, when set, is told the nodes removed by Forget (on this
	// node or by an order from another), so that it stops reconnecting to
	// them.
	Forgetter Forgetter
	// DisagreeAfter is how long the candidates of a service may publish
	// different leaders before it is reported (placement_change reason
	// disagreement, and the disagreements gauge); default 2*ReadyPeriod.
	DisagreeAfter time.Duration
	// Bell, when set, lets the evaluation that only Tick calls for run
	// up to a quarter of Tick early, on a wake-up the process has anyway
	// (package ride). Evaluations with a deadline of their own run on time.
	Bell *ride.Bell
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock for the data's times and the ready period; default
	// time.Now. Waiting itself uses real timers.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.Store == nil {
		return errors.New("orchestrator: no store")
	}
	if c.Nodename == "" {
		c.Nodename = c.Store.Name()
	}
	if c.SplitAction == "" {
		c.SplitAction = config.SplitStop
	}
	switch c.SplitAction {
	case config.SplitStop, config.SplitFreeze, config.SplitNone:
	default:
		return fmt.Errorf("orchestrator: split action %q: want stop, freeze or none", c.SplitAction)
	}
	if c.ReadyPeriod < 0 {
		return fmt.Errorf("orchestrator: negative ready period %s", c.ReadyPeriod)
	}
	if c.ReadyPeriod == 0 {
		c.ReadyPeriod = DefaultReadyPeriod
	}
	if c.Tick <= 0 {
		c.Tick = DefaultTick
	}
	if c.Lease < 0 {
		return fmt.Errorf("orchestrator: negative lease %s", c.Lease)
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.DisagreeAfter <= 0 {
		c.DisagreeAfter = 2 * c.ReadyPeriod
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Runner == nil {
		c.Runner = &ExecRunner{Logger: c.Logger.With(logKeyComponent, "orchestrator")}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Orchestrator runs the checks of the services declared on this node and
// starts and stops their local instances by the placement rules. Create it
// with New, feed it with SetService, RemoveService and Notify, run it with
// Run, stop it with Close.
type Orchestrator struct {
	cfg   Config
	log   *slog.Logger
	store *monitor.Store

	wake    chan struct{} // coalesced: something changed
	results chan result   // command results, read by the loop

	// mu guards the declared services, their config hashes and the run
	// state.
	mu       sync.Mutex
	services map[string]*config.Service
	hashes   map[string]string
	removing map[string]*config.Service
	running  bool
	closed   bool
	cancel   context.CancelFunc
	done     chan struct{}

	stats counters

	// qmu guards the quorum members (Run and Forget change them).
	qmu      sync.Mutex
	qmembers map[string]bool

	contact *contacts // probe results; nil without a Prober

	// Owned by the Run goroutine.
	local     map[string]*local
	leaders   map[string]string
	lastUp    map[string]string
	quorum    bool
	published map[string]bool // summaries this node set
	dups      map[string]*dupEpisode
	dupSeen   map[string]*dupKnown
	disagree  map[string]*disagreement
	blocked   map[string]map[string]bool // failover_blocked emitted: service, left node
	cmds      sync.WaitGroup
}

// local is what this node remembers of its instance of one service
// between evaluations. Owned by the Run goroutine.
type local struct {
	busy       bool      // a command is in flight
	nextCheck  time.Time // when the next check is due
	readySince time.Time // when the instance became ready
	handled    time.Time // orchestrate = no: the last order acted on
	stopTried  bool      // removal: the stop was tried

	// surplusSince is when this flex instance became the one to stop.
	surplusSince time.Time
	// leftRunning are the departed nodes that may still run the service
	// (see leftRunning).
	leftRunning map[string]time.Time
	// checkNow asks for a check as soon as none is in flight (a
	// duplicate): checkFor are the recheck tokens of other nodes it will
	// answer, by node, and checkOwn says it is this node's own recheck.
	checkNow bool
	checkFor map[string]string
	checkOwn bool
}

// result is the outcome of one command run.
type result struct {
	svc    string
	action string
	reason string
	code   int
	err    error
	// check is the check run right after a start or stop.
	checkCode int
	checkErr  error
	// answers are the recheck tokens a check answers; own says it was
	// this node's own recheck.
	answers map[string]string
	own     bool
}

// New validates cfg and returns an orchestrator that does nothing until
// Run.
func New(cfg Config) (*Orchestrator, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Orchestrator{
		cfg:      cfg,
		log:      cfg.Logger.With(logKeyComponent, "orchestrator"),
		store:    cfg.Store,
		wake:     make(chan struct{}, 1),
		results:  make(chan result, 16),
		services: map[string]*config.Service{},
		hashes:   map[string]string{},
		removing: map[string]*config.Service{},
		local:    map[string]*local{},
		leaders:  map[string]string{},
		lastUp:   map[string]string{},
		quorum:   true,
		dups:     map[string]*dupEpisode{},
		dupSeen:  map[string]*dupKnown{},
		disagree: map[string]*disagreement{},
		blocked:  map[string]map[string]bool{},
		contact:  newContacts(cfg),
		qmembers: quorumMembers(cfg),
	}, nil
}

// quorumMembers are the persisted quorum members, and this node.
func quorumMembers(cfg Config) map[string]bool {
	m := map[string]bool{cfg.Nodename: true}
	for _, n := range cfg.Store.QuorumMembers() {
		m[n] = true
	}
	return m
}

// Notify tells the orchestrator that the cluster data or the membership
// changed. It never blocks and may be called with the store lock held (from
// the store observer).
func (o *Orchestrator) Notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// SetService declares or changes a service on this node: service_add for a
// new one, service_config_change (reason config) for a changed one. Its
// instance appears in this node's data at the next evaluation and is
// checked at once.
func (o *Orchestrator) SetService(s *config.Service) error {
	if s == nil {
		return errors.New("orchestrator: nil service")
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("service %s: %w", s.Name, err)
	}
	c := *s
	h := ConfigHash(&c)
	o.mu.Lock()
	_, had := o.services[c.Name]
	_, wasRemoving := o.removing[c.Name]
	o.services[c.Name] = &c
	o.hashes[c.Name] = h
	delete(o.removing, c.Name)
	o.mu.Unlock()
	id, reason := EventServiceAdd, ReasonConfig
	if had || wasRemoving {
		id = EventServiceConfigChange
	}
	o.store.Event(map[string]any{"id": id, "reason": reason, "svcname": c.Name, "node": o.cfg.Nodename, "path": c.Source})
	o.Notify()
	return nil
}

// RemoveService forgets a service (its config file vanished): it emits
// service_remove, then, at the next evaluations, stops the local instance
// if it is up (reason target; unless the node or the service is frozen),
// and drops the instance from this node's data. Stopping first keeps a
// failover service from running twice: once its instance is gone from the
// data, the other nodes may start it. Unknown names are ignored.
func (o *Orchestrator) RemoveService(name string) {
	o.mu.Lock()
	s, ok := o.services[name]
	if ok {
		delete(o.services, name)
		delete(o.hashes, name)
		o.removing[name] = s
	}
	o.mu.Unlock()
	if !ok {
		return
	}
	o.store.Event(map[string]any{"id": EventServiceRemove, "reason": ReasonConfig, "svcname": name, "node": o.cfg.Nodename, "path": s.Source})
	o.Notify()
}

// InvalidService reports a service config that was refused: an event
// service_config_change with reason invalid, the path and the error. The
// previous version of the service, if any, keeps running.
func (o *Orchestrator) InvalidService(path string, err error) {
	name, _ := config.ServiceName(path)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	o.store.Event(map[string]any{"id": EventServiceConfigChange, "reason": ReasonInvalid, "svcname": name, "node": o.cfg.Nodename, "path": path, "error": msg})
	o.log.Warn("service config refused, the previous one stays", logKeyPath, path, logKeyErr, err)
}

// Services returns the names of the services declared on this node, sorted.
func (o *Orchestrator) Services() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Sorted(maps.Keys(o.services))
}

// Order gives a service-wide order: action start, stop, freeze or thaw
// sets the global expect (started, stopped, frozen, thawed) of the local
// instance, timed now (and after any order already seen, so that it is the
// latest). It replicates with this node's data and every node adopts the
// latest order seen across all instances. A new order clears the start
// failed and stop failed statuses. Errors: ErrNoService when the service
// is not declared here, ErrBadAction, an error for a start or stop of an
// orchestrate = no service that lacks the command, or the store's refusal
// of the change (wrapping monitor.ErrDataTooLarge when this node's data
// would exceed max_data): then nothing changed.
func (o *Orchestrator) Order(svc, action string) error {
	ge, ok := expectOf[action]
	if !ok {
		return fmt.Errorf("%w %q: want start, stop, freeze or thaw", ErrBadAction, action)
	}
	o.mu.Lock()
	s, declared := o.services[svc]
	o.mu.Unlock()
	if !declared {
		return fmt.Errorf("%w: %s", ErrNoService, svc)
	}
	if (action == "start" && len(s.Start) == 0) || (action == "stop" && len(s.Stop) == 0) {
		return fmt.Errorf("service %s has no %s command", svc, action)
	}
	v := o.readView()
	if _, ok := v.instance(o.cfg.Nodename, svc); !ok {
		// Declared but not yet in the data: make the instance now so the
		// order has a place to live.
		if err := o.ensureInstance(v, svc); err != nil {
			return fmt.Errorf("order %s for %s: %w", action, svc, err)
		}
		v = o.readView()
	}
	_, latest := v.latestExpect(svc)
	at := o.cfg.Now().UTC()
	if !at.After(latest) {
		at = latest.Add(time.Microsecond)
	}
	if err := o.adopt(v, s, ge, at, ReasonCLI); err != nil {
		return fmt.Errorf("order %s for %s: %w", action, svc, err)
	}
	o.Notify()
	return nil
}

var expectOf = map[string]string{
	"start":  ExpectStarted,
	"stop":   ExpectStopped,
	"freeze": ExpectFrozen,
	"thaw":   ExpectThawed,
}

// Done reports whether the orchestration of svc is done, from this node's
// view of the cluster data; the same value is published as
// monitor.services.NAME.done, so that `agent svc start NAME --wait` can
// run `agent wait --filter monitor.services.NAME.done=true` after the
// order's patch, or poll Done. Done means: every present instance has
// adopted the latest global expect; none is ready, starting or stopping;
// and the expect is reached (started: the service avail is up; stopped: no
// instance up; frozen: every present instance frozen; thawed: none). A
// service without instances in the data is not done.
func (o *Orchestrator) Done(svc string) bool {
	o.mu.Lock()
	s := o.services[svc]
	o.mu.Unlock()
	v := o.readView()
	if len(v.holders(svc)) == 0 {
		return false
	}
	return v.summarize(svc, s).Done
}

// Checked reports whether the first check of every service declared here
// has finished and is in this node's data. A starting agent stays out of
// the decisions (its status is not idle) until it is: its peers must see
// what runs here before anyone decides anything. Each check is bounded by
// the service's timeout, so this comes true within the longest timeout.
func (o *Orchestrator) Checked() bool {
	names := o.Services()
	_, _, d := o.store.Local()
	for _, n := range names {
		i, ok := d.Services[n]
		if !ok || i.Avail == AvailNA || i.Avail == "" {
			return false
		}
	}
	return true
}

// Run evaluates until ctx ends or Close is called, then waits for the
// commands in flight (their context is cancelled: the runner kills them).
// It can be called once.
func (o *Orchestrator) Run(ctx context.Context) error {
	o.mu.Lock()
	if o.running || o.closed {
		o.mu.Unlock()
		if o.closed {
			return ErrClosed
		}
		return errors.New("orchestrator: already running")
	}
	o.running = true
	ctx, o.cancel = context.WithCancel(ctx)
	o.done = make(chan struct{})
	o.mu.Unlock()
	defer close(o.done)
	defer o.cmds.Wait()
	defer o.cancel()
	if o.contact != nil {
		o.cmds.Add(1)
		go func() {
			defer o.cmds.Done()
			o.contact.run(ctx, o.probeTargets, o.Notify)
		}()
	}

	timer := o.cfg.Bell.NewTimer()
	defer timer.Stop()
	timer.Reset(0, 0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.wake:
		case r := <-o.results:
			o.handle(r)
		case <-timer.C:
		}
		// Drain what else is ready so that one evaluation covers it.
		for more := true; more; {
			select {
			case r := <-o.results:
				o.handle(r)
			case <-o.wake:
			default:
				more = false
			}
		}
		next := o.evaluate(ctx)
		var slack time.Duration
		if next >= o.cfg.Tick {
			slack = next / 4 // nothing is due: the tick is a backstop
		}
		timer.Reset(next, slack)
	}
}

// Close stops Run and waits for it to return. Safe to call more than once,
// and before or without Run.
func (o *Orchestrator) Close() error {
	o.mu.Lock()
	o.closed = true
	cancel, done := o.cancel, o.done
	o.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// Stats returns the orchestrator's counters.
func (o *Orchestrator) Stats() Stats {
	return o.stats.snapshot()
}

// Stats are the orchestrator's figures.
type Stats struct {
	// Checks counts the check commands run.
	Checks uint64
	// CheckErrors counts checks that did not give up, down or warn.
	CheckErrors uint64
	// Starts and Stops count the start and stop commands run.
	Starts, Stops uint64
	// StartFailures and StopFailures count those that failed.
	StartFailures, StopFailures uint64
	// Failovers counts starts with reason failover; Restarts with restart.
	Failovers, Restarts uint64
	// QuorumLost counts the losses of quorum.
	QuorumLost uint64
	// Duplicates counts the duplicate episodes confirmed (each emitted
	// instance_duplicate); DuplicateStops the stops of an instance for
	// being one.
	Duplicates, DuplicateStops uint64
	// Disagreements counts the disagreements reported.
	Disagreements uint64
	// Services is the number of services declared here.
	Services int
	// Quorum is false while this node sees no quorum.
	Quorum bool
	// QuorumBase and QuorumAlive are the last counts of the quorum check:
	// the nodes a majority is counted against, and those in contact.
	QuorumBase, QuorumAlive int
	// DuplicatesActive is the number of failover services now up on
	// several present nodes.
	DuplicatesActive int
	// Disagreeing is the number of services whose candidates disagree
	// now, for longer than DisagreeAfter.
	Disagreeing int
}

// Metrics returns the figures as counters and gauges by name, the shape
// the metrics package exports.
func (s Stats) Metrics() (counters map[string]uint64, gauges map[string]float64) {
	q := 0.0
	if s.Quorum {
		q = 1
	}
	return map[string]uint64{
			"checks": s.Checks, "check_errors": s.CheckErrors,
			"starts": s.Starts, "stops": s.Stops,
			"start_failures": s.StartFailures, "stop_failures": s.StopFailures,
			"failovers": s.Failovers, "restarts": s.Restarts, "quorum_lost": s.QuorumLost,
			"duplicates": s.Duplicates, "duplicate_stops": s.DuplicateStops,
			"disagreements": s.Disagreements,
		}, map[string]float64{
			"services": float64(s.Services), "quorum": q,
			"quorum_base": float64(s.QuorumBase), "quorum_alive": float64(s.QuorumAlive),
			"duplicates_active": float64(s.DuplicatesActive), "disagreeing": float64(s.Disagreeing),
		}
}

type counters struct {
	checks, checkErrors, starts, stops, startFailures, stopFailures atomic.Uint64
	failovers, restarts, quorumLost                                 atomic.Uint64
	duplicates, duplicateStops, disagreements                       atomic.Uint64
	services, quorumBase, quorumAlive, dupsActive, disagreeing      atomic.Int64
	noQuorum                                                        atomic.Bool
}

func (c *counters) snapshot() Stats {
	return Stats{
		Checks: c.checks.Load(), CheckErrors: c.checkErrors.Load(),
		Starts: c.starts.Load(), Stops: c.stops.Load(),
		StartFailures: c.startFailures.Load(), StopFailures: c.stopFailures.Load(),
		Failovers: c.failovers.Load(), Restarts: c.restarts.Load(), QuorumLost: c.quorumLost.Load(),
		Duplicates: c.duplicates.Load(), DuplicateStops: c.duplicateStops.Load(),
		Disagreements: c.disagreements.Load(),
		Services:      int(c.services.Load()), Quorum: !c.noQuorum.Load(),
		QuorumBase: int(c.quorumBase.Load()), QuorumAlive: int(c.quorumAlive.Load()),
		DuplicatesActive: int(c.dupsActive.Load()), Disagreeing: int(c.disagreeing.Load()),
	}
}

// probeTargets are the present peers.
func (o *Orchestrator) probeTargets() []string {
	var out []string
	for n, m := range o.store.Members() {
		if n != o.cfg.Nodename && (m.State == monitor.StateAlive || m.State == monitor.StateSuspect) {
			out = append(out, n)
		}
	}
	return out
}

// readView reads the cluster data once.
func (o *Orchestrator) readView() *view {
	return &view{self: o.cfg.Nodename, nodes: o.store.Nodes(), members: o.store.Members()}
}
