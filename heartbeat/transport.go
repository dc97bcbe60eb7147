package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// udpReadBuffer is the largest UDP payload; one such buffer per transport
// is read into, and each packet is copied out at its own size.
const udpReadBuffer = 65536

// udpSocketBuffer is the receive window asked of the kernel, halved until
// the kernel takes it (as memberlist's own transport does).
const udpSocketBuffer = 2 * 1024 * 1024

// errFamily is a destination the socket's family cannot reach: an IPv6
// address from an IPv4 socket.
var errFamily = errors.New("IPv6 destination on an IPv4 heartbeat socket")

// netTransport is the heartbeat's memberlist transport. Streams are plain
// TCP, dialled from the bind address and given up when the heartbeat
// closes. Packets differ from memberlist's own transport in two ways, both
// for an idle agent's cost:
//
//   - each packet is read into one reused 64 KiB buffer and copied out at
//     its size, where memberlist's transport allocates 64 KiB per packet
//     (most of an idle agent's garbage);
//   - on Linux, packets are read and written with raw system calls on the
//     non-blocking socket (udp_linux.go). Go's ordinary system-call entry
//     wakes the runtime's monitor thread (sysmon) out of its deep sleep,
//     which then polls every 20 µs until the agent is idle again: several
//     wake-ups per packet on a machine that is otherwise asleep. A
//     non-blocking call never blocks, so it needs no such watch.
type netTransport struct {
	ctx    context.Context // dials give up when it ends
	logger *log.Logger

	tcp   *net.TCPListener
	udp   *net.UDPConn
	raw   syscall.RawConn
	v6    bool         // the UDP socket is AF_INET6 (a wildcard bind is dual-stack)
	local *net.TCPAddr // where streams are dialled from; nil for a wildcard bind

	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	// held are the watch streams peers keep open to this node (watch.go),
	// told goodbye by Shutdown; sorting, the streams whose first byte is
	// awaited, closed by Shutdown.
	mu      sync.Mutex
	held    map[net.Conn]struct{}
	sorting map[net.Conn]struct{}
}

var _ memberlist.NodeAwareTransport = (*netTransport)(nil)

// listenNet binds TCP and UDP on addr:port (port 0: a free port, the same
// for both) and starts the two listening goroutines, stopped by Shutdown.
func listenNet(ctx context.Context, addr string, port int, logger *log.Logger) (*netTransport, error) {
	if addr == "" {
		addr = "0.0.0.0"
	}
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	ip := net.ParseIP(addr)
	if ip == nil {
		return nil, fmt.Errorf("bind address %q is not an IP address", addr)
	}
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, err
	}
	port = tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		_ = tcp.Close()
		return nil, err
	}
	t := &netTransport{
		ctx: ctx, logger: logger, tcp: tcp, udp: udp,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
		held:    map[net.Conn]struct{}{},
		sorting: map[net.Conn]struct{}{},
	}
	if err := t.setup(ip); err != nil {
		_ = tcp.Close()
		_ = udp.Close()
		return nil, err
	}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.readLoop()
	return t, nil
}

