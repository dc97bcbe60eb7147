package stream

import "agent/events"

// Bus is what the handler needs of the agent's record bus (*events.Bus,
// through BusAdapter): where the stream stands, and subscriptions that can
// resume.
type Bus interface {
	// Position returns the newest sequence number and the epoch.
	Position() (seq uint64, epoch string)
	// Subscribe starts a subscription as opts says. It returns an error
	// wrapping events.ErrFuture when a resume point is after the head.
	Subscribe(opts events.SubscribeOptions) (Subscription, error)
}

// Subscription is one subscription of a Bus.
//
// The handler relies on one property of Next beyond events.Subscriber:
// called with a context that is already done, Next returns a record that is
// already available, or the context's error without consuming one. It uses
// that to gather batches without blocking.
type Subscription interface {
	events.Subscriber
	// Start is the sequence number after which delivery starts.
	Start() uint64
	// Reset is non-empty when a resume or start point could not be honoured
	// and the subscription starts at the head instead; it says why.
	Reset() string
}
