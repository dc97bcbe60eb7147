package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"

	"agent/durable"
	"agent/events"
)

// EventHookSkipped is the id of the event published when a hook lost
// records (see the package documentation).
const EventHookSkipped = "hook_skipped"

// Reasons of hook_skipped events.
const (
	ReasonRetention        = string(durable.LossRetention)
	ReasonEpoch            = string(durable.LossEpoch)
	ReasonCursorAhead      = string(durable.LossCursorAhead)
	ReasonCursorUnreadable = string(durable.LossCursorUnreadable)
)

// worker runs one version of one hook in its own goroutine.
type worker struct {
	r     *Runner
	spec  *spec
	stats *hookStats
	log   *slog.Logger
	path  string // cursor file; "" when cursors are in memory only

	// Set by Update before the goroutine starts.
	prev    *worker         // must end before this one reads the stream
	inherit bool            // start from prev's final cursor
	from    *durable.Cursor // where a new hook starts: the head at Update

	cancel context.CancelFunc // stops reading; see halt
	remove atomic.Bool        // remove the cursor file when ending
	done   chan struct{}      // closed when the goroutine ends

	// Owned by the worker goroutine; cur is read by the next worker of the
	// same name once done is closed.
	c     *durable.Consumer
	cur   durable.Cursor
	curOK bool
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

// startAtHead makes a new hook start after the newest record published
// now, whenever its goroutine opens the stream.
func (w *worker) startAtHead() {
	seq, epoch := w.r.bus.Position()
	w.from = &durable.Cursor{Epoch: epoch, Seq: seq}
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
			c := w.prev.cur
			w.from = &c
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

// finish closes the consumer, which writes the cursor, and leaves the
// cursor file as it must be for the next start: written, or removed with
// the hook.
func (w *worker) finish() {
	if w.c != nil {
		_ = w.c.Close() // a failure is logged by the consumer
		w.cur, w.curOK = w.c.Cursor(), true
		w.c = nil
	}
	if w.remove.Load() && w.path != "" {
		if err := durable.RemoveCursor(w.path); err != nil {
			w.log.Warn("cannot remove the cursor of a removed hook", keyFile, w.path, keyErr, err)
		}
	}
}

// open opens the hook's consumer where it resumes: after the head at
// Update for a new hook, after the previous version's cursor for a changed
// one, else after its cursor file. A loss found on the way is reported.
func (w *worker) open() error {
	c, err := durable.Open(durable.Config{
		Name:       "hook " + w.spec.name,
		CursorPath: w.path,
		Bus:        w.r.bus,
		Logger:     w.log,
		OnLoss:     w.loss,
		From:       w.from,
	})
	if err != nil {
		return err
	}
	w.c = c
	w.setCursor(c.Cursor())
	return nil
}

// loop runs the hook for the records of its consumer until ctx is done.
func (w *worker) loop(ctx context.Context) {
	for ctx.Err() == nil {
		rec, err := w.c.Next(ctx)
		if err != nil {
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, events.ErrClosed):
				w.log.Warn("event bus closed: hook stopped")
			default:
				w.log.Error("hook stopped reading the event stream", keyErr, err)
			}
			return
		}
		id, ok := w.spec.match(rec)
		if !ok {
			w.c.Pass(rec.Seq)
			w.setCursor(w.c.Cursor())
			continue
		}
		if !w.execute(rec, id) {
			return // interrupted by Close: the record is not done
		}
		w.c.Done(rec.Seq)
		w.setCursor(w.c.Cursor())
	}
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
// stats, and a hook_skipped event. It is the consumer's OnLoss.
func (w *worker) loss(l durable.Loss) {
	ev := lossEvent{ID: EventHookSkipped, Reason: string(l.Reason), Hook: w.spec.name}
	if l.CountKnown {
		n := l.Count
		ev.Skipped = &n
	}
	w.stats.addLoss(l.Count)
	msg := "hook skipped records: they will never run"
	var args []any
	switch l.Reason {
	case durable.LossRetention:
		msg = "hook skipped records lost to journal retention: they will never run"
		args = append(args, keyCount, l.Count)
	case durable.LossEpoch:
		msg = "hook skipped records: the event stream was renumbered (journal lost); an unknown number of records will never run"
		after := l.Cursor.Seq
		ev.OldEpoch, ev.AfterSeq = l.Cursor.Epoch, &after
		args = append(args, keyOldEpoch, l.Cursor.Epoch, keySeq, l.Cursor.Seq, keyDetail, l.Detail)
	case durable.LossCursorAhead:
		msg = "hook cursor is ahead of the event journal: it starts at the head"
		args = append(args, keySeq, l.Cursor.Seq, keyErr, l.Detail)
	case durable.LossCursorUnreadable:
		msg = "hook cursor unreadable: it starts at the head, records since its last run are lost"
		args = append(args, keyErr, l.Detail)
	}
	w.log.Error(msg, append([]any{keyReason, string(l.Reason)}, args...)...)
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

func (w *worker) setCursor(c durable.Cursor) {
	w.cur, w.curOK = c, true
	w.stats.setCursor(c)
}

// execute runs the command for rec and logs the outcome. It returns false
// when Close interrupted the run: the record is not done.
func (w *worker) execute(rec *events.Record, id string) bool {
	w.stats.setRunning(true)
	res := w.r.runCommand(w.spec, rec, id)
	w.stats.setRunning(false)
	if res.Canceled {
		w.log.Warn("hook run interrupted by shutdown: it runs again after a restart",
			keySeq, rec.Seq, keyEventID, id)
		return false
	}
	w.stats.addRun(res.Duration, res.Failed(), res.TimedOut, res.Started)
	w.logRun(rec, id, res)
	return true
}
