package durable

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"agent/events"
)

// Defaults of Config.
const (
	// DefaultSyncInterval bounds how long a written cursor waits for its
	// fsync, and so how many fsyncs a busy consumer does (one per interval).
	DefaultSyncInterval = 50 * time.Millisecond
	// DefaultPassBatch is how many records Pass lets by before the cursor
	// is written.
	DefaultPassBatch = 1024
	// DefaultRetryInterval is the pause before a consumer subscribes again
	// after a journal read error.
	DefaultRetryInterval = time.Second
)

// ErrClosed is returned by Next once the Consumer is closed.
var ErrClosed = errors.New("durable consumer closed")

// Config says what a Consumer reads and where it keeps its cursor.
type Config struct {
	// Name names the consumer in errors ("hook notify", "sink history").
	Name string
	// CursorPath is the cursor file. The files of the cursor are kept
	// beside it (see ReadCursor); its directory must exist. "" keeps the
	// cursor in memory only: the consumer then starts anew at every Open.
	CursorPath string
	// Bus is the record bus read. Required. Close the Consumer before the
	// Bus.
	Bus *events.Bus
	// Logger receives cursor write errors and journal read errors, as is:
	// give it the attributes that name the consumer. nil means
	// slog.Default().
	Logger *slog.Logger
	// OnLoss is called for every loss found (see Loss), on the goroutine
	// that called Open or Next, before the first record after the loss is
	// returned. It must not call the Consumer's methods. nil ignores losses
	// (not advised: losses are meant to be loud).
	OnLoss func(Loss)
	// StartAtHead starts at the head of the stream whatever the cursor
	// file says: for a consumer that is new now.
	StartAtHead bool
	// From, when set, resumes after this cursor instead of the cursor
	// file's (a consumer that takes over from another one of the same
	// name). Ignored with StartAtHead.
	From *Cursor
	// NewFromOldest makes a consumer without a cursor (none in the file,
	// or an unreadable one) start at the oldest retained record, replaying
	// the journal, instead of at the head.
	NewFromOldest bool
	// SyncInterval is how long a written cursor may wait for its fsync. 0
	// means DefaultSyncInterval.
	SyncInterval time.Duration
	// PassBatch is how many records Pass lets by before the cursor is
	// written. 0 means DefaultPassBatch.
	PassBatch int
	// RetryInterval is the pause before subscribing again after a journal
	// read error. 0 means DefaultRetryInterval.
	RetryInterval time.Duration
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Bus == nil {
		errs = append(errs, errors.New("durable consumer config: Bus is required"))
	}
	if c.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("durable consumer config: SyncInterval %s is negative", c.SyncInterval))
	}
	if c.PassBatch < 0 {
		errs = append(errs, fmt.Errorf("durable consumer config: PassBatch %d is negative", c.PassBatch))
	}
	if c.RetryInterval < 0 {
		errs = append(errs, fmt.Errorf("durable consumer config: RetryInterval %s is negative", c.RetryInterval))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.PassBatch == 0 {
		c.PassBatch = DefaultPassBatch
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.OnLoss == nil {
		c.OnLoss = func(Loss) {}
	}
	return c
}

// Consumer reads the record stream durably: see the package documentation.
// Next is called by one goroutine at a time, the owner; Done, Pass, Cursor
// and Close may be called from any (a batch committed on another
// goroutine).
type Consumer struct {
	cfg   Config
	log   *slog.Logger
	bus   *events.Bus
	epoch string          // the bus's: it never changes while the bus is open
	poll  context.Context // already done: Next(poll) never waits
	stop  chan struct{}   // closed by Close: ends a retry pause

	// read is the seq of the last record Next returned (or the start):
	// written by the goroutine calling Next, read by Done and Pass.
	read atomic.Uint64
	// Owned by the goroutine calling Next.
	lastSkipped uint64 // sub.Skipped() already reported

	// mu guards the fields below. Lock order: syncMu, then mu. It is never
	// held while reading the stream, fsyncing, or calling OnLoss.
	mu       sync.Mutex
	sub      *events.Subscription // nil between a read error and the next subscribe
	cur      Cursor               // done with every record up to cur.Seq
	written  Cursor               // what the cursor files hold (written, maybe not fsynced)
	next     *nextFile            // PATH.next, open once written; nil before or after Close
	passed   int                  // Pass calls since the cursor was last written
	unsynced bool                 // written holds a cursor not yet fsynced
	timer    *time.Timer          // pending fsync; nil when none
	writeErr bool                 // the last write or fsync failed (logged once)
	closed   bool

	syncMu  sync.Mutex     // serializes fsyncs
	syncing sync.WaitGroup // the timer's goroutine, while one is armed
}

// syncHook, when set (by tests), is called after each fsync of a cursor.
var syncHook func(path string)

// Open opens a consumer where it resumes: after its cursor (Config.From,
// or the cursor file), or at the head (or oldest record) when it is new or
// StartAtHead is set. Losses found on the way are reported to OnLoss before
// Open returns; the start cursor is written and fsynced when it is not what
// the file held. It fails when Config is invalid or the bus is closed.
func Open(cfg Config) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	_, epoch := cfg.Bus.Position()
	poll, cancel := context.WithCancel(context.Background())
	cancel()
	c := &Consumer{
		cfg:   cfg,
		log:   cfg.Logger,
		bus:   cfg.Bus,
		epoch: epoch,
		poll:  poll,
		stop:  make(chan struct{}),
	}
	if err := c.open(); err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cfg.Name, err)
	}
	return c, nil
}

