package triggers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"agent/config"
	"agent/durable"
	"agent/events"
)

// Defaults of Config.
const (
	// DefaultSyncInterval is how long a change of the streams waits for its
	// fsync; commands run once their stream's close is fsynced.
	DefaultSyncInterval = 50 * time.Millisecond
	// DefaultCursorInterval is how long the cursor alone (records that
	// matched nothing) waits before it is written.
	DefaultCursorInterval = time.Second
	// DefaultRetryBase is the pause before the first rerun of a failing
	// command; it doubles at each rerun up to DefaultRetryMax.
	DefaultRetryBase = time.Second
	// DefaultRetryMax caps the pause between reruns.
	DefaultRetryMax = time.Minute
	// DefaultOutputLimit is how many bytes of a run's stdout and stderr are
	// logged.
	DefaultOutputLimit = 4096
	// DefaultKillGrace is the time between SIGTERM and SIGKILL at a
	// command's timeout.
	DefaultKillGrace = 5 * time.Second
)

// StateFile is the name of the state file in Config.Dir.
const StateFile = "streams.log"

// Event ids the runner publishes.
const (
	EventFire    = "trigger_fire"
	EventExpire  = "trigger_expire"
	EventFailed  = "trigger_failed"
	EventSkipped = "trigger_skipped"
)

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("trigger runner closed")

// Config says where a Runner reads records, keeps its state and publishes
// its events.
type Config struct {
	// Bus is the record bus read. Required. Close the Runner before the Bus.
	Bus *events.Bus
	// Dir holds the state file (var/triggers), created 0700 when missing.
	// "" keeps the state in memory only: open streams are lost at a
	// restart (tests, tools).
	Dir string
	// Nodename is the nodename of the events published.
	Nodename string
	// Publish, when set, publishes the runner's events instead of
	// Bus.Publish (the agent counts events by id on the way).
	Publish func(nodename, kind string, data json.RawMessage)
	// Logger receives the runner's logs under component=triggers; nil
	// means slog.Default().
	Logger *slog.Logger
	// Now is the clock of windows and run durations; nil means time.Now.
	Now func() time.Time
	// SyncInterval: 0 means DefaultSyncInterval.
	SyncInterval time.Duration
	// CursorInterval: 0 means DefaultCursorInterval.
	CursorInterval time.Duration
	// RetryBase and RetryMax shape the backoff between reruns; 0 means the
	// defaults.
	RetryBase, RetryMax time.Duration
	// MaxEvents bounds the events a stream keeps; 0 means DefaultMaxEvents.
	MaxEvents int
	// OutputLimit is how many bytes of a run's stdout and of its stderr are
	// logged; 0 means DefaultOutputLimit.
	OutputLimit int
	// KillGrace: 0 means DefaultKillGrace.
	KillGrace time.Duration
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.CursorInterval <= 0 {
		c.CursorInterval = DefaultCursorInterval
	}
	if c.RetryBase <= 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.OutputLimit <= 0 {
		c.OutputLimit = DefaultOutputLimit
	}
	if c.KillGrace <= 0 {
		c.KillGrace = DefaultKillGrace
	}
	return c
}

// Runner runs the configured triggers: see the package documentation.
// Create it with New, give it triggers with Update, stop it with Close.
// Its methods are safe for concurrent use.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	bus   *events.Bus
	stats *statsSet

	// Set by New, then owned by the loop goroutine.
	eng      *Engine
	state    *stateFile // nil without Dir
	resume   *durable.Cursor
	stateBad string // why the state file was unreadable, reported at start

	updates chan update
	lists   chan chan []Listed

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop has ended

	mu      sync.Mutex
	started bool
	closed  bool
}

