package heartbeat

import (
	"agent/monitor"
)

// receive handles one user message. Called by memberlist's receive
// goroutines: it applies to the store and enqueues, never blocks.
func (h *Heartbeat) receive(buf []byte) {
	if h.cfg.DropIncoming != nil && h.cfg.DropIncoming(buf) {
		return
	}
	if len(buf) == 0 {
		h.c.badMessages.Add(1)
		return
	}
	switch buf[0] {
	case msgDelta:
		var m deltaMsg
		if err := decode(buf, &m); err != nil || m.Node == "" {
			h.bad(err)
			return
		}
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
	case msgFullReq:
		var m fullReqMsg
		if err := decode(buf, &m); err != nil || m.From == "" {
			h.bad(err)
			return
		}
		if m.Of == h.cfg.Name {
			h.work.push(task{kind: taskSendFull, name: m.From, why: m.Why})
		}
	case msgFull:
		var m fullMsg
		if err := decode(buf, &m); err != nil || m.Node == "" {
			h.bad(err)
			return
		}
		h.applyFull(m)
	case msgLeave:
		var m leaveMsg
		if err := decode(buf, &m); err != nil || m.Node == "" {
			h.bad(err)
			return
		}
		h.mu.Lock()
		h.leaving[m.Node] = h.cfg.Now()
		h.mu.Unlock()
	case msgOrder:
		var o Order
		if err := decode(buf, &o); err != nil || o.Target != h.cfg.Name {
			h.bad(err)
			return
		}
		h.c.ordersReceived.Add(1)
		h.work.push(task{kind: taskOrder, order: o})
	default:
		h.bad(nil)
	}
}

func (h *Heartbeat) applyFull(m fullMsg) {
	h.c.fullReceived.Add(1)
	h.mu.Lock()
	delete(h.pending, m.Node)
	h.mu.Unlock()
	held, _, had := h.store.Held(m.Node)
	ok, err := h.store.ApplyFull(m.Node, m.Boot, m.Gen, m.Data, m.Why)
	if err != nil {
		h.bad(err)
		return
	}
	if ok {
		h.c.fullApplied.Add(1)
		if had && held != 0 {
			h.c.resyncs.Add(1)
		}
	}
}

func (h *Heartbeat) bad(err error) {
	h.c.badMessages.Add(1)
	h.log.Debug("dropped malformed message", "err", err)
}
