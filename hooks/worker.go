package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"sync/atomic"
	"time"

	"agent/events"
)

// retryInterval is how long a hook waits before it subscribes again after
// its subscription ended with a journal read error.
const retryInterval = time.Second

// EventHookSkipped is the id of the event published when a hook lost
// records (see the package documentation).
const EventHookSkipped = "hook_skipped"

// Reasons of hook_skipped events.
const (
	ReasonRetention        = "retention"
	ReasonEpoch            = "epoch"
	ReasonCursorAhead      = "cursor_ahead"
	ReasonCursorUnreadable = "cursor_unreadable"
)

// worker runs one version of one hook in its own goroutine.
type worker struct {
	r     *Runner
	spec  *spec
	stats *hookStats
	log   *slog.Logger
	path  string // cursor file; "" when cursors are in memory only

	// Set by Update before the goroutine starts.
	prev    *worker              // must end before this one reads the stream
	inherit bool                 // start from prev's final cursor
	sub     *events.Subscription // a new hook's subscription, opened at the head by Update

	cancel context.CancelFunc // stops reading; see halt
	remove atomic.Bool        // remove the cursor file when ending
	done   chan struct{}      // closed when the goroutine ends

	// Owned by the worker goroutine; read by the next worker of the same
	// name once done is closed.
	cur         cursor
	curOK       bool
	dirty       int    // records passed since the cursor was last written
	lastSkipped uint64 // sub.Skipped() already reported
	writeErr    bool   // the last cursor write failed (logged once)
}

// newWorker makes a worker and the context its goroutine runs under.
func (r *Runner) newWorker(s *spec, st *hookStats) (*worker, context.Context) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{
		r:      r,
		spec:   s,
		stats:  st,
		log:    r.log.With(keyHook, s.name),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	if r.cfg.Dir != "" {
		w.path = r.cursorPath(s.name)
	}
	return w, ctx
}

// halt makes the worker stop reading records: a running command is let
// finish (or killed at its timeout) unless the runner is closing. With
// remove, the worker deletes its cursor file as it ends.
func (w *worker) halt(remove bool) {
	if remove {
		w.remove.Store(true)
	}
	w.cancel()
}

// subscribeHead opens a new hook's subscription at the head of the stream.
func (w *worker) subscribeHead() error {
	sub, err := w.r.bus.Subscribe(events.SubscribeOptions{Durable: true})
	if err != nil {
		w.cancel()
		return err
	}
	w.sub = sub
	return nil
}

// run is the worker goroutine.
func (w *worker) run(ctx context.Context) {
	defer w.r.wg.Done()
	defer close(w.done)
	defer w.r.workerEnded(w)
	defer w.cancel()
	if w.prev != nil {
		<-w.prev.done
		if w.inherit && w.prev.curOK {
			w.cur, w.curOK = w.prev.cur, true
		}
	}
	defer w.finish()
	if ctx.Err() != nil {
		return
	}
	if err := w.open(); err != nil {
		w.log.Error("hook cannot subscribe to the event stream", keyErr, err)
		return
	}
	w.loop(ctx)
}

// finish releases the subscription and leaves the cursor file as it must
// be for the next start: written, or removed with the hook.
func (w *worker) finish() {
	if w.sub != nil {
		w.sub.Close()
		w.sub = nil
	}
	if w.remove.Load() {
		if w.path != "" {
			if err := removeCursor(w.path); err != nil {
				w.log.Warn("cannot remove the cursor of a removed hook", keyFile, w.path, keyErr, err)
			}
		}
		return
	}
	if w.dirty > 0 {
		w.persist()
	}
}

// open subscribes where the hook resumes: at the head for a new hook, else
// after its cursor. A loss found on the way is reported.
func (w *worker) open() error {
	bus := w.r.bus
	if w.sub != nil {
		w.setCursor(cursor{Epoch: w.r.epoch, Seq: w.sub.Start()})
		w.persist()
		return nil
	}
	if !w.curOK && w.path != "" {
		c, err := readCursor(w.path)
		switch {
		case err == nil:
			w.cur, w.curOK = c, true
		case errors.Is(err, fs.ErrNotExist):
		default:
			w.loss(ReasonCursorUnreadable, nil, slog.String(keyErr, err.Error()))
		}
	}
	if !w.curOK {
		if err := w.subscribeHead(); err != nil {
			return err
		}
		w.setCursor(cursor{Epoch: w.r.epoch, Seq: w.sub.Start()})
		w.persist()
		return nil
	}
	from := w.cur
	sub, err := bus.Subscribe(events.SubscribeOptions{Resume: true, Since: from.Seq, Epoch: from.Epoch, Durable: true})
	if errors.Is(err, events.ErrFuture) {
		w.loss(ReasonCursorAhead, nil, slog.Uint64(keySeq, from.Seq), slog.String(keyErr, err.Error()))
		sub, err = bus.Subscribe(events.SubscribeOptions{Durable: true})
	}
	if err != nil {
		return err
	}
	if why := sub.Reset(); why != "" {
		// The stream was renumbered: run for everything of the new epoch
		// that is still retained.
		sub.Close()
		w.loss(ReasonEpoch, nil, slog.String(keyOldEpoch, from.Epoch), slog.Uint64(keySeq, from.Seq),
			slog.String(keyDetail, why))
		sub, err = bus.Subscribe(events.SubscribeOptions{Resume: true, Since: 0, Epoch: w.r.epoch, Durable: true})
		if err != nil {
			return err
		}
	}
	w.sub = sub
	w.lastSkipped = 0
	w.checkSkipped()
	if c := (cursor{Epoch: w.r.epoch, Seq: sub.Start()}); c != w.cur {
		w.setCursor(c)
		w.persist()
	} else {
		w.stats.setCursor(c)
	}
	return nil
}

