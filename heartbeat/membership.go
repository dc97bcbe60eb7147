package heartbeat

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// Errors of Forget.
var (
	// ErrNotDead: the node is alive (or suspect) here; only a dead or
	// left node can be forgotten.
	ErrNotDead = errors.New("node is not dead")
	// ErrUnknownNode: nothing is known of the node here.
	ErrUnknownNode = errors.New("unknown node")
)

// Leave announces a graceful departure and waits up to timeout for it to
// propagate. Peers mark this node left. The last local changes go out
// first, then a leave notice to each peer through its queue (half the
// timeout at most: a peer that does not answer delays nobody else), then
// memberlist's own leave.
func (h *Heartbeat) Leave(timeout time.Duration) error {
	start := time.Now()
	half := start.Add(timeout / 2)
	if h.loopStarted.Load() {
		done := make(chan struct{})
		h.work.push(task{kind: taskFlush, done: done})
		wait := time.NewTimer(time.Until(half))
		select {
		case <-done:
		case <-h.loopDone:
			// The loop ended (Run's context did, as when the agent is
			// told to stop): nothing else flushes now.
			h.flush()
		case <-wait.C:
		}
		wait.Stop()
	} else {
		h.flush() // Run never ran: no loop to race with
	}
	msg := encode(msgLeave, leaveMsg{Node: h.cfg.Name})
	for _, n := range h.alivePeers() {
		h.enqueue(n.Name, outMsg{kind: msgLeave, msg: msg})
	}
	if !h.waitQueues(half) {
		h.log.Debug("leave notices not all delivered in time")
	}
	return h.ml.Leave(max(timeout-time.Since(start), 0))
}

// Forget drops node from this agent: its address from the reconnect set
// (it is not retried any more), the heartbeat's bookkeeping, and its data
// and cluster.nodes entry from the store (event forget_peer, reason cli).
// The node must be dead or left here (ErrNotDead otherwise). memberlist
// keeps a dead node in its own list until GossipToTheDeadTime has passed,
// but never probes it again. Should the node come back, it is a member
// again. It is what `agent node forget N` runs on every node.
func (h *Heartbeat) Forget(node string) error {
	if node == h.cfg.Name {
		return fmt.Errorf("forget %s: %w: it is this node", node, ErrNotDead)
	}
	h.mu.Lock()
	if _, alive := h.peers[node]; alive {
		h.mu.Unlock()
		return fmt.Errorf("forget %s: %w", node, ErrNotDead)
	}
	_, gone := h.gone[node]
	known := h.known.remove(node)
	delete(h.gone, node)
	delete(h.pending, node)
	delete(h.awaiting, node)
	delete(h.leaving, node)
	if q := h.queues[node]; q != nil {
		q.kill()
		delete(h.queues, node)
	}
	h.mu.Unlock()
	dropped := h.store.Forget(node, "cli")
	if !gone && !known && !dropped {
		return fmt.Errorf("forget %s: %w", node, ErrUnknownNode)
	}
	h.log.Info("forgot node", "node", node)
	return nil
}

func (h *Heartbeat) member(n memberlist.Node, state string) {
	if n.Name == h.cfg.Name {
		return
	}
	now := h.cfg.Now()
	h.mu.Lock()
	switch state {
	case monitor.StateAlive, monitor.StateSuspect:
		delete(h.crashed, n.Name)
		delete(h.farewell, n.Name)
		nn := n
		h.peers[n.Name] = &nn
		if _, ok := h.awaiting[n.Name]; !ok {
			h.awaiting[n.Name] = now
		}
		delete(h.gone, n.Name)
		if q := h.queues[n.Name]; q != nil {
			q.node = n
		}
		h.known.seen(n.Name, n.Address(), now)
	default:
		if _, ok := h.leaving[n.Name]; ok && state == monitor.StateDead {
			state = monitor.StateLeft
		}
		delete(h.leaving, n.Name)
		delete(h.peers, n.Name)
		delete(h.pending, n.Name)
		delete(h.awaiting, n.Name)
		// The queue dies with its peer: what it held is stale by the
		// time the peer is back, which gets a full copy then.
		if q := h.queues[n.Name]; q != nil {
			q.kill()
			delete(h.queues, n.Name)
		}
		if _, ok := h.gone[n.Name]; !ok {
			h.gone[n.Name] = now
		}
		if state == monitor.StateLeft {
			h.known.remove(n.Name)
		} else {
			h.known.died(n.Name, n.Address(), now)
		}
	}
	h.mu.Unlock()
	h.store.SetMember(n.Name, state, n.Address())
	if state == monitor.StateAlive {
		h.sendFull(n.Name, "")
	}
	h.rewatch()
}

// refresh forgets the data of peers gone longer than ForgetAfter (their
// address stays in the reconnect set), retries unanswered full requests,
// asks alive peers whose data never came for it,
// drops stale leave notices and tries the dead peers that are due.
// (memberlist reports no suspicion to its delegates, so cluster.nodes
// shows alive until a peer is declared dead.) Main loop.
func (h *Heartbeat) refresh() {
	now := h.cfg.Now()
	var forget []string
	h.mu.Lock()
	for name, since := range h.gone {
		if now.Sub(since) >= h.cfg.ForgetAfter {
			forget = append(forget, name)
			delete(h.gone, name)
		}
	}
	for name, at := range h.leaving {
		if now.Sub(at) >= time.Minute {
			delete(h.leaving, name)
		}
	}
	// A pending full request that was never answered is retried (and
	// sent to the relay known, if any).
	retry := map[string]pendingRequest{}
	for name, p := range h.pending {
		if now.Sub(p.at) >= h.cfg.FullRetry {
			retry[name] = p
		}
	}
	var awaited []string
	for name, since := range h.awaiting {
		if now.Sub(since) >= h.cfg.FullRetry {
			awaited = append(awaited, name)
		}
	}
	h.mu.Unlock()
	// A peer alive for a while whose data never came is asked for it.
	for _, name := range awaited {
		if _, _, held := h.store.Held(name); held {
			h.mu.Lock()
			delete(h.awaiting, name)
			h.mu.Unlock()
			continue
		}
		if _, ok := retry[name]; !ok {
			retry[name] = pendingRequest{why: monitor.DivergeUnknown}
		}
	}
	for _, name := range forget {
		h.store.Forget(name, "grace_expired")
	}
	h.reconnect(now)
	h.recheckCrashed()
	h.rewatch()
	for name, p := range retry {
		h.requestFull(name, p.why, p.via)
	}
	h.saveKnown(false)
}

func isConflict(err error) bool { return errors.Is(err, ErrNameConflict) }
