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

// Subscription is one subscription of a Bus. As with *events.Subscription,
// a Next that ends because its ctx is done leaves the subscription usable,
// and an error that ends the subscription is returned again by later calls.
type Subscription interface {
	events.Subscriber
	// Start is the sequence number after which delivery starts.
	Start() uint64
	// Reset is non-empty when a resume or start point could not be honoured
	// and the subscription starts at the head instead, or when records were
	// lost just before a start at a time; it says why.
	Reset() string
}

// BusAdapter makes an *events.Bus a Bus (Subscribe returns the concrete
// *events.Subscription, which Go does not convert by itself).
type BusAdapter struct {
	*events.Bus
}

// Subscribe subscribes to the underlying bus.
func (a BusAdapter) Subscribe(opts events.SubscribeOptions) (Subscription, error) {
	s, err := a.Bus.Subscribe(opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

var (
	_ Bus          = BusAdapter{}
	_ Subscription = (*events.Subscription)(nil)
)
