package events

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Bus numbers the records of an agent's stream, keeps the newest in a ring
// and all retained ones in the journal, and serves subscriptions. See the
// package documentation for its guarantees.
type Bus struct {
	cfg Config
	log *slog.Logger
	j   *journal // nil: memory only

	// mu guards the fields below. Lock order: Subscription.mu, Bus.mu,
	// journal.mu.
	mu        sync.Mutex
	seq       uint64 // newest seq; 0 before the first record of an epoch
	epoch     string
	ring      []*Record // the record of seq s is at ring[s%len(ring)]
	ringFirst uint64    // oldest seq in the ring; ringFirst > seq when it is empty
	lastTime  time.Time // record times never go back, so SinceTime can scan
	notify    chan struct{}
	waiting   bool // someone holds notify: Publish must close it
	closed    bool
	subs      map[*Subscription]struct{}
	published map[string]uint64

	head    atomic.Uint64 // = seq, for the lag check of Next without mu
	done    chan struct{} // closed by Close
	closing atomic.Bool   // set by Close before done is closed
	slow    atomic.Uint64
	skipped atomic.Uint64
	stop    chan struct{} // stops the fsync goroutine
	written chan struct{} // 1-buffered: a journal write since syncLoop last looked
	wg      sync.WaitGroup
}

// Stats are the bus's counters, for metrics.
type Stats struct {
	// Published counts the records published since Open, by kind.
	Published map[string]uint64
	// JournalBytes and JournalSegments describe the retained journal.
	JournalBytes    int64
	JournalSegments int
	// JournalWriteErrors counts failed journal writes, rotations and fsyncs.
	JournalWriteErrors uint64
	// Subscribers is the number of open subscriptions.
	Subscribers int
	// SlowDisconnects counts non-durable subscriptions ended with ErrSlow.
	SlowDisconnects uint64
	// Skipped counts records that durable subscriptions lost to retention.
	Skipped uint64
}

// Open starts a bus, loading the journal in cfg.Dir when there is one: the
// numbering and the epoch continue where the journal ends.
func Open(cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	b := &Bus{
		cfg:       cfg,
		log:       cfg.Logger.With(keyComponent, "events"),
		ring:      make([]*Record, cfg.RingSize),
		notify:    make(chan struct{}),
		subs:      make(map[*Subscription]struct{}),
		published: make(map[string]uint64),
		done:      make(chan struct{}),
		stop:      make(chan struct{}),
		written:   make(chan struct{}, 1),
	}
	if cfg.Dir == "" {
		b.epoch = newEpoch()
	} else {
		j, head, last, err := openJournal(cfg, b.log)
		if err != nil {
			return nil, fmt.Errorf("open event journal in %s: %w", cfg.Dir, err)
		}
		b.j, b.seq, b.epoch, b.lastTime = j, head, j.epoch, last
		b.wg.Add(1)
		go b.syncLoop()
	}
	b.ringFirst = b.seq + 1
	b.head.Store(b.seq)
	b.log.Info("event bus open", keyEpoch, b.epoch, keySeq, b.seq, keyDir, cfg.Dir)
	return b, nil
}

// syncLoop fsyncs the journal within syncInterval of a write. It sleeps
// until a write marks the journal dirty rather than ticking, so an idle
// agent does not wake for it. Owned by the Bus: Close stops it and waits.
func (b *Bus) syncLoop() {
	defer b.wg.Done()
	t := time.NewTimer(syncInterval)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-b.written:
		}
		t.Reset(syncInterval)
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.j.syncIfDirty()
		}
	}
}

// Publish numbers a record, delivers it to the subscriptions and appends it
// to the journal. It never blocks on subscribers and never fails: a journal
// write error is logged and counted, and the record is still delivered.
// After Close the record is returned unnumbered (Seq 0) and goes nowhere.
func (b *Bus) Publish(nodename, kind string, data json.RawMessage) *Record {
	now := b.cfg.Now().UTC().Truncate(time.Microsecond) // the precision of TimeFormat
	b.mu.Lock()
	if b.closed {
		epoch := b.epoch
		b.mu.Unlock()
		return NewRecord(0, epoch, now, nodename, kind, data)
	}
	if now.Before(b.lastTime) {
		now = b.lastTime
	}
	b.lastTime = now
	b.seq++
	r := NewRecord(b.seq, b.epoch, now, nodename, kind, data)
	size := uint64(len(b.ring))
	b.ring[r.Seq%size] = r
	if r.Seq-b.ringFirst >= size {
		b.ringFirst = r.Seq - size + 1
	}
	b.head.Store(r.Seq)
	b.published[kind]++
	if b.waiting {
		close(b.notify)
		b.notify = make(chan struct{})
		b.waiting = false
	}
	j := b.j
	if j != nil {
		// Taken before mu is released, so the journal gets records in seq
		// order, and a reader that finds a record gone from the ring finds it
		// written once it gets journal.mu.
		j.mu.Lock()
	}
	b.mu.Unlock()
	if j != nil {
		j.appendLocked(r)
		j.mu.Unlock()
		select {
		case b.written <- struct{}{}:
		default: // already signalled
		}
	}
	return r
}

