package heartbeat

import (
	"context"
	"fmt"
	"log"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// closingTransport is memberlist's transport with dials that end when the
// heartbeat closes. A stream dial to a peer that does not answer (a black
// hole) otherwise hangs for TCPTimeout, and Close would wait for every
// send and join in flight to give up on its own.
type closingTransport struct {
	memberlist.NodeAwareTransport
	ctx context.Context
	// tcp says the inner transport dials plain TCP (memberlist's own),
	// which this wrapper does itself with ctx; another transport is
	// trusted to end its dials when shut down.
	tcp bool
	// local, when set, is the address streams are dialled from: the bind
	// address, so that a connection comes from the heartbeat's address
	// and not from whichever the kernel picks (on loopback, 127.0.0.1 for
	// every 127.x destination; on a host with several addresses, the
	// route's).
	local *net.TCPAddr
}

var _ memberlist.NodeAwareTransport = (*closingTransport)(nil)

// DialAddressTimeout dials a.Addr, giving up when the heartbeat closes.
func (t *closingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if !t.tcp {
		return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	}
	d := net.Dialer{Timeout: timeout}
	if t.local != nil {
		d.LocalAddr = t.local
	}
	return d.DialContext(t.ctx, "tcp", a.Addr)
}

// DialTimeout dials addr, giving up when the heartbeat closes.
func (t *closingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// installTransport sets mc.Transport to a closingTransport around the one
// Tune chose, or around memberlist's own network transport bound as mc
// says (retrying a dynamic port taken for UDP after TCP got it, as
// memberlist does).
func installTransport(ctx context.Context, mc *memberlist.Config, logger *log.Logger) error {
	if mc.Transport != nil {
		nat, ok := mc.Transport.(memberlist.NodeAwareTransport)
		if !ok {
			nat = shim{mc.Transport}
		}
		mc.Transport = &closingTransport{NodeAwareTransport: nat, ctx: ctx}
		return nil
	}
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: logger}
	tries := 1
	if mc.BindPort == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(nc)
		if err == nil {
			if mc.BindPort == 0 {
				mc.BindPort = nt.GetAutoBindPort()
				if mc.AdvertisePort == 0 {
					mc.AdvertisePort = mc.BindPort
				}
			}
			ct := &closingTransport{NodeAwareTransport: nt, ctx: ctx, tcp: true}
			if ip := net.ParseIP(mc.BindAddr); ip != nil && !ip.IsUnspecified() {
				ct.local = &net.TCPAddr{IP: ip}
			}
			mc.Transport = ct
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
