package agent

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestLimitListener checks the TCP listener's connection cap: at most n
// connections are accepted at once, a closed one frees its slot, Close
// wakes an Accept waiting for one, and a connection still reaches its
// socket (the event stream writes to it without blocking).
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitListener(inner, 2)
	accepted := make(chan net.Conn, 3)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	var held []net.Conn
	for range 2 {
		select {
		case c := <-accepted:
			if _, ok := c.(syscall.Conn); !ok {
				t.Fatalf("accepted %T: no SyscallConn", c)
			}
			held = append(held, c)
		case <-time.After(20 * time.Second):
			t.Fatal("the first two connections were not accepted")
		}
	}
	select {
	case c := <-accepted:
		t.Fatalf("a third connection was accepted over the cap: %v", c.RemoteAddr())
	case <-time.After(100 * time.Millisecond):
	}
	_ = held[0].Close()
	_ = held[0].Close() // a second Close frees nothing more
	select {
	case c := <-accepted:
		held = append(held, c)
	case <-time.After(20 * time.Second):
		t.Fatal("the third connection was not accepted after one closed")
	}
	// Both slots are held again: Close must wake the Accept waiting.
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-acceptErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not wake Accept")
	}
	for _, c := range held[1:] {
		_ = c.Close()
	}
}
