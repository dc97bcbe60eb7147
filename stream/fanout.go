package stream

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/coder/websocket"

	"agent/events"
)

// The fan-out writer serves default-mode followers (one record per
// websocket message) without a goroutine wake-up per record and
// subscriber: one goroutine goes round the followers that are caught up
// and, for each, writes every frame that came since its last turn in one
// write(2) that never blocks. Frames are not held back: a record goes out
// at the follower's next turn, and when the writer is busy the records of
// that time simply share the write. A follower whose socket does not take
// the whole write, or that the writer cannot serve for any other reason,
// is handed back to its session's goroutine, which finishes the write
// blocking (bounded by the write timeout), catches up from the chain or
// from its own subscription (which holds the lag limit and ends it with
// 1008), and then gives itself to the writer again.
//
// One goroutine bounds the fan-out's CPU to a core however many
// subscribers there are; latency then grows with the time a round takes,
// and so does what each write carries.

// yieldEvery is how many subscribers the writer serves between yields.
const yieldEvery = 128

// Who writes a shared session's frames.
const (
	ownSession = iota // the session's goroutine, blocking
	ownWriter         // the fan-out writer, without blocking
)

// fanWriter writes the default framer's windows to the followers given to
// it. Its goroutine runs with the framer's.
type fanWriter struct {
	fr *framer

	mu      sync.Mutex
	joining []fanEntry // given since the last round; guarded by mu
	wake    chan struct{}

	// Owned by the run goroutine: the last frames gathered per selector.
	cache map[*selector]*gathered
}

// fanEntry is one giving of a session to the writer; it is void once the
// session takes itself back (reg changes).
type fanEntry struct {
	s   *session
	reg uint64
}

// gathered is the frames of the windows after from up to to, for a
// selector: followers at the same place share them.
type gathered struct {
	from, to *window
	end      *window // the last window taken: to, or before it when that was too much
	b        []byte
	buf      []byte // reused when several windows are joined
	used     bool
}

func newFanWriter(fr *framer) *fanWriter {
	return &fanWriter{fr: fr, wake: make(chan struct{}, 1), cache: make(map[*selector]*gathered)}
}

// give hands s, caught up with the chain at s.w, to the writer.
func (fw *fanWriter) give(s *session) {
	s.mu.Lock()
	s.owner = ownWriter
	s.reg++
	e := fanEntry{s, s.reg}
	s.mu.Unlock()
	fw.mu.Lock()
	fw.joining = append(fw.joining, e)
	fw.mu.Unlock()
	select {
	case fw.wake <- struct{}{}:
	default:
	}
}

// run goes round the followers until ctx ends: a round serves each one up
// to the newest window at its turn; rounds follow one another while new
// windows come, and otherwise it waits for one (or for a new follower).
func (fw *fanWriter) run(ctx context.Context) {
	defer fw.fr.h.wg.Done()
	var set []fanEntry
	for {
		fw.mu.Lock()
		set = append(set, fw.joining...)
		clear(fw.joining)
		fw.joining = fw.joining[:0]
		fw.mu.Unlock()

		first := fw.fr.newest()
		now := time.Now() // lastWrite need not be finer than a round
		keep, more := set[:0], false
		for i, e := range set {
			kept, behind := fw.serve(e, now)
			if kept {
				keep = append(keep, e)
				more = more || behind
			}
			if i%yieldEvery == yieldEvery-1 {
				// A round over thousands of subscribers is long: let the
				// agent's other goroutines in (a one-core machine has one P).
				runtime.Gosched()
			}
		}
		clear(set[len(keep):])
		set = keep
		for sel, g := range fw.cache {
			if !g.used {
				delete(fw.cache, sel)
				continue
			}
			g.used, g.from, g.to, g.end, g.b = false, nil, nil, nil, nil
		}

		// Every follower was served up to a window at or after first, or
		// as far as one write goes (more): when no window came meanwhile and
		// none is left behind, they all stand at last.
		last := fw.fr.newest()
		if last != first || more {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-last.next:
		case <-fw.wake:
		}
	}
}

// serve writes to s what came since its last turn, up to maxBatchBytes.
// kept is false when s is no longer the writer's; behind, when s is still
// short of the newest window.
func (fw *fanWriter) serve(e fanEntry, now time.Time) (kept, behind bool) {
	s := e.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owner != ownWriter || s.reg != e.reg {
		return false, false
	}
	n := fw.fr.newest()
	if n == s.w {
		return true, false
	}
	if n.err != nil || n.to-s.lastSeq > s.h.gatherMax {
		s.handBack()
		return false, false
	}
	b, end, ok := fw.gather(s.w, n, s.sel)
	if !ok {
		s.handBack()
		return false, false
	}
	if len(b) > 0 {
		res := s.fc.tryWrite(b)
		if res != wroteNone {
			s.h.fanWrites.Add(1)
		}
		switch res {
		case wroteAll:
		case wroteSome:
			// The rest is the connection's to finish, before anything else.
			s.advance(end)
			s.lastWrite = now
			s.handBack()
			return false, false
		default:
			s.handBack()
			return false, false
		}
		s.lastWrite = now
	}
	s.advance(end)
	return true, end != n
}

// gather is gather with the writer's cache: the followers of a selector
// mostly stand at the same window.
func (fw *fanWriter) gather(from, to *window, sel *selector) ([]byte, *window, bool) {
	g := fw.cache[sel]
	if g == nil {
		g = &gathered{}
		fw.cache[sel] = g
	}
	g.used = true
	if g.from == from && g.to == to {
		return g.b, g.end, true
	}
	b, end, joined, ok := gather(g.buf[:0], from, to, sel, false, maxBatchBytes)
	if !ok {
		return nil, nil, false
	}
	if joined {
		g.buf = b[:0]
	}
	g.from, g.to, g.end, g.b = from, to, end, b
	return b, end, true
}

