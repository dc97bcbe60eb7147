//go:build !linux

package heartbeat

import (
	"net"
	"net/netip"
)

// recv reads one packet into buf.
func (t *netTransport) recv(buf []byte) (int, *net.UDPAddr, error) {
	return t.udp.ReadFromUDP(buf)
}

// sendRaw sends b to ap.
func (t *netTransport) sendRaw(b []byte, ap netip.AddrPort) error {
	if !t.v6 && !ap.Addr().Unmap().Is4() {
		return errFamily
	}
	_, err := t.udp.WriteToUDPAddrPort(b, ap)
	return err
}
