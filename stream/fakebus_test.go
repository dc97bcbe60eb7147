package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"agent/events"
)

// fakeBus is a small in-memory bus with the semantics of events.Bus: a
// ring of the newest records, resume with reset, a lag limit. Unlike the
// real one it marks a subscription slow at publish time and counts it, so
// that tests can wait for that.
type fakeBus struct {
	mu     sync.Mutex
	epoch  string
	ring   int // records kept
	maxLag uint64
	recs   []*events.Record // recs[i].Seq == first+i
	first  uint64
	seq    uint64
	notify chan struct{}
	subs   map[*fakeSub]struct{}
	closed bool
}

func newFakeBus(ring, maxLag int) *fakeBus {
	return &fakeBus{epoch: "e1", ring: ring, maxLag: uint64(maxLag), first: 1, notify: make(chan struct{}), subs: map[*fakeSub]struct{}{}}
}

func (b *fakeBus) Publish(nodename, kind string, data json.RawMessage) *events.Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	r := events.NewRecord(b.seq, b.epoch, time.Now(), nodename, kind, data)
	b.recs = append(b.recs, r)
	if len(b.recs) > b.ring {
		n := len(b.recs) - b.ring
		b.recs = append(b.recs[:0:0], b.recs[n:]...)
		b.first += uint64(n)
	}
	close(b.notify)
	b.notify = make(chan struct{})
	return r
}

// lowestPos is the lowest position of the subscriptions with the bus's
// own lag limit (the sessions', not the framer's), and whether there is one.
func (b *fakeBus) lowestPos() (uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	low, ok := uint64(0), false
	for s := range b.subs {
		if s.maxLag == b.maxLag && (!ok || s.pos < low) {
			low, ok = s.pos, true
		}
	}
	return low, ok
}

// dump describes the subscriptions, for a failing test.
func (b *fakeBus) dump() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := fmt.Sprintf("seq %d:", b.seq)
	for s := range b.subs {
		out += fmt.Sprintf(" {pos %d lag %d slow %v}", s.pos, s.maxLag, s.slow)
	}
	return out
}

func (b *fakeBus) MaxLag() int { return int(b.maxLag) }

func (b *fakeBus) Position() (uint64, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq, b.epoch
}

func (b *fakeBus) Subscribe(opts events.SubscribeOptions) (Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &fakeSub{b: b, maxLag: b.maxLag, done: make(chan struct{})}
	if opts.MaxLag > 0 {
		s.maxLag = uint64(opts.MaxLag)
	}
	s.start = b.seq
	switch {
	case opts.Resume && opts.Epoch != b.epoch:
		s.reset = fmt.Sprintf("epoch %s is not the current %s", opts.Epoch, b.epoch)
	case opts.Resume && opts.Since > b.seq:
		return nil, fmt.Errorf("since %d: %w", opts.Since, events.ErrFuture)
	case opts.Resume && opts.Since+1 < b.first:
		s.reset = fmt.Sprintf("records after %d are gone", opts.Since)
	case opts.Resume:
		s.start = opts.Since
	case !opts.SinceTime.IsZero():
		for _, r := range b.recs {
			if !r.Time.Before(opts.SinceTime) {
				s.start = r.Seq - 1
				break
			}
		}
	}
	s.pos = s.start
	b.subs[s] = struct{}{}
	return s, nil
}

func (b *fakeBus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	close(b.notify)
	b.notify = make(chan struct{})
}

type fakeSub struct {
	b      *fakeBus
	maxLag uint64
	start  uint64
	reset  string
	done   chan struct{}
	once   sync.Once

	// guarded by b.mu
	pos    uint64
	slow   bool
	closed bool
}

func (s *fakeSub) Start() uint64 { return s.start }
func (s *fakeSub) Reset() string { return s.reset }

func (s *fakeSub) Next(ctx context.Context) (*events.Record, error) {
	b := s.b
	for {
		b.mu.Lock()
		switch {
		case s.closed || b.closed:
			b.mu.Unlock()
			return nil, events.ErrClosed
		case s.slow:
			b.mu.Unlock()
			return nil, fmt.Errorf("subscription at %d is behind (limit %d): %w", s.pos, s.maxLag, events.ErrSlow)
		case s.pos+1 < b.first || b.seq-s.pos > s.maxLag:
			// As with the real bus, lag is judged when the subscription
			// reads: a session that caught up from shared frames, whose
			// subscription only skipped, was never behind.
			s.slow = true
			b.mu.Unlock()
			continue
		case s.pos < b.seq:
			// As with the real bus, a record that is there is returned
			// even when ctx is done.
			s.pos++
			r := b.recs[s.pos-b.first]
			b.mu.Unlock()
			return r, nil
		case ctx.Err() != nil:
			b.mu.Unlock()
			return nil, ctx.Err()
		}
		ch := b.notify
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		case <-s.done:
		}
	}
}

func (s *fakeSub) Skip(seq uint64) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if seq > s.pos && seq <= s.b.seq {
		s.pos = seq
	}
}

func (s *fakeSub) Close() {
	s.once.Do(func() { close(s.done) })
	s.b.mu.Lock()
	s.closed = true
	delete(s.b.subs, s)
	s.b.mu.Unlock()
}
