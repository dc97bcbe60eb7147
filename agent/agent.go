package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/config"
	"agent/events"
	"agent/heartbeat"
	"agent/history"
	"agent/internal/ride"
	"agent/monitor"
	"agent/stream"
)

// Options configure one agent. The zero value plus Paths runs an agent as
// `agent daemon run` does.
type Options struct {
	// Paths say where the agent's files are (config.ResolvePaths).
	Paths config.Paths
	// Hostname names the node when node.conf does not; default os.Hostname.
	Hostname string
	// Logger receives every component's logs; default slog.Default().
	Logger *slog.Logger
	// AdaptiveProcs runs the agent on one processor while it is idle and
	// on all of them when it is busy (procs.go). `agent daemon run` sets
	// it unless GOMAXPROCS is in its environment; agents that share a
	// process (tests, the demo) leave it off.
	AdaptiveProcs bool
	// StatsInterval is how often load and memory are sampled; default 10s,
	// <0 disables sampling (tests).
	StatsInterval time.Duration
	// ForgetAfter, when set, overrides node.conf's [hb] forget_after: how
	// long a dead peer's data is kept.
	ForgetAfter time.Duration
	// ConfigDebounce is the delay that merges bursts of config file events;
	// default 200ms.
	ConfigDebounce time.Duration
	// ConfigRecheck is the period of a full re-read of the config files,
	// with the permission checks of the directories above them and of the
	// programs they name; default config.DefaultRecheck (a minute).
	ConfigRecheck time.Duration
	// OrderTimeout bounds how long a forwarded order waits for the target
	// node's data to show it; default 10s.
	OrderTimeout time.Duration
	// LeaveTimeout bounds the graceful leave at shutdown; default 2s.
	LeaveTimeout time.Duration
	// ReadyPeriod is how long a failover leader waits, ready, before it
	// starts an instance; default orchestrator.DefaultReadyPeriod.
	ReadyPeriod time.Duration
	// RejoinGrace bounds the time a starting agent stays in status
	// "rejoin" waiting to see its peers; default 10s. (It also waits for
	// the first check of every service, which each service's timeout
	// bounds.)
	RejoinGrace time.Duration
	// QuorumLease is how long a peer's probes must go unanswered before
	// the quorum stops counting it (quorum = true); default
	// orchestrator.DefaultLease.
	QuorumLease time.Duration
	// TuneHeartbeat adjusts memberlist's config last (tests and the demo
	// shrink timings).
	TuneHeartbeat func(*memberlist.Config)
	// ProgressInterval is the idle time after which stream subscribers get
	// a progress record; default stream.DefaultProgress.
	ProgressInterval time.Duration
	// TuneSink adjusts each history sink's config last (tests shrink the
	// backoffs).
	TuneSink func(*history.SinkConfig)
}

