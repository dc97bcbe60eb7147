package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"agent/config"
	"agent/events"
)

// Event ids the sinks publish (SPEC section 11).
const (
	EventSinkError     = "sink_error"
	EventSinkRecovered = "sink_recovered"
	EventSinkSkipped   = "sink_skipped"
)

// Log attribute keys.
const (
	keySink     = "sink"
	keyErr      = "err"
	keyDB       = "db"
	keyCount    = "count"
	keySeq      = "seq"
	keyRetry    = "retry_in"
	keyFailures = "failures"
	keyDownFor  = "down_for"
)

// Source is what a sink reads: its durable consumer of the journal. Done,
// Pass and Position may be called from any goroutine.
type Source interface {
	// Next returns the next record of the stream, waiting for one until
	// ctx is done.
	Next(ctx context.Context) (*events.Record, error)
	// Done says that every record up to seq is committed to the database
	// (or not one the sink writes): the cursor moves past it, durably.
	Done(seq uint64)
	// Pass says the same of a record the sink does not write: the cursor
	// write may be batched.
	Pass(seq uint64)
	// Position is the seq of the last record the sink is done with.
	Position() uint64
}

// SinkConfig configures one sink.
type SinkConfig struct {
	// Sink is the [sink#NAME] section.
	Sink config.Sink
	// Resolve gives the database to write to. It is called at every
	// connection attempt, so a dsn_file fixed meanwhile is read again.
	Resolve func() (Target, error)
	// Origin is this agent's cluster and node name: the rows' key.
	Origin Origin
	// Source gives the records.
	Source Source
	// Publish puts an event record (sink_error, sink_recovered,
	// sink_skipped) on the agent's stream.
	Publish func(data json.RawMessage)
	// Head returns the newest seq of the stream, for the lag figure.
	// Optional.
	Head func() uint64
	// Logger receives the sink's logs; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MinBackoff and MaxBackoff bound the wait between attempts while
	// the database fails; default 200ms and 30s. Each wait is jittered
	// by ±50%.
	MinBackoff, MaxBackoff time.Duration
	// RetentionEvery is how often old rows are deleted when the sink has
	// a retention; default 1h (the first pass runs soon after start).
	RetentionEvery time.Duration
}

// SinkStats are one sink's figures, for /metrics.
type SinkStats struct {
	// Name is NAME of [sink#NAME].
	Name string
	// Written counts the rows the sink added.
	Written uint64
	// Duplicates counts records written again that were already there
	// (after a crash or an outage that hid a commit): not added twice.
	Duplicates uint64
	// Errors counts failed attempts to reach or write the database.
	Errors uint64
	// Skipped counts records lost to journal retention before the sink
	// read them.
	Skipped uint64
	// Batches counts the transactions committed; BatchRecords and
	// BatchSeconds are the sums of their sizes and durations.
	Batches      uint64
	BatchRecords uint64
	BatchSeconds float64
	// Deleted counts the rows retention removed.
	Deleted uint64
	// LagRecords is how many records of the stream the sink has not
	// finished with; LagSeconds the age of the oldest record it holds
	// unwritten (0 when caught up).
	LagRecords uint64
	LagSeconds float64
	// Up says whether the last attempt to write reached the database.
	Up bool
}

// Sink writes the records of one [sink#NAME] to its database, in
// batches, exactly once (see the package documentation).
type Sink struct {
	cfg  SinkConfig
	spec *spec
	log  *slog.Logger

	mu        sync.Mutex // guards st, since and downSince
	st        SinkStats
	since     time.Time // time of the oldest record held unwritten; zero: none
	downSince time.Time // start of the current outage; zero: none

	// Owned by the Run goroutine.
	db          *DB
	pending     []*events.Record
	last        uint64 // seq of the last record read
	outage      bool
	outageStart time.Time
	failures    int
	lastWarn    time.Time
	migrated    bool
	runLog      *slog.Logger // log with the database's name
}

// NewSink compiles the sink's config; an unparsable filter is an error.
func NewSink(cfg SinkConfig) (*Sink, error) {
	sp, err := newSpec(cfg.Sink)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.RetentionEvery <= 0 {
		cfg.RetentionEvery = time.Hour
	}
	s := &Sink{cfg: cfg, spec: sp, log: cfg.Logger.With(keySink, cfg.Sink.Name)}
	s.runLog = s.log
	s.st.Name = cfg.Sink.Name
	return s, nil
}

// Name is the sink's name.
func (s *Sink) Name() string { return s.cfg.Sink.Name }

