package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"agent/config"
	"agent/durable"
	"agent/events"
)

// Defaults of Config.
const (
	DefaultOutputLimit = 4096
	DefaultKillGrace   = 5 * time.Second
)

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("hook runner closed")

// Config says where a Runner reads records and keeps its cursors.
type Config struct {
	// Bus is the record bus the hooks consume and where hook_skipped events
	// are published. Required. Close the Runner before the Bus.
	Bus *events.Bus
	// Dir holds one NAME.cursor file per hook (var/hooks), created 0700
	// when missing. "" keeps cursors in memory only: every hook then starts
	// at the head when the agent starts (tests, tools).
	Dir string
	// Nodename is the nodename of the hook_skipped records published.
	Nodename string
	// Publish, when set, publishes the hook_skipped events instead of
	// Bus.Publish (the agent counts events by id on the way).
	Publish func(nodename, kind string, data json.RawMessage)
	// Logger receives the runner's logs under component=hooks; nil means
	// slog.Default().
	Logger *slog.Logger
	// OutputLimit is how many bytes of a run's stdout and of its stderr are
	// logged; the rest is read and dropped. 0 means DefaultOutputLimit.
	OutputLimit int
	// KillGrace is how long a command has to exit after SIGTERM before its
	// process group gets SIGKILL. 0 means DefaultKillGrace.
	KillGrace time.Duration
	// Now is the clock run durations are measured with; nil means time.Now.
	Now func() time.Time
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Bus == nil {
		errs = append(errs, errors.New("hooks config: Bus is required"))
	}
	if c.OutputLimit < 0 {
		errs = append(errs, fmt.Errorf("hooks config: OutputLimit %d is negative", c.OutputLimit))
	}
	if c.KillGrace < 0 {
		errs = append(errs, fmt.Errorf("hooks config: KillGrace %s is negative", c.KillGrace))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.OutputLimit == 0 {
		c.OutputLimit = DefaultOutputLimit
	}
	if c.KillGrace == 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Runner runs the configured hooks. Create it with New, give it hooks with
// Update, stop it with Close. Its methods are safe for concurrent use.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	bus   *events.Bus
	epoch string // the bus's epoch: it never changes while the bus is open

	// closing ends when Close is called: running commands are terminated
	// at once.
	closing context.Context
	kill    context.CancelFunc
	wg      sync.WaitGroup // every worker goroutine

	// mu guards the fields below. It is never held while waiting for a
	// worker; a worker takes it only when it ends.
	mu       sync.Mutex
	active   map[string]*worker // the current hook set, by name
	draining map[string]*worker // removed hooks still finishing a run
	updated  bool               // Update was called once
	closed   bool
}

// New makes a Runner with no hooks; call Update to give it some.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("hook cursor directory: %w", err)
		}
	}
	_, epoch := cfg.Bus.Position()
	closing, kill := context.WithCancel(context.Background())
	return &Runner{
		cfg:      cfg,
		log:      cfg.Logger.With(keyComponent, "hooks"),
		bus:      cfg.Bus,
		epoch:    epoch,
		closing:  closing,
		kill:     kill,
		active:   make(map[string]*worker),
		draining: make(map[string]*worker),
	}, nil
}

