package events

// This file states the Bus contract the rest of the agent builds on. The
// implementation lives in bus.go and journal.go.

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors of the bus and its subscriptions.
var (
	// ErrSlow: a non-durable subscription fell further behind the head of
	// the stream than its lag limit; it is over and the subscriber must
	// resume or resubscribe. The error returned wraps ErrSlow with the figures.
	ErrSlow = errors.New("slow subscriber")
	// ErrClosed: the subscription or the bus was closed.
	ErrClosed = errors.New("closed")
	// ErrFuture: a resume point after the newest record of the epoch.
	ErrFuture = errors.New("resume point is in the future")
)

// SubscribeOptions says where a subscription starts and how it is bounded.
type SubscribeOptions struct {
	// Resume: deliver every record with Seq > Since, when Epoch is the bus's
	// epoch and every record after Since is still retained (seqs declared
	// empty after an unclean stop are passed over). Otherwise the
	// subscription starts at the head and Reset() tells why; a Since inside
	// a range of skipped seqs resets too (see the package documentation).
	Resume bool
	Since  uint64
	Epoch  string
	// SinceTime, when not zero (and Resume is false), starts at the first
	// retained record whose Time is at or after it.
	SinceTime time.Time
	// Durable subscriptions (hooks, sinks, triggers) have no lag limit: they
	// read the journal at their own pace. Within their epoch they never
	// reset: records lost (dropped by retention, never written) are skipped
	// to the next record there is and Skipped() counts them; empty seqs are
	// passed over and not counted.
	Durable bool
	// MaxLag is the lag limit of a non-durable subscription, in records; 0
	// means the bus default.
	MaxLag int
}

// Subscriber is what a consumer of the stream holds. It is implemented by
// *Subscription; the interface exists so that tests can fake it.
type Subscriber interface {
	// Next blocks until the next record, ctx is done, or the subscription
	// ends (ErrSlow, ErrClosed).
	Next(ctx context.Context) (*Record, error)
	// Skip moves past seq without delivering the records up to it.
	Skip(seq uint64)
	// Close ends the subscription. Safe to call more than once.
	Close()
}
