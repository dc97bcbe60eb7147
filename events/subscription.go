package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// batchSize bounds how many records Next takes at once from the ring or the
// journal, so the bus lock is held briefly and a reader's memory is bounded.
const batchSize = 256

// Subscription is a position in the stream that pulls records from the bus's
// ring, or from the journal when it is behind the ring. Next is meant for one
// goroutine (concurrent calls are serialized); Close may be called from any.
type Subscription struct {
	b       *Bus
	durable bool
	maxLag  uint64
	start   uint64
	target  uint64 // the head at Subscribe: history before it was asked for and is not lag
	reset   string
	skipped atomic.Uint64

	done      chan struct{} // closed by Close
	closing   atomic.Bool   // set by Close before done is closed
	closeOnce sync.Once

	// mu is held by Next (also while it waits, which Close interrupts
	// through done) and by Close; it guards the fields below.
	mu   sync.Mutex
	pos  uint64 // seq of the last record returned
	buf  []*Record
	bufi int     // next record of buf to return
	cur  *cursor // open journal segment while catching up from disk
	err  error   // sticky end of the subscription
}

var _ Subscriber = (*Subscription)(nil)

// Start returns the seq after which delivery starts.
func (s *Subscription) Start() uint64 { return s.start }

// Reset returns why a resume was impossible, or "" when it was not asked for
// or succeeded. After a reset the subscription starts at the head. For a
// subscription started at a time, it notes records lost (never written to
// the journal) just before its start.
func (s *Subscription) Reset() string { return s.reset }

// Skipped returns how many records a durable subscription lost because
// retention dropped them before it read them.
func (s *Subscription) Skipped() uint64 { return s.skipped.Load() }

func (s *Subscription) addSkipped(n uint64) {
	s.skipped.Add(n)
	s.b.skipped.Add(n)
}

// Next returns the next record in seq order. It blocks until there is one,
// ctx is done (ctx.Err(), the subscription stays usable), or the
// subscription ends: ErrClosed, an error wrapping ErrSlow for a non-durable
// subscription that fell too far behind, or a journal read error. Called
// with a ctx already done, it still returns a record that is available
// without waiting, so callers can gather batches without blocking.
func (s *Subscription) Next(ctx context.Context) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.err != nil {
			return nil, s.err
		}
		// Atomic flags rather than a select on the done channels: this runs
		// once per record per subscriber, and a select locks both channels.
		if s.closing.Load() || s.b.closing.Load() {
			s.err = ErrClosed
			continue
		}
		if s.bufi < len(s.buf) {
			if err := s.checkLag(); err != nil {
				s.end(err)
				continue
			}
			r := s.buf[s.bufi]
			s.buf[s.bufi] = nil
			s.bufi++
			s.pos = r.Seq
			return r, nil
		}
		if err := s.fill(ctx); err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil, err
			}
			s.end(err)
		}
	}
}

// Skip moves the subscription past seq without delivering the records up
// to it: the next record Next returns is seq+1. A seq at or before the
// current position, or after the newest record, is taken as that bound.
// It is for a consumer that got those records another way (the stream
// handler's shared batch frames).
func (s *Subscription) Skip(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq = min(seq, s.b.head.Load())
	if seq <= s.pos {
		return
	}
	for s.bufi < len(s.buf) && s.buf[s.bufi].Seq <= seq {
		s.buf[s.bufi] = nil
		s.bufi++
	}
	s.pos = seq
}

// end makes err the subscription's last answer and releases its file.
func (s *Subscription) end(err error) {
	s.err = err
	s.buf, s.bufi = nil, 0
	s.closeCursor()
}

// checkLag ends a non-durable subscription that is more than maxLag records
// behind the head. The check reads the head without the bus lock, so
// Publish never waits for it.
func (s *Subscription) checkLag() error {
	if s.durable {
		return nil
	}
	head := s.b.head.Load()
	base := max(s.pos, s.target)
	if head <= base || head-base <= s.maxLag {
		return nil
	}
	s.b.slow.Add(1)
	return fmt.Errorf("subscription at seq %d is %d records behind the newest %d (limit %d): %w",
		s.pos, head-s.pos, head, s.maxLag, ErrSlow)
}

