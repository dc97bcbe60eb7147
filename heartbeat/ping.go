package heartbeat

import "context"

// taskPing is a no-op for the main loop: handling it proves the loop runs.
// Declared apart from the other kinds so that adding kinds there does not
// renumber it (nothing persists kinds, but keep it obvious).
const taskPing taskKind = -1

// Ping returns nil once the heartbeat's main loop has handled a no-op
// task, or ctx's error when it does not in time: a liveness probe, for
// systemd's watchdog. The main loop is the one that applies peers' data
// and sends this node's changes; if it is stuck, the node is not
// replicating.
func (h *Heartbeat) Ping(ctx context.Context) error {
	done := make(chan struct{})
	h.work.push(task{kind: taskPing, done: done})
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