// open subscribes where the consumer starts and writes its start cursor.
func (c *Consumer) open() error {
	var from *Cursor // nil: a new consumer
	onDisk := false  // from is what the cursor file holds
	switch {
	case c.cfg.StartAtHead:
	case c.cfg.From != nil:
		f := *c.cfg.From
		from = &f
	case c.cfg.CursorPath != "":
		cur, err := ReadCursor(c.cfg.CursorPath)
		switch {
		case err == nil:
			from, onDisk = &cur, true
		case errors.Is(err, fs.ErrNotExist):
		default:
			c.cfg.OnLoss(Loss{Reason: LossCursorUnreadable, Detail: err.Error()})
		}
	}
	var (
		sub   *events.Subscription
		after Cursor // where a retention loss found at once begins
		err   error
	)
	c.lastSkipped = 0
	switch {
	case from != nil:
		sub, after, err = c.resume(*from)
	case c.cfg.NewFromOldest && !c.cfg.StartAtHead:
		sub, err = c.bus.Subscribe(events.SubscribeOptions{
			Resume: true, Since: c.bus.Oldest() - 1, Epoch: c.epoch, Durable: true})
		if err == nil {
			// Records retention drops meanwhile were never this new
			// consumer's: not a loss.
			c.lastSkipped = sub.Skipped()
		}
	default:
		sub, err = c.bus.Subscribe(events.SubscribeOptions{Durable: true})
	}
	if err != nil {
		return err
	}
	start := Cursor{Epoch: c.epoch, Seq: sub.Start()}
	c.read.Store(start.Seq)
	c.checkSkipped(sub, after)
	c.mu.Lock()
	c.sub, c.cur = sub, start
	if onDisk {
		c.written = *from
	}
	if c.written != start {
		c.writeNextLocked()
	}
	c.mu.Unlock()
	if err := c.syncNow(); err != nil {
		c.log.Error("cannot make the start cursor durable: after a power loss, records may be read again",
			keyFile, c.cfg.CursorPath, keyErr, err)
	}
	return nil
}

// resume subscribes after from, reporting a cursor ahead of the journal
// or in another epoch. It returns where the subscription resumed from, for
// a retention loss it may have found at once.
func (c *Consumer) resume(from Cursor) (*events.Subscription, Cursor, error) {
	sub, err := c.bus.Subscribe(events.SubscribeOptions{Resume: true, Since: from.Seq, Epoch: from.Epoch, Durable: true})
	if errors.Is(err, events.ErrFuture) {
		c.cfg.OnLoss(Loss{Reason: LossCursorAhead, Cursor: from, Detail: err.Error()})
		sub, err = c.bus.Subscribe(events.SubscribeOptions{Durable: true})
	}
	if err != nil {
		return nil, from, err
	}
	if why := sub.Reset(); why != "" {
		// The stream was renumbered: everything of the new epoch that is
		// still retained is the consumer's.
		sub.Close()
		c.cfg.OnLoss(Loss{Reason: LossEpoch, Cursor: from, Detail: why})
		from = Cursor{Epoch: c.epoch}
		sub, err = c.bus.Subscribe(events.SubscribeOptions{Resume: true, Since: 0, Epoch: c.epoch, Durable: true})
		if err != nil {
			return nil, from, err
		}
	}
	return sub, from, nil
}

// checkSkipped reports the records sub skipped since the last check; after
// is the last record read before them.
func (c *Consumer) checkSkipped(sub *events.Subscription, after Cursor) {
	n := sub.Skipped()
	if n <= c.lastSkipped {
		return
	}
	lost := n - c.lastSkipped
	c.lastSkipped = n
	c.cfg.OnLoss(Loss{Reason: LossRetention, Count: lost, CountKnown: true, Cursor: after})
}