// Stats returns the sink's figures.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	st := s.st
	since, down := s.since, s.downSince
	s.mu.Unlock()
	if s.cfg.Head != nil && s.cfg.Source != nil {
		if h, done := s.cfg.Head(), s.cfg.Source.Position(); h > done {
			st.LagRecords = h - done
		}
	}
	now := s.cfg.Now()
	if !since.IsZero() {
		st.LagSeconds = max(0, now.Sub(since).Seconds())
	}
	if !down.IsZero() && st.LagRecords > 0 {
		// Records wait in the journal, unread: at least the outage's age.
		st.LagSeconds = max(st.LagSeconds, now.Sub(down).Seconds())
	}
	return st
}

// ReportLoss reports records the sink will never write: lost to journal
// retention before it read them (reason "retention", with their count),
// or an unknown number (the journal renumbered, a cursor lost: countKnown
// false). It is logged, counted, and published as sink_skipped.
func (s *Sink) ReportLoss(reason string, count uint64, countKnown bool, detail string) {
	s.mu.Lock()
	s.st.Skipped += count
	s.mu.Unlock()
	ev := map[string]any{"id": EventSinkSkipped, "sink": s.Name(), "reason": reason}
	if countKnown {
		ev["count"] = count
		s.log.Error("history sink skipped records: they will never be written", "reason", reason, keyCount, count, "detail", detail)
	} else {
		s.log.Error("history sink skipped an unknown number of records: they will never be written", "reason", reason, "detail", detail)
	}
	s.publish(ev)
}

func (s *Sink) publish(ev map[string]any) {
	if s.cfg.Publish == nil {
		return
	}
	b, err := json.Marshal(ev)
	if err == nil {
		s.cfg.Publish(b)
	}
}

// Run writes records until ctx is done. It first connects and creates or
// migrates the schema, retrying while the database fails; records wait in
// the journal meanwhile. At the end it tries once more, briefly, to write
// what it holds: whatever is not committed is written again after a
// restart, and lands once.
func (s *Sink) Run(ctx context.Context) error {
	defer func() {
		if s.db != nil {
			_ = s.db.Close()
			s.db = nil
		}
	}()
	if !s.connect(ctx) {
		return nil
	}
	rctx, stopReader := context.WithCancel(ctx)
	recs := make(chan *events.Record, s.spec.cfg.Batch)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by Run: stopped by stopReader, waited for below
		defer wg.Done()
		for {
			r, err := s.cfg.Source.Next(rctx)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case recs <- r:
			case <-rctx.Done():
				return
			}
		}
	}()
	defer func() {
		stopReader()
		wg.Wait()
		s.finalFlush()
	}()

	flushT := time.NewTimer(time.Hour)
	flushT.Stop()
	defer flushT.Stop()
	var retention <-chan time.Time // nil without retention: never fires
	var retTimer *time.Timer
	if s.spec.cfg.Retention > 0 {
		retTimer = time.NewTimer(min(10*time.Second, s.cfg.RetentionEvery))
		defer retTimer.Stop()
		retention = retTimer.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("history sink %s: read the stream: %w", s.Name(), err)
		case <-flushT.C:
			if !s.flush(ctx) {
				return nil
			}
		case <-retention:
			n := s.retain(ctx)
			next := s.cfg.RetentionEvery
			if n == retentionChunk {
				next = 100 * time.Millisecond // more to delete: soon, between batches
			}
			retTimer.Reset(next)
		case r := <-recs:
			write, prio := s.spec.match(r)
			s.last = r.Seq
			if !write {
				if len(s.pending) == 0 {
					s.cfg.Source.Pass(r.Seq)
				}
				continue
			}
			s.pending = append(s.pending, r)
			if len(s.pending) == 1 {
				s.holding(r.Time)
				flushT.Reset(s.spec.flushEvery())
			}
			if prio || len(s.pending) >= s.spec.cfg.Batch {
				flushT.Stop()
				if !s.flush(ctx) {
					return nil
				}
			}
		}
	}
}

// holding records the time of the oldest record held unwritten.
func (s *Sink) holding(t time.Time) {
	s.mu.Lock()
	s.since = t
	s.mu.Unlock()
}

// connect opens the database and brings its schema up to date, retrying
// until it works or ctx is done (false).
func (s *Sink) connect(ctx context.Context) bool {
	for {
		err := s.open(ctx)
		if err == nil {
			s.recovered()
			return true
		}
		if !s.failed(ctx, err) {
			return false
		}
	}
}

func (s *Sink) open(ctx context.Context) error {
	if s.db == nil {
		t, err := s.cfg.Resolve()
		if err != nil {
			return err
		}
		db, err := Open(t)
		if err != nil {
			return err
		}
		s.db = db
		s.runLog = s.log.With(keyDB, t.Name)
	}
	from, err := s.db.Migrate(ctx, s.cfg.Origin.Agent)
	if err != nil {
		return err
	}
	if from < SchemaVersion {
		s.runLog.Info("history schema created or upgraded", "from_version", from, "to_version", SchemaVersion)
	}
	s.migrated = true
	return nil
}

