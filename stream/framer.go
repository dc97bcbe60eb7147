package stream

import (
	"context"
	"errors"
	"sync"
	"time"

	"agent/events"
)

// The framer builds each batch window's frame once for every batch
// subscriber that takes records as they are (no filter, no limit): with a
// thousand such subscribers, reading each record from the bus and copying
// it into a frame per subscriber was most of the agent's work. A shared
// subscriber follows the chain of windows and writes each one's frame
// as is when it starts where the window starts; otherwise (it joined in
// the middle of a window, or fell behind by more than a window) it reads the
// records it lacks from its own subscription, which also enforces its lag
// limit, and then follows the chain again.

// kindMask selects record kinds: maskPatch, maskEvent or both.
type kindMask uint8

const (
	maskPatch kindMask = 1 << iota
	maskEvent
	maskBoth = maskPatch | maskEvent
)

// mask returns the kinds a request asks for.
func (q *request) mask() kindMask {
	var m kindMask
	if q.patch {
		m |= maskPatch
	}
	if q.event {
		m |= maskEvent
	}
	return m
}

// shared says whether the request takes every record of its kinds in batch
// frames, so that it can use the framer's frames.
func (q *request) shared() bool {
	return q.batch && len(q.filters) == 0 && q.limit == 0 && q.mask() != 0
}

// window is the records of one batch window, with their frames built once
// per kind mask on first use. A window is immutable once published, except
// for following, which is set (before next is closed) when the next window
// is published.
type window struct {
	// from and to bound the records: those after seq from, up to and
	// including seq to.
	from, to uint64
	recs     []*events.Record
	frames   [maskBoth]struct {
		once sync.Once
		b    []byte
	}
	next      chan struct{} // closed when following is set
	following *window
	// err, when set, ends the chain: the framer stopped with it.
	err error
}

func newWindow(recs []*events.Record) *window {
	w := &window{recs: recs, next: make(chan struct{})}
	if len(recs) > 0 {
		w.from, w.to = recs[0].Seq-1, recs[len(recs)-1].Seq
	}
	return w
}

// frame returns the window's records of the kinds in m, separated by "\n";
// empty when there are none.
func (w *window) frame(m kindMask) []byte {
	f := &w.frames[m-1]
	f.once.Do(func() {
		q := request{patch: m&maskPatch != 0, event: m&maskEvent != 0}
		n := 0
		for _, r := range w.recs {
			n += len(r.JSON()) + 1
		}
		b := make([]byte, 0, n)
		for _, r := range w.recs {
			if !q.pass(r) {
				continue
			}
			if len(b) > 0 {
				b = append(b, '\n')
			}
			b = append(b, r.JSON()...)
		}
		f.b = b
	})
	return f.b
}

// epoch is the epoch of the window's records.
func (w *window) epoch() string {
	if len(w.recs) == 0 {
		return ""
	}
	return w.recs[len(w.recs)-1].Epoch
}

// framer runs the goroutine that cuts the stream into windows while at
// least one shared subscriber is there. Owned by the Handler.
type framer struct {
	h *Handler

	mu     sync.Mutex
	users  int
	gen    uint64  // generation of the running goroutine; bumped at each start
	latest *window // the newest window of the current generation
	cancel context.CancelFunc
}

// join registers a shared subscriber and returns the newest window: the
// subscriber is to take the records up to its end from its own
// subscription, then follow the chain from there.
func (f *framer) join() (*window, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users == 0 {
		sub, err := f.h.cfg.Bus.Subscribe(events.SubscribeOptions{MaxLag: framerMaxLag})
		if err != nil {
			return nil, err
		}
		f.gen++
		// The first window is empty, at where the framer starts: a
		// subscriber behind that reads up to there at once.
		f.latest = newWindow(nil)
		f.latest.from, f.latest.to = sub.Start(), sub.Start()
		ctx, cancel := context.WithCancel(f.h.ctx)
		f.cancel = cancel
		// The session calling join is counted in h.wg, so this Add cannot
		// race with Close's Wait.
		f.h.wg.Add(1)
		go f.run(ctx, f.gen, sub)
	}
	if err := f.latest.err; err != nil {
		return nil, err
	}
	f.users++
	return f.latest, nil
}

// leave unregisters a shared subscriber; the last one stops the goroutine.
func (f *framer) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users--
	if f.users == 0 {
		f.cancel()
	}
}

// newest returns the newest window.
func (f *framer) newest() *window {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest
}

// framerMaxLag is the framer's own lag limit. It only falls behind when it
// is starved of CPU; it then starts again at the head, and subscribers fill
// the gap from their own subscriptions.
const framerMaxLag = 1 << 20

// run cuts windows until ctx ends: it waits for a record, lets the batch
// window pass, takes what came (up to maxBatchBytes) and publishes it as a
// window. When records are already waiting it does not wait again.
func (f *framer) run(ctx context.Context, gen uint64, sub Subscription) {
	defer f.h.wg.Done()
	defer func() { sub.Close() }()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		rec, err := sub.Next(doneCtx)
		if errors.Is(err, doneCtx.Err()) {
			// Caught up: wait for the next record, then for the window.
			rec, err = sub.Next(ctx)
			if err == nil {
				timer.Reset(f.h.cfg.BatchWindow)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, events.ErrSlow) {
				f.h.log.Warn("batch framer fell behind; starting again at the head", logKeyError, err)
				sub.Close()
				nsub, serr := f.h.cfg.Bus.Subscribe(events.SubscribeOptions{MaxLag: framerMaxLag})
				if serr == nil {
					sub = nsub
					continue
				}
				err = serr
			}
			// The bus is closed or failing: the shared subscribers end with
			// the same error a subscription of their own would have given.
			w := newWindow(nil)
			w.err = err
			f.publish(gen, w)
			return
		}
		recs := []*events.Record{rec}
		size := len(rec.JSON())
		for size < maxBatchBytes {
			r, err := sub.Next(doneCtx)
			if err != nil {
				break // caught up; an ending error comes back at the next Next
			}
			recs = append(recs, r)
			size += len(r.JSON()) + 1
		}
		f.publish(gen, newWindow(recs))
	}
}

// publish makes w the newest window and wakes the subscribers waiting for
// it. A goroutine of an older generation publishes nothing.
func (f *framer) publish(gen uint64, w *window) {
	f.mu.Lock()
	if gen != f.gen {
		f.mu.Unlock()
		return
	}
	prev := f.latest
	f.latest = w
	f.mu.Unlock()
	prev.following = w
	close(prev.next)
}