// Next returns the next record in seq order: the one after the last that
// Next returned, whether or not it is done. It blocks until there is one
// or ctx is done (it returns ctx.Err() and the consumer stays usable);
// called with a ctx already done it still returns a record available
// without waiting, so a caller can gather a batch without blocking. Before
// it waits, it writes the cursor left behind by Pass. It returns ErrClosed
// after Close, and an error wrapping events.ErrClosed once the bus is
// closed. A journal read error is logged and the consumer subscribes again
// after RetryInterval, after the last record returned: Next does not
// return it.
func (c *Consumer) Next(ctx context.Context) (*events.Record, error) {
	for {
		c.mu.Lock()
		sub, closed := c.sub, c.closed
		c.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if sub == nil {
			if err := c.resubscribe(ctx); err != nil {
				return nil, err
			}
			continue
		}
		rec, err := sub.Next(c.poll)
		if err != nil && errors.Is(err, context.Canceled) {
			// Caught up: a good time to write what Pass left behind.
			c.caughtUp()
			rec, err = sub.Next(ctx)
		}
		if err == nil {
			c.checkSkipped(sub, Cursor{Epoch: c.epoch, Seq: c.read.Load()})
			c.read.Store(rec.Seq)
			return rec, nil
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, err
		}
		c.mu.Lock()
		closed = c.closed
		if !closed {
			c.sub = nil
		}
		c.mu.Unlock()
		sub.Close()
		switch {
		case closed:
			return nil, ErrClosed
		case errors.Is(err, events.ErrClosed):
			return nil, fmt.Errorf("consumer %s: event bus closed: %w", c.cfg.Name, err)
		}
		c.log.Error("reading the event stream failed; subscribing again after the last record read",
			keyErr, err, keySeq, c.read.Load(), "retry_in", c.cfg.RetryInterval)
		if err := c.pause(ctx); err != nil {
			return nil, err
		}
	}
}

// pause waits RetryInterval, or less when ctx ends or Close is called.
func (c *Consumer) pause(ctx context.Context) error {
	t := time.NewTimer(c.cfg.RetryInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return ErrClosed
	case <-t.C:
		return nil
	}
}

// resubscribe replaces a subscription that ended with a read error: it
// resumes after the last record Next returned.
func (c *Consumer) resubscribe(ctx context.Context) error {
	sub, after, err := c.resume(Cursor{Epoch: c.epoch, Seq: c.read.Load()})
	if err != nil {
		if errors.Is(err, events.ErrClosed) {
			return fmt.Errorf("consumer %s: event bus closed: %w", c.cfg.Name, err)
		}
		c.log.Error("cannot subscribe to the event stream; retrying", keyErr, err, "retry_in", c.cfg.RetryInterval)
		return c.pause(ctx)
	}
	c.lastSkipped = 0
	c.checkSkipped(sub, after)
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.sub = sub
	}
	c.mu.Unlock()
	if closed {
		sub.Close()
		return ErrClosed
	}
	return nil
}

// Done marks every record up to seq done, including records Next returned
// and the caller has not marked yet: call it with the seq below which
// nothing is pending (a batch committed: its last seq). The cursor is
// written (to PATH.next, in place) before Done returns, so a killed
// process resumes after seq; its fsync follows within SyncInterval. A seq Next has
// not returned yet counts as the last one it returned; an older one than
// the cursor changes nothing. A write error is logged, once until a write
// works again, and the consumer goes on: a restart would then read some
// records again, never skip them.
func (c *Consumer) Done(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked(seq)
	c.writeLocked()
}

// Pass marks every record up to seq done, like Done, for records the
// consumer had nothing to do with: the cursor is written only every
// PassBatch records, when Next catches up, at the next Done, or at Close.
// A killed process may read those records again.
func (c *Consumer) Pass(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked(seq)
	c.passed++
	if c.passed >= c.cfg.PassBatch || c.closed {
		c.writeLocked()
	}
}

func (c *Consumer) advanceLocked(seq uint64) {
	seq = min(seq, c.read.Load())
	if seq > c.cur.Seq {
		c.cur.Seq = seq
	}
}

// Cursor returns the consumer's cursor: it is done with every record up to
// Seq of Epoch.
func (c *Consumer) Cursor() Cursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// caughtUp writes the cursor Pass left behind.
func (c *Consumer) caughtUp() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != c.written {
		c.writeLocked()
	}
}