// setup sizes the UDP receive window and learns the socket's family.
func (t *netTransport) setup(ip net.IP) error {
	var err error
	for size := udpSocketBuffer; size > 0; size /= 2 {
		if err = t.udp.SetReadBuffer(size); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("size the UDP receive buffer: %w", err)
	}
	if t.raw, err = t.udp.SyscallConn(); err != nil {
		return err
	}
	var sa syscall.Sockaddr
	var serr error
	if err := t.raw.Control(func(fd uintptr) { sa, serr = syscall.Getsockname(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("UDP socket address: %w", serr)
	}
	_, t.v6 = sa.(*syscall.SockaddrInet6)
	if !ip.IsUnspecified() {
		t.local = &net.TCPAddr{IP: ip}
	}
	return nil
}

// GetAutoBindPort is the port bound, the one the kernel chose for port 0.
func (t *netTransport) GetAutoBindPort() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is ip:port when ip is given; otherwise the bound
// address, or a private address of the host for a wildcard bind.
func (t *netTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		a := net.ParseIP(ip)
		if a == nil {
			return nil, 0, fmt.Errorf("advertise address %q is not an IP address", ip)
		}
		if a4 := a.To4(); a4 != nil {
			a = a4
		}
		return a, port, nil
	}
	bound := t.tcp.Addr().(*net.TCPAddr).IP
	if !bound.IsUnspecified() {
		return bound, t.GetAutoBindPort(), nil
	}
	priv, err := sockaddr.GetPrivateIP()
	if err != nil {
		return nil, 0, fmt.Errorf("find a private address to advertise: %w", err)
	}
	a := net.ParseIP(priv)
	if a == nil {
		return nil, 0, errors.New("no private IP address found: set the heartbeat's advertise address")
	}
	return a, t.GetAutoBindPort(), nil
}

// WriteTo sends one packet to addr ("ip:port").
func (t *netTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends one packet to a.Addr. An address that is not a
// literal ip:port (a host name, a zoned IPv6 address) goes through Go's
// resolver and socket calls.
func (t *netTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if ap, err := netip.ParseAddrPort(a.Addr); err == nil && ap.Addr().Zone() == "" && len(b) > 0 {
		if err := t.sendRaw(b, ap); err != nil {
			return time.Now(), t.opError("write", net.UDPAddrFromAddrPort(ap), "sendto", err)
		}
		return time.Now(), nil
	}
	ua, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, ua)
	return time.Now(), err
}

// opError is err as Go's own socket calls return it: a *net.OpError (a
// bare error, not wrapped: memberlist checks the type itself to tell a
// send that failed, such as one refused by a firewall rule, from a local
// fault, and only the first lets a probe go on to suspicion).
func (t *netTransport) opError(op string, addr net.Addr, call string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = os.NewSyscallError(call, errno)
	}
	return &net.OpError{Op: op, Net: "udp", Source: t.udp.LocalAddr(), Addr: addr, Err: err}
}

