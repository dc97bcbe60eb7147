package faultnet

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Any matches every node in a rule's from or to.
const Any = "*"

// Port is the port of every address of the network.
const Port = 7946

// Fault is what happens on a directed link.
type Fault struct {
	// Loss is the probability (0 to 1) that a packet is lost, or that a
	// stream dial hangs until its timeout; 1 cuts the link.
	Loss float64
	// Duplicate is the probability that a packet is delivered twice.
	Duplicate float64
	// Delay is added to every packet and stream dial.
	Delay time.Duration
	// Jitter adds a uniform random delay in [0, Jitter) to each packet,
	// which reorders packets sent closer together than that.
	Jitter time.Duration
}

func (f Fault) zero() bool { return f == Fault{} }

// merge combines two rules that match the same link: losses compound,
// the larger duplication and delays win.
func (f Fault) merge(g Fault) Fault {
	return Fault{
		Loss:      1 - (1-f.Loss)*(1-g.Loss),
		Duplicate: max(f.Duplicate, g.Duplicate),
		Delay:     max(f.Delay, g.Delay),
		Jitter:    max(f.Jitter, g.Jitter),
	}
}

// Options tune a Network.
type Options struct {
	// PacketBuffer is the capacity of each transport's packet channel;
	// default 512. Packets that find it full are dropped (Overflow).
	PacketBuffer int
}

type link struct{ from, to string }

// Network is a set of in-memory transports and the faults between them.
type Network struct {
	opts Options
	seed uint64

	mu     sync.Mutex
	rng    *rand.Rand
	byAddr map[string]*Transport
	all    []*Transport      // every transport made, for the counters
	addrOf map[string]string // node name → its address, kept across restarts
	count  int
	rules  map[link]Fault
	def    Fault
	closed bool

	// Delayed packets, delivered by one goroutine.
	queue   packetHeap
	seq     uint64
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}
}

// New makes a network whose random choices follow seed.
func New(seed uint64, opts Options) *Network {
	if opts.PacketBuffer <= 0 {
		opts.PacketBuffer = 512
	}
	n := &Network{
		opts:    opts,
		seed:    seed,
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		byAddr:  map[string]*Transport{},
		addrOf:  map[string]string{},
		rules:   map[link]Fault{},
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go n.deliverLoop()
	return n
}

// Seed is the seed the network was made with.
func (n *Network) Seed() uint64 { return n.seed }

// Close stops the delivery goroutine and drops the packets still delayed.
// Transports stay usable, without delays. Safe to call twice.
func (n *Network) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.queue = nil
	n.mu.Unlock()
	close(n.done)
	<-n.stopped
}

// NewTransport makes a transport for node name. A name seen before gets
// its previous address back (a restarted node); a name whose transport is
// still up gets a new address (two nodes claiming one name).
func (n *Network) NewTransport(name string) *Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	addr, ok := n.addrOf[name]
	if !ok || (n.byAddr[addr] != nil && !n.byAddr[addr].down()) {
		n.count++
		k := n.count
		addr = net.JoinHostPort(fmt.Sprintf("10.%d.%d.%d", k>>16&255, k>>8&255, k&255), fmt.Sprint(Port))
		if !ok {
			n.addrOf[name] = addr
		}
	}
	t := newTransport(n, name, addr)
	n.byAddr[addr] = t
	n.all = append(n.all, t)
	return t
}

// Install sets c.Transport to a new transport for c.Name: the one-line way
// to put a memberlist on this network (for instance from a Tune hook).
func (n *Network) Install(c *memberlist.Config) { c.Transport = n.NewTransport(c.Name) }

// Addr is the address of node name ("" when it never had a transport).
func (n *Network) Addr(name string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrOf[name]
}

// Set puts fault f on the link from → to, replacing the rule there. Each
// end is a node name, an address (which tells apart two nodes of one
// name) or Any. A zero Fault removes the rule.
func (n *Network) Set(from, to string, f Fault) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f.zero() {
		delete(n.rules, link{from, to})
		return
	}
	n.rules[link{from, to}] = f
}

// SetDefault puts f on every link, under the rules set for links.
func (n *Network) SetDefault(f Fault) {
	n.mu.Lock()
	n.def = f
	n.mu.Unlock()
}

// Cut drops everything from → to (one way).
func (n *Network) Cut(from, to string) { n.Set(from, to, Fault{Loss: 1}) }

