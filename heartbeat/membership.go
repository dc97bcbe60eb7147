package heartbeat

import (
	"errors"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// Leave announces a graceful departure and waits up to timeout for it to
// propagate. Peers mark this node left.
func (h *Heartbeat) Leave(timeout time.Duration) error {
	h.flush()
	h.mu.Lock()
	peers := make([]*memberlist.Node, 0, len(h.peers))
	for _, n := range h.peers {
		peers = append(peers, n)
	}
	h.mu.Unlock()
	msg := encode(msgLeave, leaveMsg{Node: h.cfg.Name})
	for _, n := range peers {
		if err := h.ml.SendReliable(n, msg); err != nil {
			h.log.Debug("leave notice not delivered", "peer", n.Name, "err", err)
		}
	}
	return h.ml.Leave(timeout)
}

func (h *Heartbeat) member(n memberlist.Node, state string) {
	if n.Name == h.cfg.Name {
		return
	}
	h.mu.Lock()
	switch state {
	case monitor.StateAlive, monitor.StateSuspect:
		nn := n
		h.peers[n.Name] = &nn
		delete(h.gone, n.Name)
	default:
		if _, ok := h.leaving[n.Name]; ok && state == monitor.StateDead {
			state = monitor.StateLeft
		}
		delete(h.leaving, n.Name)
		delete(h.peers, n.Name)
		delete(h.pending, n.Name)
		if _, ok := h.gone[n.Name]; !ok {
			h.gone[n.Name] = h.cfg.Now()
		}
	}
	h.mu.Unlock()
	h.store.SetMember(n.Name, state, n.Address())
	if state == monitor.StateAlive {
		h.sendFull(n.Name, "")
	}
}

// refresh forgets peers gone longer than ForgetAfter, retries
// unanswered full requests and drops stale leave notices. (memberlist
// reports no suspicion to its delegates, so cluster.nodes shows alive
// until a peer is declared dead.)
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
	// A pending full request that was never answered is retried.
	var retry []string
	for name, sent := range h.pending {
		if now.Sub(sent) >= h.cfg.FullRetry {
			retry = append(retry, name)
		}
	}
	h.mu.Unlock()
	for _, name := range forget {
		h.store.Forget(name, "grace_expired")
	}
	h.rejoinDead(now)
	for _, name := range retry {
		h.requestFull(name, "retry")
	}
}

func isConflict(err error) bool { return errors.Is(err, ErrNameConflict) }
