package events

import (
	"encoding/json"
	"errors"
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
	cfg  Config
	log  *slog.Logger
	j    *journal // nil: memory only
	mark *seqMark // nil: memory only, or the journal is disabled

	// mu guards the fields below. Lock order: Subscription.mu, Bus.mu,
	// journal.mu.
	mu        sync.Mutex
	seq       uint64 // newest seq; 0 before the first record of an epoch
	epoch     string
	ring      []*Record // the record of seq s is at ring[s%len(ring)]
	ringFirst uint64    // oldest seq in the ring; ringFirst > seq when it is empty
	ringBytes int64     // memory of the records from ringFirst to seq
	markErr   bool      // a seq reservation failed (logged once until one works)
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
	reserve chan struct{} // 1-buffered: half the reserved seqs are used
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
	// JournalWaiting is the number of records published but not yet
	// written to the journal (its writes fail): they are in memory only.
	JournalWaiting int
	// JournalLost counts records that left the ring before the journal
	// could write them: they are missing from the journal for good.
	JournalLost uint64
	// ReservedSeq is the highest seq the seq mark on disk allows; 0 for a
	// memory-only bus.
	ReservedSeq uint64
	// RingRecords and RingBytes describe the in-memory ring.
	RingRecords int
	RingBytes   int64
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
		reserve:   make(chan struct{}, 1),
	}
	if cfg.Dir == "" {
		b.epoch = newEpoch()
	} else {
		j, st, err := openJournal(cfg, b.log)
		if err != nil {
			return nil, fmt.Errorf("open event journal in %s: %w", cfg.Dir, err)
		}
		b.j, b.mark, b.seq, b.epoch, b.lastTime = j, j.mark, st.head, st.epoch, st.lastTime
		b.wg.Add(1)
		go b.syncLoop()
	}
	b.ringFirst = b.seq + 1
	b.head.Store(b.seq)
	b.log.Info("event bus open", keyEpoch, b.epoch, keySeq, b.seq, keyDir, cfg.Dir)
	return b, nil
}

// syncLoop does the journal's slow work outside the locks Publish is
// called under: it fsyncs within syncInterval of a write (segments,
// rotated ones, the directory, the seq mark), reserves the next block of
// seqs when half the current one is used, and retries writes that failed.
// It sleeps until there is work rather than ticking, so an idle agent does
// not wake for it. Owned by the Bus: Close stops it and waits.
func (b *Bus) syncLoop() {
	defer b.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	armed := false
	arm := func(d time.Duration) {
		if !armed {
			t.Reset(d)
			armed = true
		}
	}
	for {
		select {
		case <-b.stop:
			return
		case <-b.reserve:
			b.reserveNext()
			continue
		case <-b.written:
			arm(syncInterval)
			continue
		case <-t.C:
			armed = false
		}
		b.retryJournal()
		_ = b.j.sync() // logged and counted
		if b.j.waiting() {
			arm(retryInterval)
		}
	}
}

// retryJournal writes the records that wait for the disk, a batch at a
// time, while the disk takes them.
func (b *Bus) retryJournal() {
	for {
		b.mu.Lock()
		ringFirst := b.ringFirst
		b.j.mu.Lock()
		b.mu.Unlock()
		before := len(b.j.backlog)
		b.j.retryLocked(ringFirst, false)
		after := len(b.j.backlog)
		b.j.mu.Unlock()
		if after == 0 || after >= before {
			return
		}
	}
}

// reserveNext saves the next block of seqs in the mark, ahead of need.
func (b *Bus) reserveNext() {
	if err := b.mark.reserve(b.head.Load() + b.cfg.reserveBlock); err != nil {
		b.log.Error("cannot save the seq mark ahead of need; retrying at the next record", keyErr, err)
	}
}

// checkReserve makes sure seq is covered by the mark on disk before it is
// given. b.mu is held. The fsync goroutine reserves ahead; this reserves
// in line only when it fell behind by half a block.
func (b *Bus) checkReserve(seq uint64) {
	res := b.mark.reserved.Load()
	if seq <= res {
		if seq+b.cfg.reserveBlock/2 > res {
			select {
			case b.reserve <- struct{}{}:
			default:
			}
		}
		return
	}
	if err := b.mark.reserve(seq - 1 + b.cfg.reserveBlock); err != nil {
		if !b.markErr {
			b.markErr = true
			b.log.Error("cannot save the seq mark: after a crash, the seqs given from now on could be given again",
				keySeq, seq, keyErr, err)
		}
		return
	}
	if b.markErr {
		b.markErr = false
		b.log.Info("seq mark saved again", keySeq, seq)
	}
}

