package stream

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"agent/events"
)

// A framer reads the bus once for every subscriber that takes each record
// of its selection as it comes (no limit=) and cuts the stream into a chain
// of windows, each encoding its records' websocket frames once per selector
// and mode: with a thousand subscribers, reading each record from the bus
// and framing it per subscriber was most of the agent's work.
//
// The handler has two framers. The batch one gathers a window for the
// batch window after a first record (batch=1 frames). The default one
// publishes what it read at once, with no delay, and its windows hold one
// websocket message per record; the fan-out writer (fanout.go) writes them.
//
// A subscriber follows the chain, writing every window that starts where
// it stands; several windows that came while it wrote go out in one write.
// One that starts elsewhere (it joined after a snapshot or a resume, or the
// framer started again at the head), or that fell more than the gather
// bound behind, reads what it lacks from its own subscription, which holds
// its lag limit, then follows the chain again.

// shared says whether the request follows a framer's windows: it takes
// every record of its selection, up to no limit.
func (q *request) shared() bool {
	return q.limit == 0 && (q.patch || q.event)
}

// window is a run of records, with their frames built once per selector and
// mode on first use. Its records and bounds are immutable once published;
// following is set before the window after it is published.
type window struct {
	// from and to bound the records: those after seq from, up to and
	// including seq to.
	from, to uint64
	recs     []*events.Record

	mu     sync.Mutex // guards frames
	frames []windowFrame

	next      chan struct{} // closed when following is set
	following *window
	// err, when set, ends the chain: the framer stopped with it.
	err error
}

// windowFrame is the encoding of a window's records for one selector.
type windowFrame struct {
	sel   *selector
	batch bool
	b     []byte
}

func newWindow(recs []*events.Record) *window {
	w := &window{recs: recs, next: make(chan struct{})}
	if len(recs) > 0 {
		w.from, w.to = recs[0].Seq-1, recs[len(recs)-1].Seq
	}
	return w
}

// frame returns the websocket frames of the window's records that sel
// selects: with batch, one text message of the records separated by "\n";
// otherwise one text message per record. Empty when there are none.
func (w *window) frame(sel *selector, batch bool) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.frames {
		if f.sel == sel && f.batch == batch {
			return f.b
		}
	}
	var b []byte
	if batch {
		b = encodeBatch(w.recs, sel)
	} else {
		b = encodeEach(w.recs, sel)
	}
	w.frames = append(w.frames, windowFrame{sel, batch, b})
	return b
}

// encodeEach returns one websocket text message per record sel selects.
func encodeEach(recs []*events.Record, sel *selector) []byte {
	n := 0
	for _, r := range recs {
		n += len(r.JSON()) + maxFrameHeader
	}
	var b []byte
	for _, r := range recs {
		if !sel.pass(r) {
			continue
		}
		if b == nil {
			b = make([]byte, 0, n)
		}
		b = appendFrame(b, r.JSON())
	}
	return b
}

// encodeBatch returns one websocket text message holding the records sel
// selects, separated by "\n".
func encodeBatch(recs []*events.Record, sel *selector) []byte {
	n, count := 0, 0
	for _, r := range recs {
		if sel.pass(r) {
			if count > 0 {
				n++
			}
			n += len(r.JSON())
			count++
		}
	}
	if count == 0 {
		return nil
	}
	b := appendFrameHeader(make([]byte, 0, n+maxFrameHeader), n)
	first := true
	for _, r := range recs {
		if !sel.pass(r) {
			continue
		}
		if !first {
			b = append(b, '\n')
		}
		first = false
		b = append(b, r.JSON()...)
	}
	return b
}

// maxFrameHeader is the largest header of an unmasked websocket frame.
const maxFrameHeader = 10

// appendFrameHeader appends the header of a final, unmasked websocket
// text frame (RFC 6455 section 5.2) of n bytes, as a server sends it.
func appendFrameHeader(b []byte, n int) []byte {
	const finText = 0x80 | 0x1
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, finText, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, finText, 127), uint64(n))
	}
}

// appendFrame appends p as one websocket text message.
func appendFrame(b, p []byte) []byte {
	return append(appendFrameHeader(b, len(p)), p...)
}

