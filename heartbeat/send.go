package heartbeat

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// SendOrder forwards an order to its target node over TCP.
func (h *Heartbeat) SendOrder(o Order) error {
	h.mu.Lock()
	n, ok := h.peers[o.Target]
	h.mu.Unlock()
	if !ok {
		// memberlist may know the peer before the main loop has
		// processed its join.
		for _, m := range h.ml.Members() {
			if m.Name == o.Target {
				n, ok = m, true
				break
			}
		}
	}
	if !ok {
		return fmt.Errorf("node %s is not an alive member of the cluster", o.Target)
	}
	o.From = h.cfg.Name
	return h.ml.SendReliable(n, encode(msgOrder, o))
}

func (h *Heartbeat) lastSendTime() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastSendT
}

// flush sends the local changes made since the last send as one delta.
func (h *Heartbeat) flush() {
	gen, raw, _ := h.store.Local()
	h.mu.Lock()
	if gen == h.lastGen {
		h.mu.Unlock()
		return
	}
	base, prev := h.lastGen, h.lastSent
	h.lastGen, h.lastSent, h.lastSendT = gen, raw, h.cfg.Now()
	targets := make([]*memberlist.Node, 0, len(h.peers))
	for _, n := range h.peers {
		targets = append(targets, n)
	}
	h.mu.Unlock()
	ops, err := monitor.Diff(prev, raw, "")
	if err != nil {
		h.log.Error("diff local data", "err", err)
		return
	}
	msg := encode(msgDelta, deltaMsg{Node: h.cfg.Name, Boot: h.store.Boot(), Base: base, Gen: gen, Ops: ops})
	for _, n := range targets {
		h.c.deltasSent.Add(1)
		if len(msg) > h.udpLimit {
			h.reliable.push(task{kind: taskSend, node: *n, msg: msg})
			continue
		}
		h.send(n, msg, false)
	}
}

func (h *Heartbeat) send(n *memberlist.Node, msg []byte, reliable bool) {
	var err error
	if reliable {
		h.c.reliableSends.Add(1)
		err = h.ml.SendReliable(n, msg)
	} else {
		err = h.ml.SendBestEffort(n, msg)
	}
	if err != nil {
		h.c.sendErrors.Add(1)
		h.log.Debug("send failed", "node", n.Name, "err", err)
		return
	}
	h.c.bytesSent.Add(uint64(len(msg)))
}

func (h *Heartbeat) reliableLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.reliable.ready():
			for _, t := range h.reliable.drain() {
				if ctx.Err() != nil {
					return
				}
				n := t.node
				h.send(&n, t.msg, true)
			}
		}
	}
}

// sendFull sends the local data whole to node by TCP.
func (h *Heartbeat) sendFull(node, why string) {
	h.mu.Lock()
	n, ok := h.peers[node]
	h.mu.Unlock()
	if !ok {
		return
	}
	gen, raw, _ := h.store.Local()
	msg := encode(msgFull, fullMsg{Node: h.cfg.Name, Boot: h.store.Boot(), Gen: gen, Data: raw, Why: why})
	h.c.fullSent.Add(1)
	h.reliable.push(task{kind: taskSend, node: *n, msg: msg})
}

// requestFull asks node for its whole data, unless a request is already
// outstanding and recent.
func (h *Heartbeat) requestFull(node, why string) {
	h.mu.Lock()
	n, ok := h.peers[node]
	sent, pending := h.pending[node]
	now := h.cfg.Now()
	if !ok || (pending && now.Sub(sent) < h.cfg.FullRetry) {
		h.mu.Unlock()
		return
	}
	h.pending[node] = now
	h.mu.Unlock()
	h.c.fullRequests.Add(1)
	h.send(n, encode(msgFullReq, fullReqMsg{From: h.cfg.Name, Of: node, Why: why}), false)
}
