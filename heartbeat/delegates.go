package heartbeat

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// delegate implements memberlist.Delegate: user messages and push/pull.
type delegate Heartbeat

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte { return nil }

func (d *delegate) NotifyMsg(buf []byte) {
	d.cfg.Bell.Ring()
	// memberlist reuses buf after we return; receive copies what it keeps.
	(*Heartbeat)(d).receive(append([]byte(nil), buf...))
}

// GetBroadcasts has nothing to add: deltas go to each peer directly. It
// rings the bell: memberlist calls it on each packet it sends (a probe,
// an ack, a gossip round), a wake-up other work may ride on.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	d.cfg.Bell.Ring()
	return nil
}

// LocalState carries this node's whole data in every push/pull: the
// anti-entropy that repairs any loss nobody noticed.
func (d *delegate) LocalState(join bool) []byte {
	h := (*Heartbeat)(d)
	gen, raw, _ := h.store.Local()
	return encode(msgState, fullMsg{Node: h.cfg.Name, Boot: h.store.Boot(), Gen: gen, Data: raw})
}

// MergeRemoteState takes the peer's data from a push/pull. On a join it
// is taken as a first copy. Otherwise it is a repair only if the copy
// held here is behind and stays so past a grace: push/pull often races
// with a delta in flight, which is no loss.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	h := (*Heartbeat)(d)
	kind, v, err := decodeMessage(buf)
	if err != nil || kind != msgState {
		h.bad(err)
		return
	}
	m := v.(*fullMsg)
	if join {
		h.applyFull(*m)
		return
	}
	dg, err := monitor.DigestOf(m.Boot, m.Gen, m.Data)
	if err != nil {
		h.bad(err)
		return
	}
	if h.store.Diverges(m.Node, dg) == "" {
		return
	}
	h.work.push(task{kind: taskCandidate, full: m, digest: dg})
}

// pingDelegate puts this node's digest on the acks of memberlist's
// probes: each prober learns, at no extra packet, whether its copy of the
// probed node's data is current.
type pingDelegate Heartbeat

var _ memberlist.PingDelegate = (*pingDelegate)(nil)

// ackOthers is how many other nodes' digests an ack carries.
const ackOthers = 2

// AckPayload returns this node's digest message, with the digests of the
// copies it holds of ackOthers other nodes, picked at random.
func (p *pingDelegate) AckPayload() []byte {
	h := (*Heartbeat)(p)
	dg, _ := h.store.Digest(h.cfg.Name)
	m := digestMsg{Node: h.cfg.Name, Digest: dg}
	// Sampled without listing every name: at 1000 nodes, sorting them
	// all on each ack was 6 % of a simulated cluster's CPU, on the path
	// that decides whether a node is suspected.
	for _, name := range h.store.SampleNodes(ackOthers, h.cfg.Name) {
		if d, ok := h.store.Digest(name); ok {
			m.More = append(m.More, nodeDigest{Node: name, Digest: d})
		}
	}
	return encode(msgDigest, m)
}

// NotifyPingComplete compares the probed node's digest with the copy
// held.
func (p *pingDelegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	h := (*Heartbeat)(p)
	h.cfg.Bell.Ring()
	if len(payload) == 0 {
		return // a peer of an older version
	}
	kind, v, err := decodeMessage(payload)
	if err != nil || kind != msgDigest {
		h.bad(err)
		return
	}
	m := v.(*digestMsg)
	if m.Node != other.Name {
		h.bad(nil)
		return
	}
	h.digest(m)
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
		if joined && p.Name != h.cfg.Name {
			if err := h.claimsLivePeer(p); err != nil {
				return err
			}
			continue
		}
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

// claimsLivePeer returns a name conflict when p, in a state merged from a
// joining node, claims the name of a peer alive here at another address:
// memberlist would refuse p itself, but the merge would still hand that
// node's data to this one under the live peer's name.
func (h *Heartbeat) claimsLivePeer(p *memberlist.Node) error {
	if p.State == memberlist.StateDead || p.State == memberlist.StateLeft {
		return nil
	}
	h.mu.Lock()
	known, ok := h.peers[p.Name]
	h.mu.Unlock()
	if !ok || known.Address() == p.Address() {
		return nil
	}
	h.log.Error("refused a node that uses the name of a live peer", "node", p.Name, "peer", known.Address(), "newcomer", p.Address())
	return fmt.Errorf("%w: %q is alive at %s, not %s", ErrNameConflict, p.Name, known.Address(), p.Address())
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