// addToRing puts r in the ring, dropping the oldest records past the
// count or the byte bound. b.mu is held.
func (b *Bus) addToRing(r *Record) {
	size := uint64(len(b.ring))
	if old := b.ring[r.Seq%size]; old != nil && old.Seq >= b.ringFirst && old.Seq <= b.seq {
		b.ringBytes -= old.memSize()
		b.ringFirst = old.Seq + 1
	}
	b.ring[r.Seq%size] = r
	b.ringBytes += r.memSize()
	for b.ringBytes > b.cfg.RingBytes && b.ringFirst < r.Seq {
		i := b.ringFirst % size
		b.ringBytes -= b.ring[i].memSize()
		b.ring[i] = nil
		b.ringFirst++
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
	if b.mark != nil {
		b.checkReserve(b.seq + 1)
	}
	r := NewRecord(b.seq+1, b.epoch, now, nodename, kind, data)
	b.addToRing(r)
	b.seq++
	b.head.Store(r.Seq)
	b.published[kind]++
	if b.waiting {
		close(b.notify)
		b.notify = make(chan struct{})
		b.waiting = false
	}
	j := b.j
	ringFirst := b.ringFirst
	if j != nil {
		// Taken before mu is released, so the journal gets records in seq
		// order, and a reader that finds a record gone from the ring finds it
		// written (or known lost) once it gets journal.mu.
		j.mu.Lock()
	}
	b.mu.Unlock()
	if j != nil {
		j.appendLocked(r, ringFirst)
		j.mu.Unlock()
		select {
		case b.written <- struct{}{}:
		default: // already signalled
		}
	}
	return r
}

// Sync makes every record written to the journal so far durable now,
// rather than within the fsync interval. A durable consumer calls it before
// it saves a cursor, so that after a power loss its cursor is never ahead
// of the journal. It fails when records wait for the disk (write errors),
// or when an fsync fails; a memory-only bus has nothing to sync.
func (b *Bus) Sync() error {
	if b.j == nil {
		return nil
	}
	err := b.j.sync()
	if st := b.j.stats(); st.waiting > 0 {
		err = errors.Join(err, fmt.Errorf("%d records wait for the journal (write errors)", st.waiting))
	}
	return err
}

// Position returns the newest seq (0 when none yet) and the epoch. After an
// unclean stop, until the first record, the newest seq is the last one the
// restart skipped: a snapshot there is exact, and the next record follows.
func (b *Bus) Position() (seq uint64, epoch string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq, b.epoch
}

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
// after Since when Epoch is current and every record after Since is
// retained (seqs declared empty are passed over); otherwise it starts at
// the head and Reset() says why. A Since inside a range of seqs skipped
// after an unclean stop also resets: the client may have seen records that
// were lost there. A durable subscription never resets within the epoch:
// it skips what is lost, counted in Skipped, and passes over empty seqs.
// With SinceTime, Reset() notes a hole (records lost to write errors)
// just before the start. Subscribe fails with ErrFuture when Since is
// after the newest record of the epoch.
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
	case opts.Resume && opts.Durable:
		start = opts.Since
		if next := b.nextAvailableLocked(opts.Since + 1); next > opts.Since+1 {
			start = next - 1
			s.addSkipped(next - 1 - opts.Since)
		}
	case opts.Resume:
		if lo, hi, ok := b.declaredEmpty(opts.Since); ok {
			s.reset = fmt.Sprintf("seq %d is among seqs %d to %d, skipped after an unclean stop: records seen there may have been lost", opts.Since, lo, hi)
			break
		}
		oldest := b.oldestLocked()
		if opts.Since+1 >= oldest {
			start = opts.Since
			break
		}
		s.reset = b.lostReason(opts.Since, oldest)
	case from > 0:
		start = min(from-1, b.seq)
		// Asked for history from before the oldest record there is: say so
		// when records were lost there (not merely aged out).
		if oldest := b.oldestLocked(); b.j != nil && start < b.seq && start+1 <= b.firstRecordLocked(oldest) {
			if lo, hi, ok := b.j.holeBelow(oldest); ok {
				s.reset = fmt.Sprintf("records %d to %d were lost (never written to the journal); history resumes at %d", lo, hi, start+1)
			}
		}
	}
	s.start, s.pos = start, start
	b.subs[s] = struct{}{}
	return s, nil
}

// declaredEmpty reports whether seq lies in a range of seqs skipped after
// an unclean stop.
func (b *Bus) declaredEmpty(seq uint64) (lo, hi uint64, ok bool) {
	if b.j == nil {
		return 0, 0, false
	}
	return b.j.declaredEmpty(seq)
}

// lostReason says why a resume after since is not possible. b.mu is held.
func (b *Bus) lostReason(since, oldest uint64) string {
	if b.j != nil {
		if lo, hi, ok := b.j.holeBelow(oldest); ok && since < hi {
			return fmt.Sprintf("records %d to %d were lost (never written to the journal); the oldest record after them is %d", lo, hi, oldest)
		}
	}
	return fmt.Sprintf("records after seq %d are no longer retained (oldest is %d)", since, oldest)
}

// nextAvailableLocked returns the first seq at or after next from which the
// stream can be delivered again (records or seqs declared empty): next
// itself unless records were lost there. b.mu is held.
func (b *Bus) nextAvailableLocked(next uint64) uint64 {
	avail := b.seq + 1
	if b.ringFirst <= b.seq {
		avail = b.ringFirst
	}
	if b.j != nil {
		if c := b.j.nextCovered(next); c != 0 && c < avail {
			avail = c
		}
	}
	return max(avail, next)
}

// firstRecordLocked returns the seq of the first record at or after seq
// (seqs declared empty have none), or the next seq to come. b.mu is held.
func (b *Bus) firstRecordLocked(seq uint64) uint64 {
	first := b.seq + 1
	if b.ringFirst <= b.seq {
		first = max(b.ringFirst, seq)
	}
	if b.j != nil {
		if r := b.j.firstRecordFrom(seq); r != 0 {
			first = min(first, r)
		}
	}
	return first
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
		RingBytes:       b.ringBytes,
	}
	if b.ringFirst <= b.seq {
		st.RingRecords = int(b.seq - b.ringFirst + 1)
	}
	b.mu.Unlock()
	if b.j != nil {
		js := b.j.stats()
		st.JournalBytes, st.JournalSegments, st.JournalWriteErrors = js.bytes, js.segments, js.writeErrs
		st.JournalWaiting, st.JournalLost = js.waiting, js.dropped
	}
	if b.mark != nil {
		st.ReservedSeq = b.mark.reserved.Load()
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
	b.mu.Lock()
	head := b.seq
	b.mu.Unlock()
	err := b.j.close(head)
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
