package triggers

import (
	"context"
	"errors"
	"sync"
	"time"

	"agent/durable"
	"agent/events"
)

// item is what the reader goroutine hands the loop, in stream order: a
// record, a loss found before the next record, or the news that the
// reader has caught up with the head of the stream.
type item struct {
	rec      *events.Record
	loss     *durable.Loss
	caughtUp bool
	err      error // the reader stopped
}

// result is what an executor reports: an action finished (done) or not
// (interrupted by Close: it runs again at the next start).
type result struct {
	id   uint64
	done bool
}

// loop owns the engine and the state file: records, expiries, reloads and
// finished commands come to it in turn. It ends when the runner closes,
// once the executors have ended and the state is committed.
func (r *Runner) loop(first update) {
	defer close(r.done)
	l := &loopState{
		r:       r,
		items:   make(chan item, 256),
		results: make(chan result, 64),
		execs:   map[string]*executor{},
	}
	// The cursor a commit writes before any record is read is the one the
	// reader resumes from (Update set it for a new state).
	l.cur = cursor{Epoch: r.resume.Epoch, Seq: r.resume.Seq}
	// Restored streams wait for the records after the cursor before their
	// windows are judged: apply the config without expiring anything.
	l.dispatch = r.eng.Pending() // from the previous run
	l.handle(r.eng.Update(first.specs, time.Time{}, first.epoch, first.head))
	if r.stateBad != "" {
		r.publish(skippedEvent{ID: EventSkipped, Reason: "state_unreadable", Detail: truncate(r.stateBad, 200)})
	}
	l.refreshStats()

	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		r.read(r.ctx, l.items)
	}()
	l.run()
	<-readerDone
	l.shutdown()
}

// loopState is the loop goroutine's own.
type loopState struct {
	r       *Runner
	items   chan item
	results chan result
	execs   map[string]*executor
	execWG  sync.WaitGroup

	cur      cursor
	lastTime time.Time // time of the last record applied
	caughtUp bool      // no record known beyond the last applied
	reading  bool      // the reader runs

	dispatch   []*Action // closed, to run once the close is committed
	dirty      bool      // entries wait for a commit
	moved      bool      // the cursor moved since the last commit
	flushAt    time.Time // when the armed flush timer fires; zero: none
	flush      *time.Timer
	expiry     *time.Timer
	expAt      time.Time
	syncFailed bool // the last journal fsync failed (logged once)
	// statsAt is the engine's change count the stats gauges show.
	statsAt  uint64
	statsSet bool
}

func (l *loopState) run() {
	r := l.r
	l.reading = true
	l.flush = time.NewTimer(time.Hour)
	l.flush.Stop()
	l.expiry = time.NewTimer(time.Hour)
	l.expiry.Stop()
	defer l.flush.Stop()
	defer l.expiry.Stop()
	for {
		l.armExpiry()
		select {
		case <-r.ctx.Done():
			return
		case it := <-l.items:
			l.takeBatch(it)
		case <-l.expiry.C:
			l.expAt = time.Time{}
			l.expire()
		case u := <-r.updates:
			l.handle(r.eng.Update(u.specs, l.horizon(), u.epoch, u.head))
			l.refreshStats()
		case <-l.flush.C:
			l.flushAt = time.Time{}
			l.commit()
		case res := <-l.results:
			l.finished(res)
		case reply := <-r.lists:
			reply <- listed(r.eng.List(), r.stats.snapshot(), r.cfg.Now())
		}
		l.armFlush()
	}
}

// takeBatch applies it and what else the reader has ready, up to a batch,
// before the loop looks at its timers.
func (l *loopState) takeBatch(it item) {
	defer l.refreshStats()
	for n := 1; l.take(it); n++ {
		if n == 256 {
			return
		}
		select {
		case it = <-l.items:
		default:
			return
		}
	}
	l.reading = false
	l.items = nil // a nil channel: the loop no longer reads it
}

// take applies one item of the reader; false when the reader stopped.
func (l *loopState) take(it item) bool {
	r := l.r
	switch {
	case it.err != nil:
		if !errors.Is(it.err, context.Canceled) && !errors.Is(it.err, durable.ErrClosed) {
			r.log.Error("triggers stopped reading the event stream", keyErr, it.err)
		}
		return false
	case it.loss != nil:
		l.lost(*it.loss)
	case it.caughtUp:
		l.caughtUp = true
		l.expire()
	default:
		rec := it.rec
		l.caughtUp = false
		l.handle(r.eng.Apply(rec))
		l.cur, l.lastTime, l.moved = cursor{Epoch: rec.Epoch, Seq: rec.Seq}, rec.Time, true
		r.stats.seq.Store(rec.Seq)
	}
	return true
}

// horizon is the time up to which windows are judged: now once the reader
// has caught up; before, the time of the last record applied, since the
// records still to read may belong to a stream whose window ends later.
func (l *loopState) horizon() time.Time {
	now := l.r.cfg.Now()
	if l.caughtUp || l.lastTime.IsZero() && !l.reading {
		return now
	}
	if l.lastTime.Before(now) {
		return l.lastTime
	}
	return now
}