// Position returns the newest seq (0 when none yet) and the epoch.
func (b *Bus) Position() (seq uint64, epoch string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq, b.epoch
}

// MaxLag returns the lag limit of a non-durable subscription that sets
// none, in records.
func (b *Bus) MaxLag() int { return b.cfg.MaxLag }

// Oldest returns the oldest retained seq: every record from it to the newest
// can be delivered. It is Position()+1 when nothing is retained.
func (b *Bus) Oldest() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.oldestLocked()
}

func (b *Bus) oldestLocked() uint64 {
	cur := b.ringFirst
	if b.j != nil {
		cur = b.j.extendBack(cur)
	}
	return min(cur, b.seq+1)
}

// Subscribe starts a subscription. Without Resume or SinceTime it starts at
// the head, atomically: Start() is the Position() a caller holding its own
// lock around Publish and Subscribe saw. With Resume it delivers every record
// after Since when Epoch is current and Since+1 is retained; otherwise it
// starts at the head and Reset() says why (a durable subscription instead
// skips to the oldest retained record and counts the loss in Skipped). It
// fails with ErrFuture when Since is after the newest record of the epoch.
func (b *Bus) Subscribe(opts SubscribeOptions) (*Subscription, error) {
	from := uint64(0) // first seq to deliver when starting from a time; 0: not
	if !opts.Resume && !opts.SinceTime.IsZero() {
		// Searched before taking the lock for good: it may read the journal,
		// and a time-based start needs no atomicity with a snapshot.
		var err error
		if from, err = b.seqAtTime(opts.SinceTime); err != nil {
			return nil, err
		}
	}
	maxLag := opts.MaxLag
	if maxLag <= 0 {
		maxLag = b.cfg.MaxLag
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("subscribe to events: %w", ErrClosed)
	}
	s := &Subscription{
		b:       b,
		durable: opts.Durable,
		maxLag:  uint64(maxLag),
		target:  b.seq,
		done:    make(chan struct{}),
	}
	start := b.seq
	switch {
	case opts.Resume && opts.Epoch != b.epoch:
		s.reset = fmt.Sprintf("epoch %q is not the current epoch %q", opts.Epoch, b.epoch)
	case opts.Resume && opts.Since > b.seq:
		return nil, fmt.Errorf("resume after seq %d of epoch %s, newest is %d: %w", opts.Since, b.epoch, b.seq, ErrFuture)
	case opts.Resume:
		oldest := b.oldestLocked()
		switch {
		case opts.Since+1 >= oldest:
			start = opts.Since
		case opts.Durable:
			start = oldest - 1
			s.addSkipped(oldest - 1 - opts.Since)
		default:
			s.reset = fmt.Sprintf("records after seq %d are no longer retained (oldest is %d)", opts.Since, oldest)
		}
	case from > 0:
		start = min(from-1, b.seq)
	}
	s.start, s.pos = start, start
	b.subs[s] = struct{}{}
	return s, nil
}

// seqAtTime returns the first retained seq whose record is at or after t,
// or the next seq to come when there is none.
func (b *Bus) seqAtTime(t time.Time) (uint64, error) {
	b.mu.Lock()
	head, oldest, ringFirst := b.seq, b.oldestLocked(), b.ringFirst
	if ringFirst <= head && b.ring[ringFirst%uint64(len(b.ring))].Time.Before(t) {
		// In the ring: times never go back, so search it.
		n := int(head - ringFirst + 1)
		i := sort.Search(n, func(i int) bool {
			return !b.ring[(ringFirst+uint64(i))%uint64(len(b.ring))].Time.Before(t)
		})
		b.mu.Unlock()
		return ringFirst + uint64(i), nil
	}
	b.mu.Unlock()
	if b.j != nil {
		seq, found, err := b.j.findTime(t, oldest)
		if err != nil {
			return 0, fmt.Errorf("subscribe since %s: %w", t.Format(TimeFormat), err)
		}
		if found {
			return max(seq, oldest), nil
		}
	}
	if ringFirst <= head {
		return ringFirst, nil
	}
	return head + 1, nil
}

// Stats returns the bus's counters.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	st := Stats{
		Published:       maps.Clone(b.published),
		Subscribers:     len(b.subs),
		SlowDisconnects: b.slow.Load(),
		Skipped:         b.skipped.Load(),
	}
	b.mu.Unlock()
	if b.j != nil {
		js := b.j.stats()
		st.JournalBytes, st.JournalSegments, st.JournalWriteErrors = js.bytes, js.segments, js.writeErrs
	}
	return st
}

// Close ends every subscription (their Next returns ErrClosed), stops the
// fsync goroutine, and flushes and fsyncs the journal.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.closing.Store(true)
	close(b.done)
	subs := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	// Outside mu: Subscription.Close takes Subscription.mu, which comes first.
	for _, s := range subs {
		s.Close()
	}
	close(b.stop)
	b.wg.Wait()
	if b.j == nil {
		return nil
	}
	err := b.j.close()
	if err != nil {
		b.log.Error("event journal not closed cleanly", keyErr, err)
	}
	return err
}

func (b *Bus) unsubscribe(s *Subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}