// loop runs the hook for the records of w.sub until ctx is done.
func (w *worker) loop(ctx context.Context) {
	poll, cancel := context.WithCancel(context.Background())
	cancel() // Next(poll) returns only what is there without waiting
	for ctx.Err() == nil {
		rec, err := w.sub.Next(poll)
		if err != nil && errors.Is(err, context.Canceled) {
			// Caught up: a good time to write the batched cursor.
			if w.dirty > 0 {
				w.persist()
			}
			rec, err = w.sub.Next(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, events.ErrClosed) {
				w.log.Warn("event bus closed: hook stopped")
				return
			}
			if !w.resubscribe(ctx, err) {
				return
			}
			continue
		}
		w.checkSkipped()
		id, ok := w.spec.match(rec)
		if !ok {
			w.advance(rec.Seq, false)
			continue
		}
		if !w.execute(rec, id) {
			return // interrupted by Close: the record is not done
		}
		w.advance(rec.Seq, true)
	}
}

// resubscribe replaces a subscription that ended with a read error, after
// a pause. It returns false when the hook must stop.
func (w *worker) resubscribe(ctx context.Context, cause error) bool {
	w.log.Error("hook subscription failed; retrying from its cursor", keyErr, cause,
		keySeq, w.cur.Seq, "retry_in", retryInterval)
	w.sub.Close()
	w.sub = nil
	t := time.NewTimer(retryInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	if err := w.open(); err != nil {
		w.log.Error("hook cannot subscribe to the event stream", keyErr, err)
		return false
	}
	return true
}

// checkSkipped reports records the subscription skipped since the last
// check.
func (w *worker) checkSkipped() {
	n := w.sub.Skipped()
	if n <= w.lastSkipped {
		return
	}
	lost := n - w.lastSkipped
	w.lastSkipped = n
	w.loss(ReasonRetention, &lost)
}

// lossEvent is the data of a hook_skipped event record.
type lossEvent struct {
	ID       string  `json:"id"`
	Reason   string  `json:"reason"`
	Hook     string  `json:"hook"`
	Skipped  *uint64 `json:"skipped,omitempty"`
	OldEpoch string  `json:"old_epoch,omitempty"`
	AfterSeq *uint64 `json:"after_seq,omitempty"`
}

// loss reports records the hook will never run for: an Error log, the
// stats, and a hook_skipped event. skipped is nil when the count is not
// known.
func (w *worker) loss(reason string, skipped *uint64, attrs ...slog.Attr) {
	var n uint64
	if skipped != nil {
		n = *skipped
	}
	w.stats.addLoss(n)
	ev := lossEvent{ID: EventHookSkipped, Reason: reason, Hook: w.spec.name, Skipped: skipped}
	msg := "hook skipped records: they will never run"
	switch reason {
	case ReasonRetention:
		msg = "hook skipped records lost to journal retention: they will never run"
		attrs = append(attrs, slog.Uint64(keyCount, n))
	case ReasonEpoch:
		msg = "hook skipped records: the event stream was renumbered (journal lost); an unknown number of records will never run"
		after := w.cur.Seq
		ev.OldEpoch, ev.AfterSeq = w.cur.Epoch, &after
	case ReasonCursorAhead:
		msg = "hook cursor is ahead of the event journal: it starts at the head"
	case ReasonCursorUnreadable:
		msg = "hook cursor unreadable: it starts at the head, records since its last run are lost"
	}
	args := []any{keyReason, reason}
	for _, a := range attrs {
		args = append(args, a)
	}
	w.log.Error(msg, args...)
	data, err := json.Marshal(ev)
	if err != nil {
		return // cannot happen: plain strings and numbers
	}
	if pub := w.r.cfg.Publish; pub != nil {
		pub(w.r.cfg.Nodename, events.KindEvent, data)
		return
	}
	w.r.bus.Publish(w.r.cfg.Nodename, events.KindEvent, data)
}

// advance records that the hook is done with seq. A run's cursor is
// written at once; others are batched.
func (w *worker) advance(seq uint64, ran bool) {
	w.cur.Seq = seq
	w.curOK = true
	w.stats.setCursor(w.cur)
	w.dirty++
	if ran || w.dirty >= cursorBatch {
		w.persist()
	}
}

func (w *worker) setCursor(c cursor) {
	w.cur, w.curOK = c, true
	w.stats.setCursor(c)
}

// persist writes the cursor file. A failure is logged once until a write
// works again: the hook goes on, and a restart would run some records
// again (never skip them).
func (w *worker) persist() {
	w.dirty = 0
	if w.path == "" || !w.curOK {
		return
	}
	err := writeCursor(w.path, w.cur)
	switch {
	case err != nil && !w.writeErr:
		w.writeErr = true
		w.log.Error("cannot write hook cursor: after a restart, records already done may run again",
			keyFile, w.path, keyErr, err)
	case err == nil && w.writeErr:
		w.writeErr = false
		w.log.Info("hook cursor written again", keyFile, w.path)
	}
}

// execute runs the command for rec and logs the outcome. It returns false
// when Close interrupted the run: the record is not done.
func (w *worker) execute(rec *events.Record, id string) bool {
	w.stats.setRunning(true)
	res := w.r.runCommand(w.spec, rec, id)
	w.stats.setRunning(false)
	if res.interrupted {
		w.log.Warn("hook run interrupted by shutdown: it runs again after a restart",
			keySeq, rec.Seq, keyEventID, id)
		return false
	}
	w.stats.addRun(res.duration, res.failed(), res.timedOut, res.started)
	w.logRun(rec, id, res)
	return true
}