// flush writes the pending records in one transaction, retrying while the
// database fails. It returns false when ctx ended first.
func (s *Sink) flush(ctx context.Context) bool {
	if len(s.pending) == 0 {
		return true
	}
	for {
		err := s.write(ctx)
		if err == nil {
			s.recovered()
			return true
		}
		if !s.failed(ctx, err) {
			return false
		}
	}
}

// write runs one attempt of flush.
func (s *Sink) write(ctx context.Context) error {
	if !s.migrated {
		// After a failure the database may be a new one (restored,
		// recreated): make sure the schema is there before writing.
		if err := s.open(ctx); err != nil {
			return err
		}
	}
	start := s.cfg.Now()
	n, err := s.db.Insert(ctx, s.cfg.Origin, s.pending)
	if err != nil {
		s.migrated = false
		return err
	}
	took := s.cfg.Now().Sub(start)
	s.mu.Lock()
	s.st.Written += uint64(n)
	s.st.Duplicates += uint64(len(s.pending)) - uint64(n)
	s.st.Batches++
	s.st.BatchRecords += uint64(len(s.pending))
	s.st.BatchSeconds += took.Seconds()
	s.since = time.Time{}
	s.mu.Unlock()
	clear(s.pending)
	s.pending = s.pending[:0]
	s.cfg.Source.Done(s.last)
	return nil
}

// finalFlush tries once, briefly, to write what is pending at shutdown.
func (s *Sink) finalFlush() {
	if len(s.pending) == 0 || s.db == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.write(ctx); err != nil {
		s.runLog.Warn("history sink stopped with records unwritten: they are written after the next start",
			keyCount, len(s.pending), keyErr, err)
	}
}

// failed reports a failed attempt and waits before the next one. It
// returns false when ctx ended.
func (s *Sink) failed(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	s.failures++
	now := s.cfg.Now()
	s.mu.Lock()
	s.st.Errors++
	s.st.Up = false
	s.mu.Unlock()
	wait := s.backoff()
	msg := short(err.Error())
	switch {
	case !s.outage:
		s.outage, s.outageStart, s.lastWarn = true, now, now
		s.mu.Lock()
		s.downSince = now
		s.mu.Unlock()
		s.runLog.Error("history sink cannot write to its database: records wait in the journal; retrying",
			keyErr, msg, keyRetry, wait.Round(time.Millisecond))
		s.publish(map[string]any{"id": EventSinkError, "sink": s.Name(), "error": msg})
	case now.Sub(s.lastWarn) >= 5*time.Minute:
		s.lastWarn = now
		s.runLog.Warn("history sink still cannot write to its database", keyErr, msg,
			keyFailures, s.failures, keyDownFor, now.Sub(s.outageStart).Round(time.Second).String())
	default:
		s.runLog.Debug("history sink attempt failed", keyErr, msg, keyRetry, wait)
	}
	if errors.Is(err, ErrNewerSchema) {
		wait = s.cfg.MaxBackoff // only an upgrade fixes it
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// recovered closes an outage after a successful attempt.
func (s *Sink) recovered() {
	s.mu.Lock()
	s.st.Up = true
	s.downSince = time.Time{}
	s.mu.Unlock()
	if !s.outage {
		s.failures = 0
		return
	}
	down := s.cfg.Now().Sub(s.outageStart)
	s.runLog.Info("history sink writes again", keyFailures, s.failures, keyDownFor, down.Round(time.Millisecond).String())
	s.publish(map[string]any{"id": EventSinkRecovered, "sink": s.Name(), "failures": s.failures,
		"down_for": down.Round(time.Millisecond).String()})
	s.outage, s.failures = false, 0
}

// backoff is the wait after the n-th failure in a row: doubling from
// MinBackoff up to MaxBackoff, jittered by ±50% so that agents that lost
// the same database do not come back in step.
func (s *Sink) backoff() time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < s.failures && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// retain deletes one chunk of this agent's rows older than the retention
// and returns how many went.
func (s *Sink) retain(ctx context.Context) int64 {
	if s.db == nil {
		return 0
	}
	before := s.cfg.Now().Add(-s.spec.cfg.Retention)
	n, err := s.db.DeleteOlder(ctx, s.cfg.Origin, before, retentionChunk)
	if err != nil {
		if ctx.Err() == nil {
			s.runLog.Warn("history retention failed; retried later", keyErr, short(err.Error()))
		}
		return 0
	}
	if n > 0 {
		s.mu.Lock()
		s.st.Deleted += uint64(n)
		s.mu.Unlock()
		s.runLog.Info("history retention deleted old rows", keyCount, n, "before", before.UTC().Format(time.RFC3339))
	}
	return n
}

// short bounds an error message put in an event record.
func short(s string) string {
	s = oneLine(s)
	const limit = 300
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