// Agent is one running node agent: config, record bus, monitor store,
// heartbeat, API listeners. New builds and binds it, Run runs it until its
// context ends, Close releases what is left.
type Agent struct {
	opts  Options
	paths config.Paths
	log   *slog.Logger

	cfgMu sync.Mutex
	cfg   config.Node

	lock    *varLock
	bus     *events.Bus
	store   *monitor.Store
	hb      *heartbeat.Heartbeat
	watcher *config.Watcher
	// bell is rung by the heartbeat on each packet memberlist sends or
	// receives; the periodic work with no deadline of its own (the
	// orchestrator's backstop tick, the processors governor, host stats)
	// rides on those wake-ups (package ride).
	bell   *ride.Bell
	stream *stream.Handler

	// cfgApplied counts the config changes configLoop applied; cfgTick
	// wakes the Reload waiting for them (one at a time: reloadMu).
	cfgApplied atomic.Uint64
	cfgTick    chan struct{}
	reloadMu   sync.Mutex

	token string
	ext   extensions

	unixLn  net.Listener
	tcpLn   net.Listener
	servers []served

	ready     chan struct{} // closed by markReady
	readyOnce sync.Once
	probing   atomic.Bool // a liveness probe of the store and bus is in flight

	runOnce   sync.Once
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// New loads the node config (refusing a bad one with file:line), opens the
// journal, builds the monitor store, binds the heartbeat and the API
// listeners. Nothing runs until Run.
func New(opts Options) (a *Agent, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	if opts.StatsInterval == 0 {
		opts.StatsInterval = 10 * time.Second
	}
	if opts.ConfigDebounce == 0 {
		opts.ConfigDebounce = 200 * time.Millisecond
	}
	if opts.OrderTimeout == 0 {
		opts.OrderTimeout = 10 * time.Second
	}
	if opts.RejoinGrace == 0 {
		opts.RejoinGrace = 10 * time.Second
	}
	if opts.LeaveTimeout == 0 {
		opts.LeaveTimeout = 2 * time.Second
	}
	a = &Agent{opts: opts, paths: opts.Paths, log: opts.Logger, cfgTick: make(chan struct{}, 1), ready: make(chan struct{}), bell: ride.New()}
	a.ext.metrics = a.newMetrics()
	built := a
	defer func() {
		if err != nil {
			_ = built.release()
		}
	}()

	// First of all in var/: a second agent on this root must stop before
	// it reads or writes anything there (journal, state, cursors, socket).
	root := a.paths.Root
	if root == "" {
		root = a.paths.VarDir
	}
	if a.lock, err = lockVar(a.paths.VarDir, root); err != nil {
		return nil, err
	}
	a.watcher, err = config.NewWatcher(config.WatchConfig{Paths: a.paths, Hostname: opts.Hostname,
		Debounce: opts.ConfigDebounce, Recheck: opts.ConfigRecheck, Logger: a.log})
	if err != nil {
		return nil, err
	}
	snap := a.watcher.Initial()
	if snap.NodeErr != nil {
		return nil, snap.NodeErr
	}
	a.cfg = snap.Node
	cfg := a.cfg
	a.log = a.log.With("node", cfg.Node.Name)

	a.bus, err = events.Open(events.Config{
		Dir:       filepath.Join(a.paths.VarDir, "journal"),
		MaxBytes:  cfg.Journal.MaxBytes,
		MaxAge:    cfg.Journal.MaxAge,
		RingBytes: cfg.Journal.RingBytes,
		Logger:    a.log,
	})
	if err != nil {
		return nil, err
	}
	state := newStateFiles(a.paths.VarDir)
	restored, err := state.load()
	if err != nil {
		return nil, err
	}
	a.store, err = monitor.New(monitor.Config{
		Name:        cfg.Node.Name,
		ClusterName: cfg.Cluster.Name,
		Publish:     a.publish,
		Labels:      cfg.Node.Labels,
		Restored:    restored,
		Persist:     state.save,
		MaxData:     int(cfg.Node.MaxData),
		Logger:      a.log,
	})
	if errors.Is(err, monitor.ErrDataTooLarge) {
		return nil, fmt.Errorf("%s: [node] labels: %w", a.paths.NodeConf, err)
	}
	if err != nil {
		return nil, err
	}
	// Everything the store's records reach is built before the heartbeat:
	// memberlist listens as soon as it is created, and a peer that keeps
	// rejoining this address (this node restarted) pushes its data at once.
	if err := a.initExtensions(snap); err != nil {
		return nil, err
	}
	a.hb, err = heartbeat.New(heartbeat.Config{
		Name:             cfg.Node.Name,
		ClusterName:      cfg.Cluster.Name,
		Secret:           cfg.Cluster.Secret,
		BindAddr:         cfg.HB.Addr,
		BindPort:         cfg.HB.Port,
		Advertise:        cfg.HB.Advertise,
		Profile:          string(cfg.HB.Profile),
		Seeds:            cfg.Cluster.Seeds,
		ForgetAfter:      cmp.Or(opts.ForgetAfter, cfg.HB.ForgetAfter),
		ReconnectTimeout: cfg.HB.ReconnectTimeout,
		// The peers seen alive, kept so that a restarted node finds its
		// cluster even when the seeds are down.
		PeersFile: filepath.Join(a.paths.VarDir, "peers.json"),
		Tune:      opts.TuneHeartbeat,
		Bell:      a.bell,
		Logger:    a.log,
	}, a.store)
	if err != nil {
		return nil, err
	}
	a.hb.OnOrder(a.onOrder)
	if err := a.listen(); err != nil {
		return nil, err
	}
	return a, nil
}

// Name is this node's name.
func (a *Agent) Name() string { return a.store.Name() }

// Store is the agent's cluster data.
func (a *Agent) Store() *monitor.Store { return a.store }

// Bus is the agent's record bus.
func (a *Agent) Bus() *events.Bus { return a.bus }

// Heartbeat is the agent's heartbeat.
func (a *Agent) Heartbeat() *heartbeat.Heartbeat { return a.hb }

// Paths are the agent's file locations.
func (a *Agent) Paths() config.Paths { return a.paths }

// Config returns the node config in force.
func (a *Agent) Config() config.Node {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.cfg
}

// ListenAddr is the TCP listener's address, or "" without one.
func (a *Agent) ListenAddr() string {
	if a.tcpLn == nil {
		return ""
	}
	return a.tcpLn.Addr().String()
}

// Token is the bearer token of the TCP listener ("" with auth = none).
func (a *Agent) Token() string { return a.token }

// Run runs the agent until ctx is done, then leaves the cluster gracefully
// and stops every part. It returns an error when a part cannot run (the
// node name is already used in the cluster, a listener fails).
func (a *Agent) Run(ctx context.Context) error {
	err := errors.New("agent: Run called twice")
	a.runOnce.Do(func() { err = a.run(ctx) })
	return err
}

func (a *Agent) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)

	hbDone := make(chan error, 1)
	go func() { hbDone <- a.hb.Run(ctx) }()
	for _, s := range a.servers {
		a.wg.Add(1)
		go func(s served) {
			defer a.wg.Done()
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("API listener %s: %w", s.ln.Addr(), err)
			}
		}(s)
	}
	if a.opts.AdaptiveProcs {
		a.wg.Add(1)
		maxProcs := runtime.GOMAXPROCS(0)
		go func() { defer a.wg.Done(); a.governProcs(ctx, maxProcs) }()
	}
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.statsLoop(ctx) }()
	go func() { defer a.wg.Done(); a.configLoop(ctx) }()
	a.startExtensions(ctx)

	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.rejoin(ctx)
		if ctx.Err() == nil {
			a.markReady()
		}
	}()
	a.log.Info("agent running", "cluster", a.Config().Cluster.Name, "heartbeat", a.hb.Addr(),
		"socket", a.paths.Socket, "listener", a.ListenAddr())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-hbDone:
		hbDone <- runErr
		if runErr != nil {
			a.log.Error("heartbeat stopped", "err", runErr)
		}
	case runErr = <-errc:
		a.log.Error("agent stopping", "err", runErr)
	}

	// Graceful stop: tell the cluster, leave, then stop every part.
	if _, _, err := a.store.UpdateLocal("shutdown", func(d *monitor.NodeData) { d.Status = monitor.StatusShuttingDown }); err != nil {
		a.log.Error("set status shutting down", "err", err)
	}
	a.stopExtensions()
	if runErr == nil {
		if err := a.hb.Leave(a.opts.LeaveTimeout); err != nil {
			a.log.Warn("graceful leave incomplete", "err", err)
		}
	}
	cancel()
	<-hbDone
	a.stopServers()
	a.wg.Wait()
	a.log.Info("agent stopped")
	return runErr
}

func (a *Agent) stopServers() {
	if a.stream != nil {
		_ = a.stream.Close()
	}
	for _, s := range a.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.srv.Shutdown(ctx)
		cancel()
		_ = s.srv.Close()
	}
}

// Close releases everything New acquired. Call it after Run returns (or
// instead of Run). Safe to call twice.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.release() })
	return a.closeErr
}

func (a *Agent) release() error {
	var errs []error
	a.stopServers()
	if a.unixLn != nil {
		_ = a.unixLn.Close()
		_ = os.Remove(a.paths.Socket)
	}
	if a.tcpLn != nil {
		_ = a.tcpLn.Close()
	}
	a.closeExtensions()
	if a.hb != nil {
		if err := a.hb.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if a.watcher != nil {
		_ = a.watcher.Close()
	}
	if a.bus != nil {
		if err := a.bus.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	// Last: everything in var/ is closed and flushed.
	a.lock.release()
	return errors.Join(errs...)
}
