package heartbeat

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/internal/testutil"
)

// newTransport binds a netTransport on addr with a free port, shut down
// when the test ends.
func newTransport(t *testing.T, addr string) *netTransport {
	t.Helper()
	nt, err := listenNet(context.Background(), addr, 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = nt.Shutdown() })
	return nt
}

// recvPacket waits for one packet; the deadline only catches a hang.
func recvPacket(t *testing.T, nt *netTransport) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-nt.PacketCh():
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no packet in 10 s")
		return nil
	}
}

func addrOf(nt *netTransport, host string) string {
	return net.JoinHostPort(host, strconv.Itoa(nt.GetAutoBindPort()))
}

// TestTransportPackets: packets sent with raw calls arrive whole, from the
// sender's bound address, each in a buffer of its own (the read buffer is
// reused, so a packet kept by memberlist must not change under it).
func TestTransportPackets(t *testing.T) {
	a, b := newTransport(t, "127.0.0.1"), newTransport(t, "127.0.0.2")
	first, second := []byte("first packet"), []byte("second, longer packet")
	if _, err := a.WriteToAddress(first, memberlist.Address{Addr: addrOf(b, "127.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	p1 := recvPacket(t, b)
	if _, err := a.WriteTo(second, addrOf(b, "127.0.0.2")); err != nil {
		t.Fatal(err)
	}
	p2 := recvPacket(t, b)
	if string(p1.Buf) != string(first) || string(p2.Buf) != string(second) {
		t.Fatalf("got %q then %q, want %q then %q", p1.Buf, p2.Buf, first, second)
	}
	if got, want := p1.From.String(), addrOf(a, "127.0.0.1"); got != want {
		t.Fatalf("packet from %s, want %s", got, want)
	}
	if cap(p1.Buf) >= udpReadBuffer {
		t.Fatalf("packet buffer holds %d bytes: the read buffer itself, not a copy", cap(p1.Buf))
	}
	if p1.Timestamp.IsZero() {
		t.Fatal("packet has no receive time")
	}
}

// TestTransportWildcard: a wildcard bind is a dual-stack socket; IPv4
// peers reach it and it reaches them, and their addresses come out as
// IPv4. A host name goes through the resolver.
func TestTransportWildcard(t *testing.T) {
	w, a := newTransport(t, "0.0.0.0"), newTransport(t, "127.0.0.3")
	if _, err := a.WriteTo([]byte("to the wildcard"), addrOf(w, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	p := recvPacket(t, w)
	if got, want := p.From.String(), addrOf(a, "127.0.0.3"); got != want {
		t.Fatalf("packet from %s, want %s", got, want)
	}
	if _, err := w.WriteTo([]byte("from the wildcard"), addrOf(a, "127.0.0.3")); err != nil {
		t.Fatal(err)
	}
	if p := recvPacket(t, a); string(p.Buf) != "from the wildcard" {
		t.Fatalf("got %q", p.Buf)
	}
	if _, err := a.WriteTo([]byte("by name"), addrOf(w, "localhost")); err != nil {
		t.Fatalf("send to localhost: %v", err)
	}
	if p := recvPacket(t, w); string(p.Buf) != "by name" {
		t.Fatalf("got %q", p.Buf)
	}
}

// TestTransportV6 sends over ::1 when the host has IPv6 loopback, and an
// IPv4 socket refuses an IPv6 destination with a clear error.
func TestTransportV6(t *testing.T) {
	v4 := newTransport(t, "127.0.0.1")
	if _, err := v4.WriteTo([]byte("x"), "[::1]:9"); !errors.Is(err, errFamily) {
		t.Fatalf("IPv6 destination from an IPv4 socket: err = %v, want %v", err, errFamily)
	}
	nt, err := listenNet(context.Background(), "::1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	t.Cleanup(func() { _ = nt.Shutdown() })
	w := newTransport(t, "::")
	if _, err := w.WriteTo([]byte("six"), addrOf(nt, "::1")); err != nil {
		t.Fatal(err)
	}
	p := recvPacket(t, nt)
	if string(p.Buf) != "six" || p.From.(*net.UDPAddr).IP.To4() != nil {
		t.Fatalf("got %q from %s, want \"six\" from an IPv6 address", p.Buf, p.From)
	}
}

// TestTransportStreams: a stream is dialled from the bind address (on
// loopback the kernel would pick 127.0.0.1) and accepted on StreamCh once
// it sent a byte; a dial in flight gives up when the transport's context
// ends.
func TestTransportStreams(t *testing.T) {
	a, b := newTransport(t, "127.0.0.4"), newTransport(t, "127.0.0.5")
	c, err := a.DialTimeout(addrOf(b, "127.0.0.5"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A stream goes to memberlist once its first byte came (sortStream).
	if _, err := c.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-b.StreamCh():
		defer s.Close()
		if ip := s.RemoteAddr().(*net.TCPAddr).IP.String(); ip != "127.0.0.4" {
			t.Fatalf("stream from %s, want 127.0.0.4", ip)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no stream accepted in 10 s")
	}
}

// TestTransportShutdown: Shutdown stops both listening goroutines, also
// while one waits to hand memberlist a packet nobody reads, and a second
// Shutdown is harmless.
func TestTransportShutdown(t *testing.T) {
	done := testutil.CheckGoroutines(t)
	for range 20 {
		a, err := listenNet(context.Background(), "127.0.0.1", 0, log.New(io.Discard, "", 0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WriteTo([]byte("unread"), addrOf(a, "127.0.0.1")); err != nil {
			t.Fatal(err)
		}
		c, err := a.DialTimeout(addrOf(a, "127.0.0.1"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = a.Shutdown()
		_ = a.Shutdown()
		_ = c.Close()
		if _, err := a.WriteTo([]byte("late"), addrOf(a, "127.0.0.1")); err == nil {
			t.Fatal("send on a shut transport succeeded")
		}
	}
	done()
}

// TestTransportBindErrors: a bind address that is not an IP is refused by
// name, and a port in use is reported.
func TestTransportBindErrors(t *testing.T) {
	if _, err := listenNet(context.Background(), "node1.example", 0, nil); err == nil {
		t.Fatal("host name accepted as bind address")
	}
	a := newTransport(t, "127.0.0.1")
	if _, err := listenNet(context.Background(), "127.0.0.1", a.GetAutoBindPort(), nil); err == nil {
		t.Fatal("second bind of a port in use succeeded")
	}
}

// TestTransportSendErrors: a send that fails returns a *net.OpError with
// Op "write" and Net "udp", as Go's own socket calls do: memberlist goes
// on from a failed ping to suspicion only for that type (a peer cut off
// by a firewall rule that refuses the send with EPERM must still be
// declared dead).
func TestTransportSendErrors(t *testing.T) {
	a := newTransport(t, "127.0.0.1")
	for _, tc := range []struct {
		name string
		b    []byte
		addr string
		want error
	}{
		{"too large for one datagram", make([]byte, 70000), addrOf(a, "127.0.0.1"), syscall.EMSGSIZE},
		{"IPv6 from an IPv4 socket", []byte("x"), "[::1]:9", errFamily},
	} {
		_, err := a.WriteTo(tc.b, tc.addr)
		oe, ok := err.(*net.OpError)
		if !ok || oe.Op != "write" || oe.Net != "udp" || !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %#v (%v), want a *net.OpError write/udp wrapping %v", tc.name, err, err, tc.want)
		}
	}
}