// Partition cuts, both ways, every node of a group from every node of the
// other groups. Nodes in no group keep their links.
func (n *Network) Partition(groups ...[]string) {
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.Cut(a, b)
				}
			}
		}
	}
}

// Isolate cuts node name from every other node, both ways: a black hole.
func (n *Network) Isolate(name string) {
	n.Cut(name, Any)
	n.Cut(Any, name)
}

// Heal removes every rule and the default fault: the network is whole.
func (n *Network) Heal() {
	n.mu.Lock()
	n.rules = map[link]Fault{}
	n.def = Fault{}
	n.mu.Unlock()
}

// fault returns the effective fault from → to: every rule that names
// either end by name, by address or as Any applies. Lock held.
func (n *Network) fault(from, to *Transport) Fault {
	f := n.def
	for _, a := range [...]string{from.name, from.addr, Any} {
		for _, b := range [...]string{to.name, to.addr, Any} {
			if r, ok := n.rules[link{a, b}]; ok {
				f = f.merge(r)
			}
		}
	}
	return f
}

// Stats returns the counters of the transports of node name, summed over
// its restarts.
func (n *Network) Stats(name string) Counters {
	n.mu.Lock()
	defer n.mu.Unlock()
	var c Counters
	for _, t := range n.all {
		if t.name == name {
			c = c.add(t.stats())
		}
	}
	return c
}

// Total returns the counters summed over every transport.
func (n *Network) Total() Counters {
	n.mu.Lock()
	defer n.mu.Unlock()
	var c Counters
	for _, t := range n.all {
		c = c.add(t.stats())
	}
	return c
}

// route decides the fate of one packet from t to addr: how many copies
// and after which delays. ok is false when nobody has that address.
func (n *Network) route(t *Transport, addr string) (dest *Transport, delays []time.Duration, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	dest = n.byAddr[addr]
	if dest == nil {
		return nil, nil, false
	}
	f := n.fault(t, dest)
	if f.Loss > 0 && n.rng.Float64() < f.Loss {
		return dest, nil, true
	}
	copies := 1
	if f.Duplicate > 0 && n.rng.Float64() < f.Duplicate {
		copies = 2
	}
	for range copies {
		d := f.Delay
		if f.Jitter > 0 {
			d += time.Duration(n.rng.Int64N(int64(f.Jitter)))
		}
		delays = append(delays, d)
	}
	return dest, delays, true
}

// dialFate decides a stream dial from t to addr: the target (nil: nobody
// there), whether it hangs until the timeout, and the delay otherwise.
func (n *Network) dialFate(t *Transport, addr string) (dest *Transport, hang bool, delay time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	dest = n.byAddr[addr]
	if dest == nil {
		return nil, false, 0
	}
	fwd, back := n.fault(t, dest), n.fault(dest, t)
	if fwd.Loss >= 1 || back.Loss >= 1 || (fwd.Loss > 0 && n.rng.Float64() < fwd.Loss) {
		return dest, true, 0
	}
	delay = fwd.Delay
	if fwd.Jitter > 0 {
		delay += time.Duration(n.rng.Int64N(int64(fwd.Jitter)))
	}
	return dest, false, delay
}

// later queues a packet for delivery after d.
func (n *Network) later(dest *Transport, p *memberlist.Packet, d time.Duration) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.seq++
	heap.Push(&n.queue, &delayed{at: time.Now().Add(d), seq: n.seq, dest: dest, p: p})
	first := n.queue[0].seq == n.seq
	n.mu.Unlock()
	if first {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// deliverLoop delivers delayed packets when they fall due.
func (n *Network) deliverLoop() {
	defer close(n.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.mu.Lock()
		var due []*delayed
		now := time.Now()
		for len(n.queue) > 0 && !n.queue[0].at.After(now) {
			due = append(due, heap.Pop(&n.queue).(*delayed))
		}
		wait := time.Hour
		if len(n.queue) > 0 {
			wait = n.queue[0].at.Sub(now)
		}
		n.mu.Unlock()
		for _, d := range due {
			d.dest.deliver(d.p)
		}
		timer.Reset(wait)
		select {
		case <-n.done:
			return
		case <-n.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

type delayed struct {
	at   time.Time
	seq  uint64
	dest *Transport
	p    *memberlist.Packet
}

// packetHeap orders delayed packets by due time, then by send order.
type packetHeap []*delayed

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(*delayed)) }
func (h *packetHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}
