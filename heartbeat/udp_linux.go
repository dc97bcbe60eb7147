//go:build linux

package heartbeat

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// recv reads one packet into buf with a raw recvfrom on the non-blocking
// socket, waiting in Go's network poller while there is none.
func (t *netTransport) recv(buf []byte) (int, *net.UDPAddr, error) {
	var (
		n    int
		rsa  syscall.RawSockaddrAny
		serr syscall.Errno
	)
	err := t.raw.Read(func(fd uintptr) bool {
		for {
			l := uint32(syscall.SizeofSockaddrAny)
			r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd,
				uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0,
				uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			n, serr = int(r), e
			return true
		}
	})
	if err != nil {
		return 0, nil, err
	}
	if serr != 0 {
		return 0, nil, serr
	}
	return n, udpAddrOf(&rsa), nil
}

// udpAddrOf decodes a sender's address; a v4-mapped IPv6 one (a packet
// from an IPv4 peer on a dual-stack socket) comes out as IPv4.
func udpAddrOf(rsa *syscall.RawSockaddrAny) *net.UDPAddr {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return &net.UDPAddr{IP: net.IP(sa.Addr[:]).To4(), Port: int(p[0])<<8 | int(p[1])}
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		a := netip.AddrFrom16(sa.Addr).Unmap()
		ua := &net.UDPAddr{IP: net.IP(a.AsSlice()), Port: int(p[0])<<8 | int(p[1])}
		if sa.Scope_id != 0 && a.Is6() {
			if ifc, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				ua.Zone = ifc.Name
			}
		}
		return ua
	}
	return &net.UDPAddr{}
}

// sendRaw sends b to ap with a raw sendto on the non-blocking socket,
// waiting in Go's network poller while the socket's buffer is full.
func (t *netTransport) sendRaw(b []byte, ap netip.AddrPort) error {
	var (
		sa4 syscall.RawSockaddrInet4
		sa6 syscall.RawSockaddrInet6
		ptr unsafe.Pointer
		sl  uintptr
	)
	a, port := ap.Addr(), ap.Port()
	switch {
	case t.v6:
		sa6.Family = syscall.AF_INET6
		sa6.Addr = a.As16()
		p := (*[2]byte)(unsafe.Pointer(&sa6.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		ptr, sl = unsafe.Pointer(&sa6), syscall.SizeofSockaddrInet6
	case a.Unmap().Is4():
		sa4.Family = syscall.AF_INET
		sa4.Addr = a.Unmap().As4()
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		ptr, sl = unsafe.Pointer(&sa4), syscall.SizeofSockaddrInet4
	default:
		return errFamily
	}
	var serr syscall.Errno
	err := t.raw.Write(func(fd uintptr) bool {
		for {
			_, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd,
				uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, uintptr(ptr), sl)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			serr = e
			return true
		}
	})
	if err != nil {
		return err
	}
	if serr != 0 {
		return serr
	}
	return nil
}
