// Package ride lets periodic work ride on wake-ups a process has anyway.
//
// An idle agent's CPU is the cost of waking its threads, not the work done
// once awake: on a virtual machine each wake-up is a trip through the
// hypervisor, and Go's own monitor thread wakes with every burst of work.
// A task that runs every second on a timer of its own costs a burst of its
// own each second; run from a burst that happens anyway (a probe sent, an
// ack received), it costs almost nothing.
//
// A Bell is rung by code that runs anyway (the heartbeat rings it when
// memberlist sends or receives). A Timer made from the Bell fires at its
// deadline, as a time.Timer does, or earlier, from its deadline minus its
// slack on, at the first ring. A nil *Bell is valid: its timers are plain
// timers.
package ride

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Bell wakes the timers whose window is open when it rings. The zero
// value is not usable; make one with New.
type Bell struct {
	base time.Time // for monotonic offsets
	// open is the earliest window opening of the armed timers, as an
	// offset from base in ns, or MaxInt64 when none is armed: the fast
	// path of Ring reads only this.
	open atomic.Int64

	mu     sync.Mutex
	timers map[*Timer]struct{} // armed timers with a slack
	rides  atomic.Uint64       // fires by a ring
	fires  atomic.Uint64       // fires at the deadline
}

// New returns a Bell with no timer.
func New() *Bell {
	b := &Bell{base: time.Now(), timers: map[*Timer]struct{}{}}
	b.open.Store(math.MaxInt64)
	return b
}

func (b *Bell) now() int64 { return int64(time.Since(b.base)) }

// Ring fires every timer whose window is open. It is cheap when none is
// (one clock read and one atomic load) and never blocks on a timer's
// reader. Safe on a nil Bell and from any goroutine.
func (b *Bell) Ring() {
	if b == nil || b.now() < b.open.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	for t := range b.timers {
		if t.open <= now {
			b.rides.Add(1)
			t.fireLocked()
		}
	}
	b.reopenLocked()
}

// Stats returns how many timer fires rode on a ring and how many came at
// a deadline.
func (b *Bell) Stats() (rides, deadlines uint64) {
	if b == nil {
		return 0, 0
	}
	return b.rides.Load(), b.fires.Load()
}

// reopenLocked recomputes the earliest window opening. b.mu held.
func (b *Bell) reopenLocked() {
	open := int64(math.MaxInt64)
	for t := range b.timers {
		open = min(open, t.open)
	}
	b.open.Store(open)
}

// Timer delivers one time on C per Reset: at the deadline, or at the first
// ring of its Bell from the deadline minus its slack on. Reset and Stop
// may be called from any goroutine.
type Timer struct {
	// C receives the time of the fire.
	C <-chan time.Time

	c     chan time.Time
	b     *Bell
	mu    *sync.Mutex // b.mu, or the timer's own with a nil Bell
	t     *time.Timer
	armed bool
	open  int64 // window opening (offset from b.base), when armed
	due   time.Time
}

// NewTimer returns a timer that is not armed: call Reset.
func (b *Bell) NewTimer() *Timer {
	c := make(chan time.Time, 1)
	t := &Timer{C: c, c: c, b: b}
	if b != nil {
		t.mu = &b.mu
	} else {
		t.mu = new(sync.Mutex)
	}
	t.t = time.AfterFunc(time.Hour, t.deadline)
	t.t.Stop()
	return t
}

// Reset arms the timer for d from now, early by up to slack (at most d)
// if the Bell rings. A time not yet received from an earlier arming is
// dropped.
func (t *Timer) Reset(d, slack time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.c:
	default:
	}
	t.armed = true
	t.due = time.Now().Add(d)
	slack = min(max(slack, 0), max(d, 0))
	if t.b != nil {
		t.open = t.b.now() + int64(d-slack)
		if slack > 0 {
			t.b.timers[t] = struct{}{}
		} else {
			delete(t.b.timers, t)
		}
		t.b.reopenLocked()
	}
	t.t.Reset(d)
}

// Next arms the timer for one period after its last deadline, early by up
// to slack: as with a time.Ticker, fires that came early do not shorten
// the average period. A deadline already past is skipped: the next one is
// a period from now.
func (t *Timer) Next(period, slack time.Duration) {
	t.mu.Lock()
	due := t.due.Add(period)
	t.mu.Unlock()
	now := time.Now()
	if !due.After(now) {
		due = now.Add(period)
	}
	t.Reset(due.Sub(now), slack)
}

// Stop disarms the timer. A time already delivered stays on C.
func (t *Timer) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.disarmLocked()
}

func (t *Timer) disarmLocked() {
	t.armed = false
	t.t.Stop()
	if t.b != nil {
		if _, ok := t.b.timers[t]; ok {
			delete(t.b.timers, t)
			t.b.reopenLocked()
		}
	}
}

// deadline runs on the time.Timer's own goroutine.
func (t *Timer) deadline() {
	t.mu.Lock()
	defer t.mu.Unlock()
	// A callback of an earlier arming may run after a Reset: fire only
	// once the current arming is due.
	if !t.armed || time.Now().Before(t.due) {
		return
	}
	if t.b != nil {
		t.b.fires.Add(1)
	}
	t.fireLocked()
	if t.b != nil {
		t.b.reopenLocked()
	}
}

// fireLocked delivers the time and disarms. t.mu held.
func (t *Timer) fireLocked() {
	t.disarmLocked()
	select {
	case t.c <- time.Now():
	default:
	}
}
