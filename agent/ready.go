package agent

import (
	"context"
	"errors"
	"fmt"
)

// errProbeStuck: the previous liveness probe has not returned yet.
var errProbeStuck = errors.New("the previous liveness probe is still blocked")

// Ready is closed once the agent has found its cluster: when the rejoin
// wait ends with the node idle, that is after the first successful join,
// at once without seeds, or after the rejoin grace when no peer answered.
// A service manager reports the agent started then (systemd READY=1).
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// markReady closes Ready once.
func (a *Agent) markReady() { a.readyOnce.Do(func() { close(a.ready) }) }

// Alive reports whether the agent's core loops still answer: the
// heartbeat's main loop handles a probe, and the monitor store and the
// record bus can be locked. The error names the first that did not answer
// before ctx ended. At most one probe of the store and bus is in flight:
// when one stays blocked (a deadlock), later calls fail at once instead of
// piling up goroutines. A watchdog pings its supervisor only while Alive
// returns nil.
func (a *Agent) Alive(ctx context.Context) error {
	if err := a.hb.Ping(ctx); err != nil {
		return fmt.Errorf("heartbeat loop does not answer: %w", err)
	}
	if !a.probing.CompareAndSwap(false, true) {
		return errProbeStuck
	}
	done := make(chan struct{})
	go func() {
		defer a.probing.Store(false)
		defer close(done)
		a.store.Local()
		a.bus.Position()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("monitor store or record bus stays locked: %w", ctx.Err())
	}
}
