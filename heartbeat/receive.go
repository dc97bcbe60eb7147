package heartbeat

import (
	"time"

	"agent/monitor"
)

// receive handles one user message. Called by memberlist's receive
// goroutines: it applies to the store and enqueues, never blocks.
func (h *Heartbeat) receive(buf []byte) {
	if h.cfg.DropIncoming != nil && h.cfg.DropIncoming(buf) {
		return
	}
	kind, v, err := decodeMessage(buf)
	if err != nil || kind == msgState {
		h.bad(err)
		return
	}
	switch m := v.(type) {
	case *deltaMsg:
		h.c.deltasReceived.Add(1)
		res, why := h.store.ApplyDelta(m.Node, m.Boot, m.Base, m.Gen, m.Ops)
		switch res {
		case monitor.Applied:
			h.c.deltasApplied.Add(1)
		case monitor.Stale:
			h.c.deltasStale.Add(1)
		case monitor.NeedFull:
			h.work.push(task{kind: taskRequestFull, name: m.Node, why: why})
		}
	case *fullReqMsg:
		of := m.Of
		if of == h.cfg.Name {
			of = ""
		}
		h.work.push(task{kind: taskSendFull, name: m.From, why: m.Why, of: of})
	case *fullMsg:
		h.applyFull(*m)
	case *leaveMsg:
		h.mu.Lock()
		h.leaving[m.Node] = h.cfg.Now()
		h.mu.Unlock()
	case *Order:
		if m.Target != h.cfg.Name {
			h.bad(nil)
			return
		}
		h.c.ordersReceived.Add(1)
		h.work.push(task{kind: taskOrder, order: *m})
	case *digestMsg:
		h.digest(m)
	case *crashMsg:
		h.work.push(task{kind: taskCrashReport, name: m.Node, why: m.Addr, via: m.From})
	}
}

// digest takes a peer's digest of its own data (a message, or an ack's
// payload) and those of the copies it holds of others': when a copy held
// here differs, the main loop looks into it. Third nodes' digests count
// only for nodes alive here: the data of a dead node, forgotten here, must
// not come back through a peer that has not forgotten it yet.
func (h *Heartbeat) digest(m *digestMsg) {
	h.c.digestsReceived.Add(1)
	if h.store.Diverges(m.Node, m.Digest) != "" {
		h.work.push(task{kind: taskDigest, name: m.Node, digest: m.Digest})
	}
	for _, o := range m.More {
		if o.Node == "" || o.Node == h.cfg.Name || o.Node == m.Node || !h.isAlive(o.Node) {
			continue
		}
		if h.store.Diverges(o.Node, o.Digest) != "" {
			h.work.push(task{kind: taskDigest, name: o.Node, via: m.Node, digest: o.Digest})
		}
	}
}

// isAlive says whether node is an alive (or suspect) peer here.
func (h *Heartbeat) isAlive(node string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.peers[node]
	return ok
}

// isRepair says whether a full copy taken for this reason repaired a
// divergence (a lost or failed delta) rather than brought a first copy or
// a new run's data.
func isRepair(why string) bool {
	switch why {
	case "", monitor.DivergeUnknown, monitor.DivergeRestart:
		return false
	}
	return true
}

func (h *Heartbeat) applyFull(m fullMsg) {
	h.c.fullReceived.Add(1)
	if m.Relay != "" && m.Relay != m.Node && !h.isAlive(m.Node) {
		return // a relayed copy of a node dead (or forgotten) here
	}
	h.mu.Lock()
	delete(h.pending, m.Node)
	h.mu.Unlock()
	_, _, had := h.store.Held(m.Node)
	ok, err := h.store.ApplyFull(m.Node, m.Boot, m.Gen, m.Data, m.Why)
	if err != nil {
		h.bad(err)
		return
	}
	if ok {
		h.c.fullApplied.Add(1)
		if had && isRepair(m.Why) {
			h.c.resyncs.Add(1)
		}
	}
}

func (h *Heartbeat) bad(err error) {
	h.c.badMessages.Add(1)
	h.log.Debug("dropped malformed message", "err", err)
}

// Reasons of the full copies asked for or taken after a divergence.
const (
	// whyDigest: a digest showed the copy held behind or different.
	whyDigest = "digest"
	// whyAntiEntropy: memberlist's push/pull carried newer data.
	whyAntiEntropy = "anti_entropy"
)

// check is a divergence seen and not acted upon yet: a delta may be in
// flight that makes it moot. Main loop.
type check struct {
	at     time.Time
	digest monitor.Digest // what the owner (or via) said it holds
	via    string         // the third node the digest came from, if any
	full   *fullMsg       // the owner's data, from a push/pull
}

// divergence acts on a digest d that differs from the copy held, with
// the peer's whole data when it came by push/pull (full, whose digest d
// is). via is the third node that holds the copy d describes, when it is
// not the owner's word. A copy behind gets a grace for the delta in
// flight; anything else is acted upon at once. Main loop.
func (h *Heartbeat) divergence(node, via string, d monitor.Digest, full *fullMsg) {
	why := h.store.Diverges(node, d)
	switch why {
	case "":
		return
	case monitor.DivergeBehind:
		c := h.checks[node]
		if c == nil {
			c = &check{at: h.cfg.Now().Add(h.cfg.DigestGrace)}
			h.checks[node] = c
		}
		// Keep the newest news, and the push/pull data when it is that.
		switch {
		case full != nil:
			c.digest, c.full = d, full
		case c.full == nil && d.Gen >= c.digest.Gen, d.Gen > c.digest.Gen:
			c.digest, c.full = d, nil
		}
		if via != "" && (c.via == "" || d.Gen >= c.digest.Gen) {
			c.via = via
		}
		return
	}
	h.act(node, why, via, full)
}

// recheck runs a divergence check whose grace is over. Main loop.
func (h *Heartbeat) recheck(node string, c *check) {
	if why := h.store.Diverges(node, c.digest); why != "" {
		h.act(node, why, c.via, c.full)
	}
}

// act repairs a divergence: takes the push/pull data when there is some,
// else asks the owner for its data (and via, when the owner does not
// answer). Main loop.
func (h *Heartbeat) act(node, why, via string, full *fullMsg) {
	reason := why
	switch why {
	case monitor.DivergeBehind, monitor.DivergeDiffers:
		reason = whyDigest
		if full != nil {
			reason = whyAntiEntropy
		}
		h.c.divergences.Add(1)
	}
	if full != nil {
		m := *full
		m.Why = reason
		if !isRepair(reason) {
			m.Why = ""
		}
		h.applyFull(m)
		return
	}
	h.requestFull(node, reason, via)
}
