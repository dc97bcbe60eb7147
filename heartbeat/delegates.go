package heartbeat

import (
	"fmt"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// delegate implements memberlist.Delegate: user messages and push/pull.
type delegate Heartbeat

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte { return nil }

func (d *delegate) NotifyMsg(buf []byte) {
	// memberlist reuses buf after we return; receive copies what it keeps.
	(*Heartbeat)(d).receive(append([]byte(nil), buf...))
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState carries this node's whole data in every push/pull: the
// anti-entropy that repairs any delta loss nobody noticed.
func (d *delegate) LocalState(join bool) []byte {
	h := (*Heartbeat)(d)
	gen, raw, _ := h.store.Local()
	return encode(msgState, fullMsg{Node: h.cfg.Name, Boot: h.store.Boot(), Gen: gen, Data: raw})
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	h := (*Heartbeat)(d)
	var m fullMsg
	if err := decode(buf, &m); err != nil || m.Node == "" {
		h.bad(err)
		return
	}
	if !join {
		m.Why = "anti_entropy"
	}
	h.applyFull(m)
}

// eventDelegate turns membership changes into main-loop work.
type eventDelegate Heartbeat

var _ memberlist.EventDelegate = (*eventDelegate)(nil)

func (e *eventDelegate) NotifyJoin(n *memberlist.Node) {
	(*Heartbeat)(e).work.push(task{kind: taskMember, node: *n, state: monitor.StateAlive})
}

// NotifyLeave reports a node gone. memberlist does not say whether it
// left or died (the Node's State field is not kept up to date), so it is
// reported dead here and member() turns it into left when the peer sent
// its leave notice first.
func (e *eventDelegate) NotifyLeave(n *memberlist.Node) {
	(*Heartbeat)(e).work.push(task{kind: taskMember, node: *n, state: monitor.StateDead})
}

func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) {
	(*Heartbeat)(e).work.push(task{kind: taskMember, node: *n, state: monitor.StateAlive})
}

// mergeDelegate refuses to merge with a cluster where a live node already
// uses this node's name at another address.
type mergeDelegate Heartbeat

var _ memberlist.MergeDelegate = (*mergeDelegate)(nil)

func (m *mergeDelegate) NotifyMerge(peers []*memberlist.Node) error {
	h := (*Heartbeat)(m)
	me := h.addr.Load()
	if me == nil {
		// Reached while memberlist is still starting (peers rejoining
		// this address): the check runs again on this node's own join.
		return nil
	}
	joined := h.joined.Load()
	for _, p := range peers {
		if p.Name != h.cfg.Name || p.State == memberlist.StateLeft || p.Address() == *me {
			continue
		}
		if p.State == memberlist.StateDead {
			// The cluster holds this name dead at another address: a
			// restart elsewhere may take it over, unless the holder in
			// fact lives and was only judged dead (a process starved of
			// CPU). Whatever listens there decides it; the kernel
			// accepts a connection even for a process too slow to
			// answer a probe.
			if joined || !h.answers(p.Address()) {
				continue
			}
		}
		err := fmt.Errorf("%w: %q is used by %s, this node is %s", ErrNameConflict, p.Name, p.Address(), *me)
		if joined {
			// We are the established node: the newcomer is refused.
			h.log.Error("refused a node that uses this node's name", "node", p.Name, "newcomer", p.Address())
			return err
		}
		h.log.Error("cannot join: this node's name is already used in the cluster", "node", p.Name, "other", p.Address())
		h.conflict.CompareAndSwap(nil, &err)
		return err
	}
	return nil
}

// answers says whether something accepts a heartbeat connection at addr.
func (h *Heartbeat) answers(addr string) bool {
	c, err := h.dial(addr, h.dialTimeout)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
