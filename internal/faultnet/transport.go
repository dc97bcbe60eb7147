package faultnet

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Counters are one node's traffic. Packets and bytes count what was handed
// to the network or delivered by it; Lost counts packets dropped by a
// fault, Overflow those that found the receiver's buffer full.
type Counters struct {
	PacketsSent, PacketsReceived, PacketsLost, PacketsOverflow uint64
	BytesSent, BytesReceived                                   uint64
	StreamsDialed, StreamsFailed, StreamsAccepted              uint64
	StreamBytesSent, StreamBytesReceived                       uint64
}

func (c Counters) add(d Counters) Counters {
	c.PacketsSent += d.PacketsSent
	c.PacketsReceived += d.PacketsReceived
	c.PacketsLost += d.PacketsLost
	c.PacketsOverflow += d.PacketsOverflow
	c.BytesSent += d.BytesSent
	c.BytesReceived += d.BytesReceived
	c.StreamsDialed += d.StreamsDialed
	c.StreamsFailed += d.StreamsFailed
	c.StreamsAccepted += d.StreamsAccepted
	c.StreamBytesSent += d.StreamBytesSent
	c.StreamBytesReceived += d.StreamBytesReceived
	return c
}

type counters struct {
	packetsSent, packetsReceived, packetsLost, packetsOverflow atomic.Uint64
	bytesSent, bytesReceived                                   atomic.Uint64
	streamsDialed, streamsFailed, streamsAccepted              atomic.Uint64
	streamBytesSent, streamBytesReceived                       atomic.Uint64
}

// Transport is one node's memberlist transport on a Network.
type Transport struct {
	net      *Network
	name     string
	addr     string
	udpAddr  *net.UDPAddr
	tcpAddr  *net.TCPAddr
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	shutdown chan struct{}
	once     sync.Once
	c        counters
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

func newTransport(n *Network, name, addr string) *Transport {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	ip := net.ParseIP(host)
	return &Transport{
		net:      n,
		name:     name,
		addr:     addr,
		udpAddr:  &net.UDPAddr{IP: ip, Port: p},
		tcpAddr:  &net.TCPAddr{IP: ip, Port: p},
		packetCh: make(chan *memberlist.Packet, n.opts.PacketBuffer),
		streamCh: make(chan net.Conn),
		shutdown: make(chan struct{}),
	}
}

// Addr is the transport's address host:port.
func (t *Transport) Addr() string { return t.addr }

func (t *Transport) down() bool {
	select {
	case <-t.shutdown:
		return true
	default:
		return false
	}
}

func (t *Transport) stats() Counters {
	c := &t.c
	return Counters{
		PacketsSent: c.packetsSent.Load(), PacketsReceived: c.packetsReceived.Load(),
		PacketsLost: c.packetsLost.Load(), PacketsOverflow: c.packetsOverflow.Load(),
		BytesSent: c.bytesSent.Load(), BytesReceived: c.bytesReceived.Load(),
		StreamsDialed: c.streamsDialed.Load(), StreamsFailed: c.streamsFailed.Load(),
		StreamsAccepted: c.streamsAccepted.Load(),
		StreamBytesSent: c.streamBytesSent.Load(), StreamBytesReceived: c.streamBytesReceived.Load(),
	}
}

// FinalAdvertiseAddr returns the transport's own address, whatever was
// configured.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.udpAddr.IP, t.udpAddr.Port, nil
}

// WriteTo sends a packet to addr.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet to a.Addr (the name is not used: the
// network routes by address, as a real one does). A packet to an address
// nobody has, or that a fault drops, is lost silently, as UDP is.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if t.down() {
		return now, errors.New("faultnet: transport shut down")
	}
	t.c.packetsSent.Add(1)
	t.c.bytesSent.Add(uint64(len(b)))
	dest, delays, ok := t.net.route(t, a.Addr)
	if !ok {
		return now, nil
	}
	if len(delays) == 0 {
		t.c.packetsLost.Add(1)
		return now, nil
	}
	for _, d := range delays {
		p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: t.udpAddr}
		if d <= 0 {
			dest.deliver(p)
			continue
		}
		t.net.later(dest, p, d)
	}
	return now, nil
}

// deliver hands a packet to the transport's memberlist, or drops it when
// the buffer is full or the transport is down.
func (t *Transport) deliver(p *memberlist.Packet) {
	if t.down() {
		return
	}
	p.Timestamp = time.Now()
	select {
	case t.packetCh <- p:
		t.c.packetsReceived.Add(1)
		t.c.bytesReceived.Add(uint64(len(p.Buf)))
	default:
		t.c.packetsOverflow.Add(1)
	}
}

// PacketCh returns the channel of received packets.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream to addr.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream to a.Addr: refused at once when
// nobody is there, hanging until timeout when a fault says so.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	t.c.streamsDialed.Add(1)
	fail := func(err error) (net.Conn, error) {
		t.c.streamsFailed.Add(1)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: tcpAddr(a.Addr), Err: err}
	}
	if t.down() {
		return fail(errors.New("transport shut down"))
	}
	dest, hang, delay := t.net.dialFate(t, a.Addr)
	if dest == nil || dest.down() {
		return fail(errors.New("connection refused"))
	}
	if hang {
		// memberlist passes what is left of a deadline: zero or less
		// means it has passed already.
		if timeout > 0 {
			t.sleep(timeout)
		}
		return fail(timeoutError{})
	}
	if delay > 0 {
		if timeout > 0 && delay >= timeout {
			t.sleep(timeout)
			return fail(timeoutError{})
		}
		t.sleep(delay)
	}
	p1, p2 := net.Pipe()
	local := &conn{Conn: p2, local: t.tcpAddr, remote: dest.tcpAddr, sent: &t.c.streamBytesSent, recv: &t.c.streamBytesReceived}
	remote := &conn{Conn: p1, local: dest.tcpAddr, remote: t.tcpAddr, sent: &dest.c.streamBytesSent, recv: &dest.c.streamBytesReceived}
	var wait <-chan time.Time
	if timeout > 0 {
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		wait = tm.C
	}
	select {
	case dest.streamCh <- remote:
		dest.c.streamsAccepted.Add(1)
		return local, nil
	case <-dest.shutdown:
	case <-t.shutdown:
	case <-wait:
	}
	p1.Close()
	p2.Close()
	return fail(errors.New("connection refused"))
}

// sleep waits d, or less when the transport or the network shuts down.
func (t *Transport) sleep(d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-t.shutdown:
	case <-t.net.done:
	}
}

// StreamCh returns the channel of accepted streams.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown takes the transport down: packets to it are dropped and dials
// refused. Its address is kept for the node's next transport.
func (t *Transport) Shutdown() error {
	t.once.Do(func() { close(t.shutdown) })
	return nil
}

func tcpAddr(addr string) net.Addr {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	p, _ := strconv.Atoi(port)
	return &net.TCPAddr{IP: net.ParseIP(host), Port: p}
}

// timeoutError is a dial that hung until its deadline.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ net.Error = timeoutError{}

// conn is one end of an in-memory stream, with real-looking addresses and
// byte counters.
type conn struct {
	net.Conn
	local, remote net.Addr
	sent, recv    *atomic.Uint64
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.recv.Add(uint64(n))
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(uint64(n))
	return n, err
}

// String names the transport in test logs.
func (t *Transport) String() string { return fmt.Sprintf("%s@%s", t.name, t.addr) }