// gather returns the frames, for sel, of the windows after from up to and
// including to, or up to the last one that keeps them within maxBytes
// (it takes one at least); end is the last window taken. When it takes one
// window, that window's frame is returned as is; otherwise the frames are
// appended to dst (joined is then true). ok is false when the windows do
// not follow on from from without a hole (the framer started again at the
// head): the caller must read the records another way.
func gather(dst []byte, from, to *window, sel *selector, batch bool, maxBytes int) (b []byte, end *window, joined, ok bool) {
	if from == to {
		return nil, to, false, true
	}
	nx := from.following
	if nx == nil || nx.from != from.to || nx.err != nil {
		return nil, nil, false, false
	}
	first := nx.frame(sel, batch)
	if nx == to {
		return first, to, false, true
	}
	end, b = nx, append(dst, first...)
	for end != to {
		nx := end.following
		if nx == nil || nx.from != end.to || nx.err != nil {
			return nil, nil, false, false
		}
		f := nx.frame(sel, batch)
		if len(b)+len(f) > maxBytes {
			break
		}
		b, end = append(b, f...), nx
	}
	return b, end, true, true
}

// epoch is the epoch of the window's records.
func (w *window) epoch() string {
	if len(w.recs) == 0 {
		return ""
	}
	return w.recs[len(w.recs)-1].Epoch
}

// framer runs the goroutine that cuts the stream into windows while at
// least one subscriber follows them. Owned by the Handler.
type framer struct {
	h *Handler
	// window is how long a window gathers records after its first; 0
	// publishes what was read at once.
	window time.Duration
	// fanOut: a fan-out writer serves the followers that can be written
	// without blocking; its goroutine runs with the framer's.
	fanOut bool

	mu     sync.Mutex
	users  int
	gen    uint64 // generation of the running goroutine; bumped at each start
	cancel context.CancelFunc
	fan    *fanWriter // of the current generation, with fanOut
	// latest is the newest window of the current generation. It is stored
	// under mu after the previous window's following is set, so a reader
	// that loads it finds the chain up to it complete.
	latest atomic.Pointer[window]
}

// join registers a follower and returns the newest window (the follower is
// to take the records up to its end from its own subscription, then follow
// the chain from there) and the fan-out writer, when the framer has one.
func (f *framer) join() (*window, *fanWriter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users == 0 {
		sub, err := f.h.cfg.Bus.Subscribe(events.SubscribeOptions{MaxLag: framerMaxLag})
		if err != nil {
			return nil, nil, err
		}
		f.gen++
		// The first window is empty, at where the framer starts: a
		// subscriber behind that reads up to there at once.
		w := newWindow(nil)
		w.from, w.to = sub.Start(), sub.Start()
		f.latest.Store(w)
		ctx, cancel := context.WithCancel(f.h.ctx)
		f.cancel = cancel
		// The session calling join is counted in h.wg, so these Adds cannot
		// race with Close's Wait.
		f.h.wg.Add(1)
		go f.run(ctx, f.gen, sub)
		if f.fanOut {
			// A writer per generation: the last one may still be finishing
			// its round.
			f.fan = newFanWriter(f)
			f.h.wg.Add(1)
			go f.fan.run(ctx)
		}
	}
	latest := f.latest.Load()
	if err := latest.err; err != nil {
		return nil, nil, err
	}
	f.users++
	return latest, f.fan, nil
}

// leave unregisters a follower; the last one stops the goroutines.
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
	return f.latest.Load()
}

// framerMaxLag is the framer's own lag limit. It only falls behind when it
// is starved of CPU; it then starts again at the head, and subscribers fill
// the gap from their own subscriptions.
const framerMaxLag = 1 << 20

// run cuts windows until ctx ends: it waits for a record, lets the window
// pass, takes what came (up to maxBatchBytes) and publishes it. When
// records are already waiting it does not wait again.
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
			if err == nil && f.window > 0 {
				timer.Reset(f.window)
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
				f.h.log.Warn("stream framer fell behind; starting again at the head", logKeyError, err)
				sub.Close()
				nsub, serr := f.h.cfg.Bus.Subscribe(events.SubscribeOptions{MaxLag: framerMaxLag})
				if serr == nil {
					sub = nsub
					continue
				}
				err = serr
			}
			// The bus is closed or failing: the followers end with the
			// same error a subscription of their own would have given.
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

// publish makes w the newest window and wakes the followers waiting for
// it. A goroutine of an older generation publishes nothing.
func (f *framer) publish(gen uint64, w *window) {
	f.mu.Lock()
	if gen != f.gen {
		f.mu.Unlock()
		return
	}
	prev := f.latest.Load()
	if w.err != nil {
		w.from, w.to = prev.to, prev.to
	}
	prev.following = w
	f.latest.Store(w)
	f.mu.Unlock()
	close(prev.next)
}
