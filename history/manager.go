package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"agent/config"
	"agent/durable"
	"agent/events"
)

// ManagerConfig configures the set of sinks of one agent.
type ManagerConfig struct {
	// Origin is this agent's cluster and node name.
	Origin Origin
	// Resolve turns a sink section into its database (TargetOf with the
	// agent's var directory and node.conf).
	Resolve func(config.Sink) (Target, error)
	// Bus is the record bus the sinks read, each through a durable
	// consumer of its own.
	Bus *events.Bus
	// CursorDir holds the sinks' cursors, CursorDir/NAME.cursor; "" keeps
	// them in memory only (a restart then starts anew).
	CursorDir string
	// Publish puts an event record on the agent's stream.
	Publish func(data json.RawMessage)
	// Head returns the newest seq of the stream, for the lag figure.
	Head func() uint64
	// Logger receives the sinks' logs; default slog.Default().
	Logger *slog.Logger
	// Tune, when set, adjusts each sink's config (tests shrink backoffs).
	Tune func(*SinkConfig)
}

// Manager runs the sinks of node.conf and applies changes to them.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger

	mu      sync.Mutex // guards run, updated and closed
	run     map[string]*running
	updated bool // Update ran once: stale cursors are removed
	closed  bool
	wg      sync.WaitGroup
}

// running is one sink and the goroutine that runs it.
type running struct {
	conf   config.Sink
	sink   *Sink
	c      *durable.Consumer
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager makes a manager with no sink; it creates CursorDir.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Bus == nil {
		return nil, errors.New("history sinks: no bus")
	}
	if cfg.CursorDir != "" {
		if err := os.MkdirAll(cfg.CursorDir, 0o700); err != nil {
			return nil, fmt.Errorf("history sinks: %w", err)
		}
	}
	return &Manager{cfg: cfg, log: cfg.Logger, run: map[string]*running{}}, nil
}

// Update applies a sink set: new sinks start, removed ones stop, changed
// ones restart with the new settings from their cursor. A sink that cannot
// start (a filter that does not parse) is left out and named in the error;
// the others run.
func (m *Manager) Update(list []config.Sink) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("history sinks: manager closed")
	}
	want := map[string]config.Sink{}
	for _, s := range list {
		want[s.Name] = s
	}
	var errs []error
	for name, r := range m.run {
		s, ok := want[name]
		if !ok || !reflect.DeepEqual(s, r.conf) {
			m.stopLocked(name, r)
		}
		if !ok {
			m.removeCursor(name)
		}
	}
	if !m.updated {
		m.updated = true
		m.removeStaleCursors(want)
	}
	for _, s := range list {
		if _, ok := m.run[s.Name]; ok {
			continue
		}
		if err := m.startLocked(s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) startLocked(s config.Sink) error {
	r := &running{conf: s, done: make(chan struct{})}
	cfg := SinkConfig{
		Sink:    s,
		Resolve: func() (Target, error) { return m.cfg.Resolve(s) },
		Origin:  m.cfg.Origin,
		Publish: m.cfg.Publish,
		Head:    m.cfg.Head,
		Logger:  m.log,
	}
	if m.cfg.Tune != nil {
		m.cfg.Tune(&cfg)
	}
	sink, err := NewSink(cfg)
	if err != nil {
		return err
	}
	c, err := durable.Open(durable.Config{
		Name:       "sink " + s.Name,
		CursorPath: m.cursorPath(s.Name),
		Bus:        m.cfg.Bus,
		Logger:     sink.log,
		OnLoss: func(l durable.Loss) {
			sink.ReportLoss(string(l.Reason), l.Count, l.CountKnown, l.Detail)
		},
		// A new sink writes what the journal still holds: history is
		// what it is for, and the key keeps a record single.
		NewFromOldest: true,
	})
	if err != nil {
		return fmt.Errorf("[sink#%s]: %w", s.Name, err)
	}
	sink.cfg.Source = DurableSource(c)
	r.sink, r.c = sink, c
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	m.run[s.Name] = r
	m.wg.Add(1)
	go func() { // owned by the manager: stopLocked or Close cancels and waits
		defer m.wg.Done()
		defer close(r.done)
		if err := sink.Run(ctx); err != nil {
			m.log.Error("history sink stopped", keySink, s.Name, keyErr, err)
		}
	}()
	m.log.Info("history sink started", keySink, s.Name, "db", s.String())
	return nil
}

// stopLocked stops one sink and waits for it: its final flush is bounded.
func (m *Manager) stopLocked(name string, r *running) {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		m.log.Error("history sink slow to stop", keySink, name)
		<-r.done
	}
	if err := r.c.Close(); err != nil {
		m.log.Warn("history sink cursor not closed cleanly", keySink, name, keyErr, err)
	}
	delete(m.run, name)
}

// cursorSuffix names the cursor files in CursorDir.
const cursorSuffix = ".cursor"

func (m *Manager) cursorPath(name string) string {
	if m.cfg.CursorDir == "" {
		return ""
	}
	return filepath.Join(m.cfg.CursorDir, name+cursorSuffix)
}

// removeCursor deletes the cursor of a sink removed from node.conf: added
// again later, it starts as a new sink.
func (m *Manager) removeCursor(name string) {
	path := m.cursorPath(name)
	if path == "" {
		return
	}
	if err := durable.RemoveCursor(path); err != nil {
		m.log.Warn("cannot remove the cursor of a removed history sink", keySink, name, keyErr, err)
	}
}

// removeStaleCursors deletes the cursors of sinks the first Update does
// not name: removed from node.conf while the agent was stopped.
func (m *Manager) removeStaleCursors(named map[string]config.Sink) {
	if m.cfg.CursorDir == "" {
		return
	}
	entries, err := os.ReadDir(m.cfg.CursorDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("cannot list history sink cursors", "dir", m.cfg.CursorDir, keyErr, err)
		}
		return
	}
	seen := map[string]bool{}
	for _, e := range entries {
		n := durable.CursorPathOf(e.Name())
		name, ok := strings.CutSuffix(n, cursorSuffix)
		if !ok || seen[name] {
			continue
		}
		seen[name] = true
		if _, ok := named[name]; ok {
			continue
		}
		m.removeCursor(name)
		m.log.Info("removed the cursor of a history sink no longer configured", keySink, name)
	}
}

// Stats returns each running sink's figures, in no particular order.
func (m *Manager) Stats() []SinkStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SinkStats, 0, len(m.run))
	for _, r := range m.run {
		out = append(out, r.sink.Stats())
	}
	return out
}

// Close stops every sink and waits for them.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	for name, r := range m.run {
		m.stopLocked(name, r)
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}
