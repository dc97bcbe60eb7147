package heartbeat

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// SendOrder forwards an order to its target node over TCP. It waits for
// the send: at most memberlist's TCPTimeout when the target does not
// answer.
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

// flush sends the local changes made since the last send as one delta, to
// every alive peer, and plans the trailing digests. Main loop only: it
// owns lastGen and lastSent, and two flushes at once could send deltas
// out of order.
func (h *Heartbeat) flush() {
	gen, raw, _ := h.store.Local()
	if gen == h.lastGen {
		return
	}
	base, prev := h.lastGen, h.lastSent
	now := h.cfg.Now()
	h.lastGen, h.lastSent, h.lastSendT = gen, raw, now
	// A delta lost on its way is found by the next one (its base is not
	// what the peer holds); the last one of a burst has no next one: the
	// digests that follow it tell the peers what they should hold.
	h.digestRounds, h.digestAt = 2, now.Add(h.cfg.DigestDelay)
	ops, err := monitor.Diff(prev, raw, "")
	if err != nil {
		h.log.Error("diff local data", "err", err)
		return
	}
	msg := encode(msgDelta, deltaMsg{Node: h.cfg.Name, Boot: h.store.Boot(), Base: base, Gen: gen, Ops: ops})
	for _, n := range h.alivePeers() {
		h.c.deltasSent.Add(1)
		if len(msg) > h.udpLimit {
			h.enqueue(n.Name, outMsg{kind: msgDelta, msg: msg})
			continue
		}
		h.send(n, msg)
	}
}

// alivePeers returns a copy of the alive and suspect peers.
func (h *Heartbeat) alivePeers() []*memberlist.Node {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*memberlist.Node, 0, len(h.peers))
	for _, n := range h.peers {
		out = append(out, n)
	}
	return out
}

// send sends msg to n by UDP (best effort; never blocks for long).
func (h *Heartbeat) send(n *memberlist.Node, msg []byte) {
	if err := h.ml.SendBestEffort(n, msg); err != nil {
		h.c.sendErrors.Add(1)
		h.log.Debug("send failed", "node", n.Name, "err", err)
		return
	}
	h.c.bytesSent.Add(uint64(len(msg)))
}

// sendDigests sends the digest of the local data to every alive peer.
// Main loop.
func (h *Heartbeat) sendDigests() {
	d, _ := h.store.Digest(h.cfg.Name)
	msg := encode(msgDigest, digestMsg{Node: h.cfg.Name, Digest: d})
	for _, n := range h.alivePeers() {
		h.c.digestsSent.Add(1)
		h.send(n, msg)
	}
}

// sendFull queues the local data, whole, for node (sent by TCP, built when
// its turn comes, so it is the newest data then).
func (h *Heartbeat) sendFull(node, why string) {
	h.enqueue(node, outMsg{kind: msgFull, why: why})
}

// requestFull asks node for its whole data, unless a request is already
// outstanding and recent. via, when set, is a third node known to hold a
// newer copy: asked too when the owner did not answer the first request
// (or is not alive here): a bridge partition, where this node cannot reach
// the owner but a third node can.
func (h *Heartbeat) requestFull(node, why, via string) {
	h.mu.Lock()
	p, pending := h.pending[node]
	now := h.cfg.Now()
	if pending && now.Sub(p.at) < h.cfg.FullRetry {
		if via != "" && p.via == "" {
			p.via = via
			h.pending[node] = p
		}
		h.mu.Unlock()
		return
	}
	if via == "" {
		via = p.via
	}
	owner, ownerAlive := h.peers[node]
	relay, relayAlive := h.peers[via]
	toRelay := relayAlive && via != node && (pending || !ownerAlive)
	if !ownerAlive && !toRelay {
		h.mu.Unlock()
		return
	}
	h.pending[node] = pendingRequest{at: now, why: why, via: via}
	h.mu.Unlock()
	msg := encode(msgFullReq, fullReqMsg{From: h.cfg.Name, Of: node, Why: why})
	if ownerAlive {
		h.c.fullRequests.Add(1)
		h.send(owner, msg)
	}
	if toRelay {
		h.c.relayRequests.Add(1)
		h.send(relay, msg)
	}
}

// outMsg is one reliable send waiting in a peer's queue.
type outMsg struct {
	kind byte   // msgDelta, msgFull or msgLeave
	msg  []byte // nil for msgFull: built when sent
	why  string // msgFull: the reason the receiver is told
	of   string // msgFull: the node whose data (a relayed copy); "" for this node
}

