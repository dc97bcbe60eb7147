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

// TestCapConns: the connection cap leaves 1024 files (or a quarter of a
// smaller limit) to the rest of the agent.
func TestCapConns(t *testing.T) {
	for _, tc := range []struct {
		maxConns int
		limit    uint64
		want     int
	}{
		{16384, 0, 16384},           // limit unknown
		{16384, 1 << 20, 16384},     // a systemd-sized limit: no cap
		{16384, 4096, 3072},         // the example of the docs
		{16384, 1024, 768},          // a quarter kept back
		{100, 4096, 100},            // under the room
		{16384, 17408, 16384},       // exactly the room
		{16384, 17407, 16383},       // one short
		{1 << 40, 1 << 62, 1 << 30}, // bounded on 64-bit ints
	} {
		if got := capConns(tc.maxConns, tc.limit); got != tc.want {
			t.Errorf("capConns(%d, %d) = %d, want %d", tc.maxConns, tc.limit, got, tc.want)
		}
	}
}

// TestRaiseFileLimit: after the call the soft limit is the hard limit,
// and the figure returned is the one in force.
func TestRaiseFileLimit(t *testing.T) {
	got, err := raiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur != rl.Max || got != rl.Cur {
		t.Fatalf("soft %d, hard %d, returned %d: want soft = hard = returned", rl.Cur, rl.Max, got)
	}
}