// New makes a Runner and loads its state file: the open streams and the
// pending commands of the previous run. Nothing runs until Update.
func New(cfg Config) (*Runner, error) {
	if cfg.Bus == nil {
		return nil, errors.New("triggers config: Bus is required")
	}
	cfg = cfg.withDefaults()
	r := &Runner{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "triggers"),
		bus:     cfg.Bus,
		stats:   newStatsSet(),
		eng:     NewEngine(cfg.MaxEvents),
		updates: make(chan update, 1),
		lists:   make(chan chan []Listed),
		done:    make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if cfg.Dir == "" {
		return r, nil
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("trigger state directory: %w", err)
	}
	path := filepath.Join(cfg.Dir, StateFile)
	st, list, cur, ok, err := loadState(path, r.log)
	if err != nil {
		return nil, err
	}
	if err := r.eng.replay(list); err != nil {
		// Not this code's file, or a bug: keep it for a post-mortem and
		// start empty, loudly.
		bad := path + ".bad"
		_ = os.Rename(path, bad)
		r.log.Error("trigger state unreadable: open streams and pending commands are lost; the file is kept",
			keyFile, bad, keyErr, err)
		r.stateBad = err.Error()
		r.eng = NewEngine(cfg.MaxEvents)
		st, _, _, _, _ = loadState(path, r.log)
		ok = false
	}
	r.state = st
	if ok {
		r.resume = &durable.Cursor{Epoch: cur.Epoch, Seq: cur.Seq}
	}
	return r, nil
}

// Update applies a new trigger set, live (SPEC section 12's reload rules):
// see Engine.Update. The first call starts the runner, unless there is
// nothing to run: no trigger and no state left by a previous run. A
// trigger that does not compile is refused (the error says which) and the
// others apply.
func (r *Runner) Update(list []config.Trigger) error {
	var specs []*Spec
	var errs []error
	for _, c := range list {
		s, err := Compile(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		specs = append(specs, s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	// A new trigger sees the records published after this call.
	head, epoch := r.bus.Position()
	u := update{specs: specs, epoch: epoch, head: head}
	if !r.started {
		if len(specs) == 0 && r.resume == nil && r.stateBad == "" {
			return errors.Join(errs...) // nothing declared, nothing left: nothing runs
		}
		if r.resume == nil {
			r.resume = &durable.Cursor{Epoch: epoch, Seq: head}
		}
		r.started = true
		go r.loop(u)
		return errors.Join(errs...)
	}
	// The newest set replaces one the loop has not taken yet.
	select {
	case old := <-r.updates:
		// The triggers new in the set replaced see records from the
		// older head.
		u.epoch, u.head = old.epoch, old.head
	default:
	}
	r.updates <- u
	return errors.Join(errs...)
}

// update is a trigger set and the head of the stream when it was given.
type update struct {
	specs []*Spec
	epoch string
	head  uint64
}

// List describes the configured triggers, in config order, with their
// open streams.
func (r *Runner) List(ctx context.Context) ([]Listed, error) {
	r.mu.Lock()
	started := r.started
	r.mu.Unlock()
	if !started {
		return []Listed{}, nil
	}
	reply := make(chan []Listed, 1)
	select {
	case r.lists <- reply:
	case <-r.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case l := <-reply:
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops the runner: running commands are terminated (they run again
// at the next start, as the command in flight at a crash), what finished is
// recorded and the state file is committed.
func (r *Runner) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	started := r.started
	r.mu.Unlock()
	r.cancel()
	if started {
		<-r.done
	} else if r.state != nil {
		r.state.close()
	}
	return nil
}

// Stats returns the figures of every trigger seen since start.
func (r *Runner) Stats() Stats { return r.stats.snapshot() }

// publish puts an event record on the bus.
func (r *Runner) publish(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		r.log.Error("cannot encode an event", keyErr, err)
		return
	}
	if p := r.cfg.Publish; p != nil {
		p(r.cfg.Nodename, events.KindEvent, data)
		return
	}
	r.bus.Publish(r.cfg.Nodename, events.KindEvent, data)
}
