// Package ratelog limits log lines by key: at most one line per key per
// interval, the next one allowed carrying the count of those held back.
// It keeps a noisy source (a peer sending garbage, or anyone who can reach
// a port) from flooding the log while the log still says how much
// happened.
package ratelog

import (
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys a Limiter remembers; past it, new keys
// share one entry, so that spoofed sources cannot grow the memory.
const DefaultMaxKeys = 4096

// overflowKey is the shared entry of the keys past MaxKeys.
const overflowKey = "\x00other"

// Limiter allows one line per key per Every. It is safe for concurrent
// use. The zero value is not usable: build it with New.
type Limiter struct {
	every   time.Duration
	maxKeys int
	now     func() time.Time

	mu   sync.Mutex
	keys map[string]*entry
}

type entry struct {
	last time.Time // when the last line was allowed
	held int       // lines held back since
}

// New returns a Limiter allowing one line per key per every. now may be
// nil (time.Now); maxKeys <= 1 means DefaultMaxKeys.
func New(every time.Duration, maxKeys int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	if maxKeys <= 1 {
		maxKeys = DefaultMaxKeys
	}
	return &Limiter{every: every, maxKeys: maxKeys, now: now, keys: map[string]*entry{}}
}

// Allow reports whether a line for key may be logged now and, when it
// may, how many lines of key were held back since the last one allowed.
func (l *Limiter) Allow(key string) (ok bool, held int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if e == nil {
		// One entry stays free for the shared one.
		if len(l.keys) >= l.maxKeys-1 {
			l.prune(now)
		}
		if len(l.keys) >= l.maxKeys-1 {
			key = overflowKey
			e = l.keys[key]
		}
		if e == nil {
			e = &entry{}
			l.keys[key] = e
			e.last = now
			return true, 0
		}
	}
	if now.Sub(e.last) < l.every {
		e.held++
		return false, 0
	}
	held, e.held, e.last = e.held, 0, now
	return true, held
}

// prune drops the entries idle for an interval, with nothing held back.
func (l *Limiter) prune(now time.Time) {
	for k, e := range l.keys {
		if e.held == 0 && now.Sub(e.last) >= l.every {
			delete(l.keys, k)
		}
	}
}