// fill loads the next records into buf, or waits for a publish.
func (s *Subscription) fill(ctx context.Context) error {
	b := s.b
	next := s.pos + 1
	s.buf, s.bufi = s.buf[:0], 0
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if next > b.seq {
		if err := ctx.Err(); err != nil {
			b.mu.Unlock()
			return err
		}
		ch := b.notify
		b.waiting = true
		b.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrClosed
		case <-b.done:
			return ErrClosed
		}
	}
	if next >= b.ringFirst {
		n := min(b.seq-next+1, batchSize)
		size := uint64(len(b.ring))
		for i := range n {
			s.buf = append(s.buf, b.ring[(next+i)%size])
		}
		b.mu.Unlock()
		s.closeCursor()
		return nil
	}
	b.mu.Unlock()
	return s.fillFromJournal(next)
}

// lost handles records that can no longer be read (dropped by retention,
// or never written to the journal): a durable subscription skips them to
// the next record there is and counts the loss; any other ends, as it fell
// behind what is kept.
func (s *Subscription) lost(next uint64, why string) error {
	s.b.mu.Lock()
	avail := s.b.nextAvailableLocked(next)
	s.b.mu.Unlock()
	if avail <= next {
		return fmt.Errorf("read record %d: %s", next, why)
	}
	if s.durable {
		s.addSkipped(avail - next)
		s.pos = avail - 1
		s.closeCursor()
		s.b.log.Warn("durable subscription skipped records it can no longer read",
			keySeq, next, keyCount, avail-next, keyReason, why)
		return nil
	}
	s.b.slow.Add(1)
	return fmt.Errorf("subscription at seq %d: records from %d are gone (%s; the next one there is is %d): %w",
		s.pos, next, why, avail, ErrSlow)
}

// fillFromJournal reads the next records from the segment that holds them.
func (s *Subscription) fillFromJournal(next uint64) error {
	j := s.b.j
	if j == nil {
		return s.lost(next, "dropped from the in-memory ring")
	}
	seg, ok := j.locate(next)
	if !ok {
		return s.lost(next, "not in the journal")
	}
	if next < seg.firstRec {
		// Seqs skipped after an unclean stop: no record ever had them.
		s.pos = seg.firstRec - 1
		s.closeCursor()
		return nil
	}
	if s.cur != nil && (s.cur.path != seg.path || s.cur.next != next) {
		s.closeCursor()
	}
	if s.cur == nil {
		c, err := openCursor(seg.path)
		if errors.Is(err, os.ErrNotExist) {
			return s.lost(next, "dropped from the journal")
		}
		if err != nil {
			return fmt.Errorf("read journal for record %d: %w", next, err)
		}
		c.next = seg.firstRec
		s.cur = c
	}
	s.cur.extend(seg.size)
	for len(s.buf) < batchSize {
		line, err := s.cur.lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s.corrupt(seg, next, fmt.Errorf("read %s at offset %d: %w", seg.path, s.cur.lr.off, err))
		}
		if seq, ok := seqPrefix(line); ok && seq < next {
			continue
		}
		r, err := ParseRecord(line)
		if err != nil {
			return s.corrupt(seg, next, fmt.Errorf("decode %s at offset %d: %w", seg.path, s.cur.lr.off, err))
		}
		if r.Seq < next {
			continue
		}
		if r.Seq != next || r.Epoch != s.b.epoch {
			return s.corrupt(seg, next, fmt.Errorf("%s holds seq %d of epoch %q where seq %d was due",
				seg.path, r.Seq, r.Epoch, next))
		}
		s.buf = append(s.buf, r)
		next++
		s.cur.next = next
	}
	if len(s.buf) == 0 {
		return s.corrupt(seg, next, fmt.Errorf("%s ends before record %d", seg.path, next))
	}
	return nil
}

// corrupt reports a segment that cannot be read back. The rest of the
// segment counts as lost for everyone, so that a resume before its end gets
// a reset rather than the same failure again.
func (s *Subscription) corrupt(seg segment, next uint64, err error) error {
	s.b.log.Error("journal segment unreadable", keyFile, seg.path, keyErr, err)
	s.closeCursor()
	s.b.j.markLost(seg.last + 1)
	if lerr := s.lost(next, "journal segment unreadable"); lerr != nil {
		return fmt.Errorf("%w (%w)", lerr, err)
	}
	return nil
}

func (s *Subscription) closeCursor() {
	if s.cur != nil {
		s.cur.close()
		s.cur = nil
	}
}

// Close ends the subscription: a blocked Next returns ErrClosed. Safe to
// call more than once and from any goroutine.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		close(s.done)
		s.b.unsubscribe(s)
	})
	s.mu.Lock()
	s.end(ErrClosed)
	s.mu.Unlock()
}