func (l *loopState) expire() {
	if _, ok := l.r.eng.NextDeadline(); ok {
		l.handle(l.r.eng.Expire(l.horizon()))
	}
}

// armExpiry sets the expiry timer to the next deadline.
func (l *loopState) armExpiry() {
	d, ok := l.r.eng.NextDeadline()
	if !ok {
		return
	}
	if !l.expAt.IsZero() && !d.Before(l.expAt) {
		return
	}
	wait := max(d.Sub(l.r.cfg.Now()), 0)
	if !l.caughtUp {
		// Behind: look again soon, whatever the deadline says.
		wait = max(wait, 10*time.Millisecond)
	}
	l.expiry.Stop()
	select {
	case <-l.expiry.C:
	default:
	}
	l.expiry.Reset(wait)
	l.expAt = d
}

// handle takes the streams an engine call closed: counted now, run once
// their close is committed.
func (l *loopState) handle(acts []*Action) {
	for _, a := range acts {
		st := l.r.stats.get(a.Trigger)
		if a.Outcome == OutcomeFire {
			st.fires.Add(1)
		} else {
			st.expiries.Add(1)
		}
		l.r.log.Info("trigger stream closed", keyTrigger, a.Trigger, keyOutcome, a.Outcome, keyReason, a.Reason,
			keyKey, a.Key, keyCount, a.Count, "first_seq", a.FirstSeq, "last_seq", a.LastSeq)
	}
	l.dispatch = append(l.dispatch, acts...)
	if len(acts) > 0 {
		l.refreshStats()
	}
}

// armFlush arms the commit: soon when streams changed, later when only
// the cursor moved.
func (l *loopState) armFlush() {
	r := l.r
	if len(r.eng.log) > 0 || len(l.dispatch) > 0 {
		l.dirty = true
	}
	var wait time.Duration
	switch {
	case l.dirty:
		wait = r.cfg.SyncInterval
	case l.moved:
		wait = r.cfg.CursorInterval
	default:
		return
	}
	at := time.Now().Add(wait)
	if !l.flushAt.IsZero() && !l.flushAt.After(at) {
		return
	}
	l.flush.Stop()
	select {
	case <-l.flush.C:
	default:
	}
	l.flush.Reset(wait)
	l.flushAt = at
}

// commit writes the changes and the cursor, then runs the actions whose
// close they hold. When the write fails the actions run anyway: a command
// late because the disk is full is worse than one run twice after a crash.
func (l *loopState) commit() {
	r := l.r
	entries := r.eng.Drain()
	if r.state != nil && (len(entries) > 0 || l.moved || l.dirty) {
		l.syncJournal()
		r.state.add(entries)
		if err := r.state.commit(l.cur, r.eng.snapshot); err != nil {
			r.stats.writeErrors.Add(1)
		}
	}
	l.dirty, l.moved = false, false
	acts := l.dispatch
	l.dispatch = nil
	for _, a := range acts {
		l.start(a)
	}
}

// syncJournal makes the journal durable up to the records applied, before
// the state file's cursor says they were: a power loss must not leave the
// cursor ahead of the journal, which would hide the loss of the records
// after it. When the journal cannot be synced (a full disk) the state is
// committed anyway, so that commands still run; that is logged once.
func (l *loopState) syncJournal() {
	err := l.r.bus.Sync()
	switch {
	case err != nil && !l.syncFailed:
		l.r.log.Error("cannot fsync the journal before the trigger state: after a power loss, records lost from the journal's tail may go unreported to triggers",
			keyErr, err)
		l.syncFailed = true
	case err == nil && l.syncFailed:
		l.r.log.Info("journal fsynced again before the trigger state")
		l.syncFailed = false
	}
}

// start publishes an action's event and hands its command to the
// trigger's executor.
func (l *loopState) start(a *Action) {
	r := l.r
	if !a.Published {
		id := EventFire
		if a.Outcome == OutcomeExpire {
			id = EventExpire
		}
		r.publish(closeEvent{ID: id, Reason: a.Reason, Trigger: a.Trigger, Key: a.Key, Count: a.Count,
			FirstSeq: a.FirstSeq, LastSeq: a.LastSeq, Dropped: a.Dropped, Lost: a.Lost, Command: a.Command != nil})
		r.eng.Published(a.ID)
	}
	if a.Command == nil {
		r.eng.Done(a.ID)
		l.refreshStats()
		return
	}
	x := l.execs[a.Trigger]
	if x == nil {
		x = newExecutor(r, a.Trigger, l.results)
		l.execs[a.Trigger] = x
		l.execWG.Add(1)
		go func() {
			defer l.execWG.Done()
			x.run(r.ctx)
		}()
	}
	x.enqueue(a)
}

// finished records an executor's result.
func (l *loopState) finished(res result) {
	if res.done {
		l.r.eng.Done(res.id)
		l.refreshStats()
	}
}