// peerQueue holds the reliable (TCP) sends to one alive peer, in order,
// drained by a goroutine of its own while it holds anything: a peer that
// does not answer holds up its own queue only. Fields under Heartbeat.mu.
type peerQueue struct {
	node  memberlist.Node
	items []outMsg
	busy  bool // a sender goroutine drains it
	dead  bool // the peer died or left: drop everything, stop
}

func (q *peerQueue) kill() {
	q.dead = true
	q.items = nil
}

// whyFullOverflow tells a peer that its queue overflowed: the deltas it
// missed are replaced by this full copy.
const whyFullOverflow = "queue_overflow"

// enqueue adds m to the queue of peer name (made when needed; nothing when
// the peer is not alive) and starts its sender. A full copy replaces the
// deltas and the full copy queued before it: it holds all they carry. A
// queue at its limit gives up its deltas for one full copy.
func (h *Heartbeat) enqueue(name string, m outMsg) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	q := h.queues[name]
	if q == nil {
		n, ok := h.peers[name]
		if !ok {
			h.mu.Unlock()
			return
		}
		q = &peerQueue{node: *n}
		h.queues[name] = q
	}
	if m.kind != msgFull && len(q.items) >= h.cfg.QueueLimit {
		h.c.queueOverflows.Add(1)
		h.log.Warn("send queue full, queued deltas replaced by a full copy", "node", name, "limit", h.cfg.QueueLimit)
		q.items = superseded(q.items, outMsg{kind: msgFull, why: whyFullOverflow}, &h.c)
	}
	if m.kind == msgFull {
		q.items = superseded(q.items, m, &h.c)
	} else {
		q.items = append(q.items, m)
	}
	start := !q.busy
	if start {
		q.busy = true
		h.sendWG.Add(1)
	}
	h.mu.Unlock()
	if start {
		go h.drain(name, q)
	}
}

// superseded returns items followed by the full copy full, without what
// full makes useless: the full copies of the same node's data and, for
// this node's own data, its deltas. When full has no reason it takes the
// one of a full copy it replaces (a repair stays a repair).
func superseded(items []outMsg, full outMsg, c *counters) []outMsg {
	keep := items[:0]
	for _, it := range items {
		switch {
		case it.kind == msgFull && it.of == full.of:
			if full.why == "" {
				full.why = it.why
			}
			c.queueSuperseded.Add(1)
		case it.kind == msgDelta && full.of == "":
			c.queueSuperseded.Add(1)
		default:
			keep = append(keep, it)
		}
	}
	return append(keep, full)
}

// drain sends q's messages one at a time until it is empty or its peer
// is gone.
func (h *Heartbeat) drain(name string, q *peerQueue) {
	defer h.sendWG.Done()
	for {
		h.mu.Lock()
		if q.dead || len(q.items) == 0 {
			q.busy = false
			q.items = nil
			h.mu.Unlock()
			return
		}
		m := q.items[0]
		q.items = q.items[1:]
		node := q.node
		h.mu.Unlock()
		msg := m.msg
		switch {
		case m.kind == msgFull && m.of == "":
			gen, raw, _ := h.store.Local()
			msg = encode(msgFull, fullMsg{Node: h.cfg.Name, Boot: h.store.Boot(), Gen: gen, Data: raw, Why: m.why})
			h.c.fullSent.Add(1)
		case m.kind == msgFull:
			boot, gen, raw, ok := h.store.Copy(m.of)
			if !ok {
				continue
			}
			msg = encode(msgFull, fullMsg{Node: m.of, Boot: boot, Gen: gen, Data: raw, Why: m.why, Relay: h.cfg.Name})
			h.c.relaysSent.Add(1)
		}
		h.c.reliableSends.Add(1)
		if err := h.ml.SendReliable(&node, msg); err != nil {
			h.c.sendErrors.Add(1)
			h.log.Debug("reliable send failed", "node", name, "err", err)
			continue
		}
		h.c.bytesSent.Add(uint64(len(msg)))
	}
}

// queued reports whether any peer queue holds or sends something.
func (h *Heartbeat) queued() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, q := range h.queues {
		if q.busy {
			return true
		}
	}
	return false
}

// waitQueues waits until every peer queue is empty or deadline passes.
func (h *Heartbeat) waitQueues(deadline time.Time) bool {
	for h.queued() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