// writeLocked writes the cursor to PATH.next and arms its fsync; after
// Close it fsyncs at once.
func (c *Consumer) writeLocked() {
	c.passed = 0
	if c.cfg.CursorPath == "" {
		c.written = c.cur
		return
	}
	if c.cur == c.written && !c.writeErr {
		return
	}
	if !c.writeNextLocked() {
		return
	}
	if c.closed {
		// No timer after Close: sync now (a Done of a batch committed
		// while closing), and let the file go.
		c.mu.Unlock()
		err := c.syncNow()
		c.mu.Lock()
		if err != nil {
			c.writeFailedLocked(err)
		}
		if c.next != nil {
			_ = c.next.close()
			c.next = nil
		}
		return
	}
	if c.writeErr {
		c.writeErr = false
		c.log.Info("cursor written again", keyFile, c.cfg.CursorPath)
	}
	if c.timer == nil {
		c.syncing.Add(1)
		c.timer = time.AfterFunc(c.cfg.SyncInterval, c.syncLater)
	}
}

// writeNextLocked writes c.cur to PATH.next, opening it when needed. It
// reports whether the write worked; a failure is logged.
func (c *Consumer) writeNextLocked() bool {
	if c.cfg.CursorPath == "" {
		c.written = c.cur
		return true
	}
	if c.next == nil {
		n, err := openNext(c.cfg.CursorPath)
		if err != nil {
			c.writeFailedLocked(err)
			return false
		}
		c.next = n
	}
	if err := c.next.write(c.cur); err != nil {
		c.writeFailedLocked(err)
		return false
	}
	c.written, c.unsynced = c.cur, true
	return true
}

// writeFailedLocked logs a failed cursor write or fsync, once until one
// works again.
func (c *Consumer) writeFailedLocked(err error) {
	if c.writeErr {
		return
	}
	c.writeErr = true
	c.log.Error("cannot write cursor: after a restart, records already done may be read again",
		keyFile, c.cfg.CursorPath, keyErr, err)
}

// syncLater is the goroutine of the fsync timer.
func (c *Consumer) syncLater() {
	defer c.syncing.Done()
	c.mu.Lock()
	c.timer = nil
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return // Close syncs
	}
	if err := c.syncNow(); err != nil {
		c.mu.Lock()
		c.writeFailedLocked(err)
		c.mu.Unlock()
	}
}

// syncNow makes the written cursor durable, when it is not yet.
func (c *Consumer) syncNow() error {
	if c.cfg.CursorPath == "" {
		return nil
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	c.mu.Lock()
	pending, cur := c.unsynced, c.written
	c.unsynced = false
	c.mu.Unlock()
	if !pending {
		return nil
	}
	// The journal first: a cursor made durable ahead of the records it
	// names would, after a power loss took the journal's tail, hide the
	// loss of the records that follow it. While the journal cannot be
	// made durable (a full disk), the older durable cursor stays: runs
	// may repeat after a power loss, none is skipped.
	if err := c.cfg.Bus.Sync(); err != nil {
		c.mu.Lock()
		c.unsynced = true
		c.mu.Unlock()
		return fmt.Errorf("cursor fsync waits for the journal: %w", err)
	}
	if err := syncCursor(c.cfg.CursorPath, cur); err != nil {
		c.mu.Lock()
		c.unsynced = true
		c.mu.Unlock()
		return err
	}
	if h := syncHook; h != nil {
		h(c.cfg.CursorPath)
	}
	return nil
}

// Close ends the consumer: a Next blocked on another goroutine returns
// ErrClosed, and the cursor is written and fsynced. Records Next returned
// and not marked done are read again by the next Open. Done after Close
// still writes (and fsyncs) the cursor. Close returns the error of the
// final write, if any; it is safe to call more than once.
func (c *Consumer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	sub := c.sub
	c.sub = nil
	if c.timer != nil && c.timer.Stop() {
		c.syncing.Done()
	}
	c.timer = nil
	c.mu.Unlock()
	if sub != nil {
		sub.Close()
	}
	c.syncing.Wait()
	c.mu.Lock()
	var err error
	if c.cur != c.written && !c.writeNextLocked() {
		err = errors.New("cannot write the cursor")
	}
	c.passed = 0
	c.mu.Unlock()
	if serr := c.syncNow(); err == nil {
		err = serr
	}
	c.mu.Lock()
	if c.next != nil {
		if cerr := c.next.close(); err == nil {
			err = cerr
		}
		c.next = nil
	}
	c.mu.Unlock()
	if err != nil {
		c.mu.Lock()
		c.writeFailedLocked(err)
		c.mu.Unlock()
		return fmt.Errorf("consumer %s: %w", c.cfg.Name, err)
	}
	return nil
}

// Log attribute keys.
const (
	keyErr  = "err"
	keyFile = "file"
	keySeq  = "seq"
)
