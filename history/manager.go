package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"agent/config"
)

// ManagerConfig configures the set of sinks of one agent.
type ManagerConfig struct {
	// Origin is this agent's cluster and node name.
	Origin Origin
	// Resolve turns a sink section into its database (TargetOf with the
	// agent's var directory and node.conf).
	Resolve func(config.Sink) (Target, error)
	// Consume opens the durable consumer a sink reads: its cursor is kept
	// under the sink's name. loss is to be called for records the sink
	// will never get (see Sink.ReportLoss). The Source is closed (when it
	// has a Close method) after the sink stops.
	Consume func(name string, loss func(reason string, count uint64, countKnown bool, detail string)) (Source, error)
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

	mu     sync.Mutex // guards running and closed
	run    map[string]*running
	closed bool
	wg     sync.WaitGroup
}

// running is one sink and the goroutine that runs it.
type running struct {
	conf   config.Sink
	sink   *Sink
	src    Source
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager makes a manager with no sink.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{cfg: cfg, log: cfg.Logger, run: map[string]*running{}}
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
		if s, ok := want[name]; !ok || !reflect.DeepEqual(s, r.conf) {
			m.stopLocked(name, r)
		}
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
	src, err := m.cfg.Consume(s.Name, sink.ReportLoss)
	if err != nil {
		return fmt.Errorf("[sink#%s]: %w", s.Name, err)
	}
	sink.cfg.Source = src
	r.sink, r.src = sink, src
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
	if c, ok := r.src.(interface{ Close() error }); ok {
		_ = c.Close()
	}
	delete(m.run, name)
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
