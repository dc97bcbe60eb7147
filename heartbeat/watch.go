package heartbeat

import (
	"cmp"
	"errors"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// The crash watch finds a peer whose agent died on a host that is still
// up (killed, crashed, out of memory) sooner than memberlist's failure
// detector, which waits for some peer's probe of the dead node to go
// unanswered: at 30 nodes that wait alone is over a second in a few kills
// of a hundred. Each node keeps one idle TCP stream open to each of the
// watchSuccessors peers that follow it in name order. The kernel closes a
// dead process's streams at once; a stream that ends without a goodbye
// (the watched transport writes watchBye when it shuts down in order) is
// checked with a fresh connection to the peer's heartbeat port, and only
// a refused one (nothing listens there) counts: the peer is marked dead
// here and the other peers are told, each of which checks the same way
// before it believes it. A paused or slow agent keeps its streams and its
// port, and a partition or a host that lost power closes nothing: those
// are memberlist's to find, with its suspicion and refutation, as before.
// An idle stream wakes no thread: only the kernels' TCP keep-alives
// (Go's default, every 15 s) cross it, which also keep it alive through
// stateful firewalls.

// watchHello opens a watch stream: a first byte no memberlist stream
// begins with (its message types are 0 to 13 and 244, its encryption
// versions 0 and 1).
const watchHello byte = 0xa7

// watchBye is written on every held watch stream when the transport shuts
// down in order: the watcher then leaves the peer to memberlist.
const watchBye byte = 'b'

// watchHeldMax bounds the watch streams one transport holds.
const watchHeldMax = 64

// watchSuccessors is how many peers each node watches. With two, a node
// is still watched when its nearest watcher dies with it.
const watchSuccessors = 2

// farewellFor is how long a peer that said goodbye is not watched again
// (its port refuses connections by then: memberlist finds it dead, or it
// left), unless memberlist reports it back first.
const farewellFor = 30 * time.Second

// crashMsg tells peers that Node's agent at Addr is gone (its watch
// stream closed and its port refused a connection).
type crashMsg struct {
	Node string `json:"n"`
	Addr string `json:"a"`
	From string `json:"r"`
}

// watch is one watch stream, owned by the main loop; its goroutine owns
// the connection.
type watch struct {
	addr  string
	since time.Time

	mu      sync.Mutex
	conn    net.Conn
	stopped bool
}

// stop ends the watch: its goroutine returns without reporting.
func (w *watch) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.conn != nil {
		_ = w.conn.Close()
	}
	w.mu.Unlock()
}

// successors are the n names after self in name order among names, going
// round.
func successors(self string, names []string, n int) []string {
	names = slices.Clone(names)
	slices.Sort(names)
	i, _ := slices.BinarySearch(names, self)
	var out []string
	for k := 0; k < len(names) && len(out) < n; k++ {
		name := names[(i+k)%len(names)]
		if name != self {
			out = append(out, name)
		}
	}
	return out
}

// rewatch starts watching the successors not watched yet and stops the
// watches of peers that are no longer successors (or moved). Main loop.
func (h *Heartbeat) rewatch() {
	if h.nt == nil {
		return
	}
	h.watchRedial = false
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	addrs := make(map[string]string, len(h.peers))
	names := make([]string, 0, len(h.peers))
	for name, n := range h.peers {
		addrs[name] = n.Address()
		names = append(names, name)
	}
	h.mu.Unlock()
	want := successors(h.cfg.Name, names, watchSuccessors)
	for name, w := range h.watches {
		if !slices.Contains(want, name) || addrs[name] != w.addr {
			w.stop()
			delete(h.watches, name)
		}
	}
	now := h.cfg.Now()
	for name, at := range h.farewell {
		if now.Sub(at) >= farewellFor {
			delete(h.farewell, name)
		}
	}
	for _, name := range want {
		if _, ok := h.watches[name]; ok {
			continue
		}
		if _, ok := h.farewell[name]; ok {
			continue
		}
		w := &watch{addr: addrs[name], since: h.cfg.Now()}
		h.watches[name] = w
		h.sendWG.Add(1)
		go func() {
			defer h.sendWG.Done()
			crashed, bye := h.watchOver(w)
			h.work.push(task{kind: taskWatchEnd, name: name, watch: w, ok: crashed, bye: bye})
		}()
	}
}

// watchQuickEnds bounds the streams in a row that end within a second
// without a goodbye while the port still accepts: a peer that does not
// hold watch streams (another build) is then left to memberlist.
const watchQuickEnds = 3

// watchOver dials w's peer, holds the stream until it ends, and says
// whether the peer's agent is gone (its port refuses connections: a peer
// listens from before it joins, so a refusal means its agent is gone, or
// not back yet) or said goodbye. A stream that ends without a goodbye is
// dialled again at once: refused, the agent is gone; accepted, it is
// watched again. The kernel closes a dead process's streams before its
// listening socket, and a connection made in between is accepted by the
// kernel and then reset, so one accepted dial proves nothing.
func (h *Heartbeat) watchOver(w *watch) (crashed, bye bool) {
	for quick := 0; quick < watchQuickEnds; {
		c, err := h.dial(w.addr, h.dialTimeout)
		if err != nil {
			return errors.Is(err, syscall.ECONNREFUSED), false
		}
		start := time.Now()
		bye, stopped := h.holdWatch(w, c)
		if stopped || bye {
			return false, bye
		}
		if time.Since(start) < time.Second {
			quick++
		} else {
			quick = 0
		}
	}
	return false, false
}