// handBack gives s back to its session's goroutine. s.mu is held.
func (s *session) handBack() {
	s.h.handBacks.Add(1)
	s.owner = ownSession
	select {
	case s.back <- struct{}{}:
	default:
	}
}

// take makes the session's goroutine the writer of its frames again.
func (s *session) take() {
	s.mu.Lock()
	s.owner = ownSession
	s.mu.Unlock()
}

// owned says whether the session's goroutine writes its frames.
func (s *session) owned() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner == ownSession
}

// advance moves the session to the end of w, whose records it was given or
// passed over, and its subscription with it, so that the subscription's
// lag is counted from there.
func (s *session) advance(w *window) {
	s.w, s.lastSeq = w, w.to
	if ep := w.epoch(); ep != "" {
		s.epoch = ep
	}
	s.sub.Skip(w.to)
}

// follow serves a subscriber that takes every record of its selection from
// fr's windows, until something ends it. The session's goroutine writes
// while the subscriber is behind the chain; once it is caught up, the
// fan-out writer does (when fr has one and the connection can be written
// without blocking), until it hands the session back.
func (s *session) follow(ctx context.Context, fr *framer) (websocket.StatusCode, string) {
	cfg := &s.h.cfg
	w, fan, err := fr.join()
	if err != nil {
		return s.endSub(err)
	}
	defer fr.leave()
	if w.to == s.lastSeq {
		s.w = w // the windows after it are for this session as they are
	}
	if !s.fc.canTry() {
		fan = nil
	}
	if fan != nil {
		s.back = make(chan struct{}, 1)
		defer s.take() // before leave: the writer lets go of a session that ends
	}
	// The idle timer is not renewed per frame: when it fires, it is set
	// again for when a progress record would be due.
	idle := time.NewTimer(cfg.Progress)
	defer idle.Stop()
	for {
		if s.fc.pending() {
			if err := s.writeRaw(nil); err != nil {
				return s.endWrite(ctx, err)
			}
		}
		n := fr.newest()
		if n.err != nil {
			return s.endSub(n.err)
		}
		if n.to > s.lastSeq {
			if serr, err := s.deliver(n); serr != nil {
				return s.endSub(serr)
			} else if err != nil {
				return s.endWrite(ctx, err)
			}
			continue
		}
		wake := n.next
		if n.to == s.lastSeq {
			s.w = n
			if fan != nil {
				fan.give(s)
				wake = s.back
			}
		}
		// Wait until there is something to do. While the writer has the
		// session, only its hand-back counts; progress records are written
		// the writer's way.
	wait:
		for {
			select {
			case <-ctx.Done():
				return s.endCtx(ctx)
			case <-idle.C:
				if wake == s.back {
					s.progressShared()
				}
				if wake != s.back || s.owned() {
					// Ours to write, blocking (after the rest of a cut
					// write, if any).
					if err := s.progressIfDue(); err != nil {
						return s.endWrite(ctx, err)
					}
				}
				s.mu.Lock()
				due := time.Until(s.lastWrite.Add(cfg.Progress))
				s.mu.Unlock()
				idle.Reset(due)
				if wake == s.back && !s.owned() {
					continue
				}
				break wait
			case <-wake:
				if wake == s.back && !s.owned() {
					continue // an old hand-back
				}
				break wait
			}
		}
	}
}

// deliver writes what the chain holds after the session's position up to
// the end of n, blocking: the windows' frames in one write when they follow
// on from the session's window and are few enough, otherwise the records
// read from its own subscription, which holds the lag limit.
func (s *session) deliver(n *window) (subErr, writeErr error) {
	// The lag is taken from the head of the bus, which the windows trail
	// by up to a batch window: a session that is too far behind then
	// meets its lag limit in its subscription.
	head, _ := s.h.cfg.Bus.Position()
	if s.w != nil && s.w.to == s.lastSeq && head-min(head, s.lastSeq) <= s.h.gatherMax {
		bp := getBatch()
		b, end, joined, ok := gather((*bp)[:0], s.w, n, s.sel, s.req.batch, maxBatchBytes)
		var err error
		if ok {
			// Advanced first, as Next does for a record: the lag of a
			// session stuck in this write counts from its end.
			s.advance(end)
			if len(b) > 0 {
				err = s.writeRaw(b)
			}
		}
		if joined {
			putBatch(bp, b)
		} else {
			putBatch(bp, (*bp)[:0])
		}
		if ok {
			return nil, err
		}
	}
	if serr, err := s.catchUp(n.to); serr != nil || err != nil {
		return serr, err
	}
	s.w = n
	return nil, nil
}

// progressShared writes a progress record, when one is due, for a session
// that the writer may have: without blocking, under s.mu. When the socket
// does not take all of it, the session takes itself back from the writer.
func (s *session) progressShared() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owner != ownWriter || time.Since(s.lastWrite) < s.h.cfg.Progress {
		return
	}
	p := appendFrame(nil, s.record(s.lastSeq, events.KindProgress, nil).JSON())
	switch s.fc.tryWrite(p) {
	case wroteAll:
	case wroteSome:
		s.owner = ownSession
	default:
		s.owner = ownSession
		return
	}
	s.lastWrite = time.Now()
}