// lost reports records lost before the engine read them, and marks the
// open streams.
func (l *loopState) lost(loss durable.Loss) {
	r := l.r
	r.eng.MarkLost()
	r.stats.skipped.Add(loss.Count)
	// Where the reader goes on from, should a commit come before the next
	// record: the start of the new epoch, or the head.
	head, epoch := r.bus.Position()
	switch loss.Reason {
	case durable.LossEpoch:
		l.cur = cursor{Epoch: epoch}
	case durable.LossCursorAhead, durable.LossCursorUnreadable:
		l.cur = cursor{Epoch: epoch, Seq: head}
	}
	ev := skippedEvent{ID: EventSkipped, Reason: string(loss.Reason), Detail: truncate(loss.Detail, 200)}
	if loss.CountKnown {
		n := loss.Count
		ev.Skipped = &n
	}
	if loss.Cursor.Seq > 0 || loss.Cursor.Epoch != "" {
		after := loss.Cursor.Seq
		ev.AfterSeq = &after
	}
	r.log.Error("triggers lost records before reading them: the open streams may miss events (AGENT_TRIGGER_LOST=1)",
		keyReason, string(loss.Reason), keyCount, loss.Count, keyDetail, loss.Detail)
	r.publish(ev)
}

// refreshStats copies the open streams and pending commands per trigger
// into the stats.
func (l *loopState) refreshStats() {
	r := l.r
	if l.statsAt == r.eng.changes && l.statsSet {
		return
	}
	l.statsAt, l.statsSet = r.eng.changes, true
	open := make(map[string]int, len(r.eng.triggers))
	for _, t := range r.eng.triggers {
		open[t.name] = len(t.streams)
	}
	pending := make(map[string]int, len(r.eng.pendingBy))
	for name, n := range r.eng.pendingBy {
		pending[name] = n
	}
	configured := make([]string, 0, len(r.eng.order))
	for _, t := range r.eng.order {
		configured = append(configured, t.name)
	}
	r.stats.setGauges(configured, open, pending)
}

// shutdown waits for the executors (their runs are interrupted by the
// runner's context), records what they finished, and commits.
func (l *loopState) shutdown() {
	done := make(chan struct{})
	go func() {
		l.execWG.Wait()
		close(done)
	}()
	for waiting := true; waiting; {
		select {
		case res := <-l.results:
			l.finished(res)
		case <-done:
			waiting = false
		}
	}
	for len(l.results) > 0 { // no sender is left
		l.finished(<-l.results)
	}
	// The actions not started yet stay pending: they run at the next
	// start. Their close is committed now.
	r := l.r
	if r.state != nil {
		l.syncJournal()
		r.state.add(r.eng.Drain())
		if err := r.state.commit(l.cur, r.eng.snapshot); err != nil {
			r.log.Error("trigger state not written at shutdown", keyErr, err)
		}
		r.state.close()
	}
}

// read is the reader goroutine: it opens the durable consumer where the
// state file's cursor says and hands the loop every record, loss and
// catch-up, in order, until ctx ends.
func (r *Runner) read(ctx context.Context, out chan<- item) {
	send := func(it item) bool {
		select {
		case out <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	c, err := durable.Open(durable.Config{
		Name:   "triggers",
		Bus:    r.bus,
		Logger: r.log,
		From:   r.resume,
		OnLoss: func(l durable.Loss) { send(item{loss: &l}) },
	})
	if err != nil {
		send(item{err: err})
		return
	}
	defer c.Close()
	poll, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		rec, err := c.Next(poll)
		if err != nil && errors.Is(err, context.Canceled) && ctx.Err() == nil {
			if !send(item{caughtUp: true}) {
				return
			}
			rec, err = c.Next(ctx)
		}
		if err != nil {
			send(item{err: err})
			return
		}
		if !send(item{rec: rec}) {
			return
		}
	}
}

// closeEvent is the data of trigger_fire and trigger_expire.
type closeEvent struct {
	ID       string `json:"id"`
	Reason   string `json:"reason"`
	Trigger  string `json:"trigger"`
	Key      string `json:"key"`
	Count    int    `json:"count"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Dropped  int    `json:"dropped,omitempty"`
	Lost     bool   `json:"lost,omitempty"`
	// Command: a command runs for it (false: none is configured for this
	// outcome, or the trigger was removed).
	Command bool `json:"command"`
}

// failedEvent is the data of trigger_failed.
type failedEvent struct {
	ID       string `json:"id"`
	Trigger  string `json:"trigger"`
	Key      string `json:"key"`
	Outcome  string `json:"outcome"`
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
}

// skippedEvent is the data of trigger_skipped.
type skippedEvent struct {
	ID       string  `json:"id"`
	Reason   string  `json:"reason"`
	Skipped  *uint64 `json:"skipped,omitempty"`
	AfterSeq *uint64 `json:"after_seq,omitempty"`
	Detail   string  `json:"detail,omitempty"`
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