// PacketCh delivers every packet received, each in a buffer of its own.
func (t *netTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// StreamCh delivers every accepted stream.
func (t *netTransport) StreamCh() <-chan net.Conn { return t.streams }

// DialTimeout dials a stream to addr, giving up when the heartbeat closes.
func (t *netTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout dials a stream to a.Addr from the bind address (so a
// connection comes from the heartbeat's address, not whichever the kernel
// picks: on loopback 127.0.0.1 for every 127.x destination), giving up
// after timeout or when the heartbeat closes.
func (t *netTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if t.local != nil {
		d.LocalAddr = t.local
	}
	return d.DialContext(t.ctx, "tcp", a.Addr)
}

// Shutdown says goodbye on the watch streams held, closes both sockets
// and waits for the listening goroutines.
func (t *netTransport) Shutdown() error {
	t.close(true)
	t.wg.Wait()
	return nil
}

// abort closes the sockets and the watch streams held without a goodbye,
// as the kernel does when the process dies; Shutdown then only waits.
func (t *netTransport) abort() { t.close(false) }

// close closes the sockets, the streams being sorted and the watch
// streams held, first writing the goodbye on these when bye is set. Only
// the first call does anything.
func (t *netTransport) close(bye bool) {
	t.once.Do(func() {
		close(t.done)
		_ = t.tcp.Close()
		_ = t.udp.Close()
		t.mu.Lock()
		defer t.mu.Unlock()
		for c := range t.held {
			if bye {
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = c.Write([]byte{watchBye})
			}
			_ = c.Close()
		}
		for c := range t.sorting {
			_ = c.Close()
		}
	})
}

// acceptLoop hands each accepted stream to a goroutine that sorts it
// (sortStream), backing off (up to a second) while accepting fails, as
// when the process is out of descriptors.
func (t *netTransport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.isShut() {
				return
			}
			if !t.backoff(&delay, 5*time.Millisecond, time.Second, "[ERR] memberlist: Error accepting TCP connection: %v", err) {
				return
			}
			continue
		}
		delay = 0
		t.wg.Add(1)
		go t.sortStream(c)
	}
}

// firstByteTimeout bounds the wait for a stream's first byte, as
// memberlist's TCPTimeout bounds a whole stream's.
const firstByteTimeout = 10 * time.Second

// sortStream reads the first byte of an accepted stream: a peer's watch
// stream is held (hold), anything else goes to memberlist with that byte
// given back. Every stream opens with its dialler's write (memberlist's
// own never wait for the listener to speak first).
func (t *netTransport) sortStream(c *net.TCPConn) {
	defer t.wg.Done()
	t.mu.Lock()
	if t.isShut() {
		t.mu.Unlock()
		_ = c.Close()
		return
	}
	t.sorting[c] = struct{}{}
	t.mu.Unlock()
	_ = c.SetReadDeadline(time.Now().Add(firstByteTimeout))
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	t.mu.Lock()
	delete(t.sorting, c)
	t.mu.Unlock()
	if err != nil {
		_ = c.Close()
		return
	}
	if b[0] == watchHello {
		t.hold(c)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	select {
	case t.streams <- &sniffedConn{Conn: c, first: b[0]}:
	case <-t.done:
		_ = c.Close()
	}
}

// hold keeps a peer's watch stream open until the peer closes it or this
// transport shuts down (which writes watchBye first). The peer learns
// that this agent is gone when the stream ends without a goodbye: the
// kernel closes it when the process dies, however it dies. At most
// watchHeldMax are held; more are closed at once.
func (t *netTransport) hold(c *net.TCPConn) {
	t.mu.Lock()
	if len(t.held) >= watchHeldMax || t.isShut() {
		t.mu.Unlock()
		_ = c.Close()
		return
	}
	t.held[c] = struct{}{}
	t.mu.Unlock()
	_ = c.SetReadDeadline(time.Time{})
	var buf [64]byte
	for {
		// The watcher sends nothing after its hello; whatever comes is
		// read and ignored.
		if _, err := c.Read(buf[:]); err != nil {
			break
		}
	}
	t.mu.Lock()
	delete(t.held, c)
	t.mu.Unlock()
	_ = c.Close()
}

// sniffedConn is an accepted stream whose first byte was read to sort it:
// that byte comes first again.
type sniffedConn struct {
	net.Conn
	first byte
	given bool
}

func (c *sniffedConn) Read(p []byte) (int, error) {
	if !c.given && len(p) > 0 {
		c.given = true
		p[0] = c.first
		return 1, nil
	}
	return c.Conn.Read(p)
}

// isShut reports whether Shutdown began: a listening loop's error is then
// its socket being closed.
func (t *netTransport) isShut() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// backoff logs err and waits *delay, doubled from lo up to hi since the
// last success, so that a listening loop whose socket keeps failing does
// not spin. It reports false when the transport shut down meanwhile.
func (t *netTransport) backoff(delay *time.Duration, lo, hi time.Duration, format string, err error) bool {
	*delay = min(max(2**delay, lo), hi)
	t.logger.Printf(format, err)
	select {
	case <-time.After(*delay):
		return true
	case <-t.done:
		return false
	}
}

// readLoop hands each UDP packet to memberlist in a buffer of its size.
func (t *netTransport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, udpReadBuffer)
	var delay time.Duration
	for {
		n, from, err := t.recv(buf)
		ts := time.Now()
		if err != nil {
			if t.isShut() {
				return
			}
			err = t.opError("read", nil, "recvfrom", err)
			if !t.backoff(&delay, time.Millisecond, 100*time.Millisecond, "[ERR] memberlist: Error reading UDP packet: %v", err) {
				return
			}
			continue
		}
		delay = 0
		if n < 1 {
			continue
		}
		p := &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: from, Timestamp: ts}
		select {
		case t.packets <- p:
		case <-t.done:
			return
		}
	}
}

// installTransport sets mc.Transport to the heartbeat's network transport
// bound as mc says (retrying a dynamic port taken for UDP after TCP got
// it), or, when Tune set one (a test's fault-injecting network), makes
// that one node-aware.
func installTransport(ctx context.Context, mc *memberlist.Config, logger *log.Logger) error {
	if mc.Transport != nil {
		if _, ok := mc.Transport.(memberlist.NodeAwareTransport); !ok {
			mc.Transport = shim{mc.Transport}
		}
		return nil
	}
	tries := 1
	if mc.BindPort == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *netTransport
		nt, err = listenNet(ctx, mc.BindAddr, mc.BindPort, logger)
		if err == nil {
			if mc.BindPort == 0 {
				mc.BindPort = nt.GetAutoBindPort()
				if mc.AdvertisePort == 0 {
					mc.AdvertisePort = mc.BindPort
				}
			}
			mc.Transport = nt
			return nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return fmt.Errorf("bind %s:%d: %w", mc.BindAddr, mc.BindPort, err)
}

// shim makes a plain Transport node-aware, as memberlist does inside.
type shim struct{ memberlist.Transport }

func (s shim) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return s.WriteTo(b, a.Addr)
}

func (s shim) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return s.DialTimeout(a.Addr, timeout)
}