// holdWatch sends the hello on c and reads until the stream ends or w is
// stopped; it says whether the peer said goodbye.
func (h *Heartbeat) holdWatch(w *watch, c net.Conn) (bye, stopped bool) {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		_ = c.Close()
		return false, true
	}
	w.conn = c
	w.mu.Unlock()
	if _, err := c.Write([]byte{watchHello}); err == nil {
		var buf [16]byte
		for !bye {
			n, err := c.Read(buf[:])
			bye = n > 0 && buf[n-1] == watchBye
			if err != nil {
				break
			}
		}
	}
	_ = c.Close()
	w.mu.Lock()
	stopped = w.stopped
	w.mu.Unlock()
	return bye, stopped
}

// refused says whether a connection to addr is refused: no process
// listens on the port of a host that answers.
func (h *Heartbeat) refused(addr string) bool {
	c, err := h.dial(addr, h.dialTimeout)
	if err == nil {
		_ = c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// watchEnded takes the end of a watch: a peer found gone is marked dead
// and announced. Main loop.
func (h *Heartbeat) watchEnded(t task) {
	if h.watches[t.name] != t.watch {
		return // stopped and replaced meanwhile
	}
	delete(h.watches, t.name)
	if t.bye {
		h.farewell[t.name] = h.cfg.Now()
		return
	}
	if t.ok {
		h.crash(t.name, t.watch.addr, "")
		return
	}
	// A watch that held a while and then broke (a restart between two
	// probes, a reset connection) is dialled again at the next refresh,
	// brought forward; one that never held waits for a later refresh.
	if h.cfg.Now().Sub(t.watch.since) > 10*time.Second {
		h.watchRedial = true
	}
}

// crash marks name dead when it is still alive here at addr. When this
// node's own watch found it (by is ""), it tells the other peers; by is
// otherwise the peer whose report this node checked. Main loop.
func (h *Heartbeat) crash(name, addr, by string) {
	h.mu.Lock()
	n, alive := h.peers[name]
	var node memberlist.Node
	if alive {
		node = *n
	}
	_, leaving := h.leaving[name]
	h.mu.Unlock()
	if !alive || node.Address() != addr || leaving {
		return // gone already, moved, or leaving in order (memberlist says left)
	}
	h.c.crashesFound.Add(1)
	h.log.Warn("peer's agent is gone: its watch stream closed and its heartbeat port refuses connections", "node", name, "addr", addr, "reported_by", cmp.Or(by, h.cfg.Name))
	h.crashed[name] = addr
	if by == "" {
		msg := encode(msgCrash, crashMsg{Node: name, Addr: addr, From: h.cfg.Name})
		for _, p := range h.alivePeers() {
			if p.Name != name {
				h.send(p, msg)
			}
		}
	}
	h.member(node, monitor.StateDead)
}

// crashReported checks the report of peer by that name's agent is gone,
// with a connection of this node's own. Main loop.
func (h *Heartbeat) crashReported(name, addr, by string) {
	h.mu.Lock()
	n, alive := h.peers[name]
	h.mu.Unlock()
	if !alive || n.Address() != addr || h.checking[name] {
		return
	}
	h.checking[name] = true
	h.sendWG.Add(1)
	go func() {
		defer h.sendWG.Done()
		gone := h.refused(addr)
		h.work.push(task{kind: taskCrashChecked, name: name, why: addr, via: by, ok: gone})
	}()
}

// crashChecked takes the result of crashReported's check. Main loop.
func (h *Heartbeat) crashChecked(t task) {
	delete(h.checking, t.name)
	if t.ok {
		h.crash(t.name, t.why, cmp.Or(t.via, "?"))
	}
}

// recheckCrashed looks again at the peers this node marked dead on its
// own: once memberlist has declared one dead too, memberlist reports its
// return as usual; while memberlist still holds it alive, a peer whose
// port accepts connections again (restarted before any probe missed it:
// memberlist then reports nothing) is taken back as alive. Main loop,
// from refresh.
func (h *Heartbeat) recheckCrashed() {
	if len(h.crashed) == 0 {
		return
	}
	alive := map[string]memberlist.Node{}
	for _, n := range h.ml.Members() {
		alive[n.Name] = *n
	}
	for name := range h.crashed {
		n, ok := alive[name]
		if !ok {
			delete(h.crashed, name)
			continue
		}
		if h.checking[name] {
			continue
		}
		h.checking[name] = true
		h.sendWG.Add(1)
		go func() {
			defer h.sendWG.Done()
			back := h.answers(n.Address())
			h.work.push(task{kind: taskCrashBack, name: name, node: n, ok: back})
		}()
	}
}

// crashBack takes recheckCrashed's result. Main loop.
func (h *Heartbeat) crashBack(t task) {
	delete(h.checking, t.name)
	if _, ok := h.crashed[t.name]; !ok || !t.ok {
		return
	}
	delete(h.crashed, t.name)
	h.log.Info("peer's agent is back before memberlist missed it", "node", t.name, "addr", t.node.Address())
	h.member(t.node, monitor.StateAlive)
}

// stopWatches ends every watch. Close, after the main loop returned.
func (h *Heartbeat) stopWatches() {
	for name, w := range h.watches {
		w.stop()
		delete(h.watches, name)
	}
}