// Update applies a new hook set, live. Hooks whose name is new start at the
// head of the stream (or, at the first Update, from their cursor file when
// the agent ran them before); hooks no longer named stop and lose their
// cursor; hooks whose settings changed restart with the new settings from
// their cursor, after their running command ended. Unchanged hooks go on
// undisturbed.
//
// A hook that cannot run (bad name, no command, a filter that does not
// parse, a duplicate name) is left out, or keeps its previous settings if
// it ran before, and reported in the returned error; the others are
// applied. After Close, Update returns ErrClosed.
func (r *Runner) Update(hooks []config.Hook) error {
	var errs []error
	want := make(map[string]*spec, len(hooks))
	order := make([]string, 0, len(hooks))
	for _, h := range hooks {
		if _, dup := want[h.Name]; dup {
			errs = append(errs, fmt.Errorf("hook %s: duplicate name", h.Name))
			continue
		}
		s, err := compile(h)
		if err != nil {
			errs = append(errs, err)
			if r.isActive(h.Name) {
				want[h.Name] = nil // keep the running version
				order = append(order, h.Name)
			}
			continue
		}
		want[h.Name] = s
		order = append(order, h.Name)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	first := !r.updated
	r.updated = true
	for name, w := range r.active {
		if _, ok := want[name]; !ok {
			w.log.Info("hook removed")
			w.halt(true)
			delete(r.active, name)
			r.draining[name] = w
		}
	}
	for _, name := range order {
		s := want[name]
		if s == nil {
			continue
		}
		old := r.active[name]
		if old != nil && old.spec.equal(s) {
			continue
		}
		st := newHookStats()
		if old != nil {
			st = old.stats
		}
		w, ctx := r.newWorker(s, st)
		switch {
		case old != nil:
			// Changed: the new settings take over from the old worker's
			// cursor once its running command ended.
			w.log.Info("hook changed")
			old.halt(false)
			w.prev, w.inherit = old, true
		case r.draining[name] != nil:
			// Removed, then named again before its run ended: a new hook
			// that waits for the old one to end and remove its cursor.
			w.prev = r.draining[name]
			delete(r.draining, name)
			w.startAtHead()
			w.log.Info("hook added")
		case !first || !r.hasCursor(name):
			w.startAtHead()
			w.log.Info("hook added")
		default:
			w.log.Info("hook resumes from its cursor")
		}
		r.active[name] = w
		r.wg.Add(1)
		go w.run(ctx)
	}
	if first {
		named := make(map[string]bool, len(hooks))
		for _, h := range hooks {
			named[h.Name] = true
		}
		r.removeStaleCursors(named)
	}
	return errors.Join(errs...)
}

func (r *Runner) isActive(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active[name] != nil
}

// hasCursor reports whether name has a cursor file.
func (r *Runner) hasCursor(name string) bool {
	if r.cfg.Dir == "" {
		return false
	}
	_, err := durable.ReadCursor(r.cursorPath(name))
	return !errors.Is(err, fs.ErrNotExist)
}

// removeStaleCursors deletes the cursor files of hooks the first Update
// does not name (removed from node.conf while the agent was down), with
// their temporary files. A hook named but refused (a filter that
// does not parse) keeps its cursor for when it is fixed. Called with mu
// held.
func (r *Runner) removeStaleCursors(named map[string]bool) {
	if r.cfg.Dir == "" {
		return
	}
	entries, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		r.log.Warn("cannot list hook cursors", keyDir, r.cfg.Dir, keyErr, err)
		return
	}
	stale := map[string]bool{}
	for _, e := range entries {
		n := durable.CursorPathOf(e.Name())
		if !strings.HasSuffix(n, cursorSuffix) {
			continue
		}
		name := strings.TrimSuffix(n, cursorSuffix)
		if named[name] || r.active[name] != nil || r.draining[name] != nil || stale[name] {
			continue
		}
		stale[name] = true
		path := r.cursorPath(name)
		if err := durable.RemoveCursor(path); err != nil {
			r.log.Warn("cannot remove stale hook cursor", keyFile, path, keyErr, err)
			continue
		}
		r.log.Info("removed the cursor of a hook no longer configured", keyFile, path)
	}
}

// workerEnded forgets w once its goroutine is over.
func (r *Runner) workerEnded(w *worker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining[w.spec.name] == w {
		delete(r.draining, w.spec.name)
	}
}

// Close stops every hook and waits for their goroutines: a running command
// gets SIGTERM at once and SIGKILL after KillGrace, and its record is not
// marked done. Close is safe to call more than once.
func (r *Runner) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		r.kill()
		for _, w := range r.active {
			w.halt(false)
		}
		for _, w := range r.draining {
			w.halt(true)
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// Stats returns the figures of the current hooks, sorted by name.
func (r *Runner) Stats() Stats {
	head, _ := r.bus.Position()
	r.mu.Lock()
	ws := make([]*worker, 0, len(r.active))
	for _, w := range r.active {
		ws = append(ws, w)
	}
	r.mu.Unlock()
	sort.Slice(ws, func(i, j int) bool { return ws[i].spec.name < ws[j].spec.name })
	st := Stats{Hooks: make([]HookStats, 0, len(ws))}
	for _, w := range ws {
		st.Hooks = append(st.Hooks, w.stats.snapshot(w.spec.name, r.epoch, head))
	}
	return st
}

// Log attribute keys.
const (
	keyComponent = "component"
	keyHook      = "hook"
	keySeq       = "seq"
	keyEventID   = "event_id"
	keyErr       = "err"
	keyDir       = "dir"
	keyFile      = "file"
	keyCount     = "count"
	keyReason    = "reason"
	keyDetail    = "detail"
	keyEpoch     = "epoch"
	keyOldEpoch  = "old_epoch"
	keyDuration  = "duration"
	keyCommand   = "command"
)
