package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"agent/internal/sdnotify"
	"agent/internal/testutil"
)

// fakeAgent is a supervised agent whose readiness and health the test sets.
type fakeAgent struct {
	ready chan struct{}
	alive atomic.Bool
	pings atomic.Int64
}

func (f *fakeAgent) Name() string           { return "n1" }
func (f *fakeAgent) Ready() <-chan struct{} { return f.ready }
func (f *fakeAgent) Alive(context.Context) error {
	f.pings.Add(1)
	if f.alive.Load() {
		return nil
	}
	return errors.New("stuck")
}

// TestSuperviseSystemd runs the supervision against a fake NOTIFY_SOCKET:
// READY=1 only once the agent is ready, WATCHDOG=1 only while it is alive,
// STOPPING=1 at the end.
func TestSuperviseSystemd(t *testing.T) {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("agent-notify-%d-%d", os.Getpid(), rand.Uint64()))
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string) string {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, want) {
					return m
				}
				if strings.Contains(m, sdnotify.Watchdog) && want != sdnotify.Watchdog {
					continue
				}
				if strings.HasPrefix(m, "STATUS=") {
					continue
				}
				t.Fatalf("got %q while waiting for %q", m, want)
			case <-deadline:
				t.Fatalf("no %q from the agent", want)
			}
		}
	}

	n, err := sdnotify.New(path)
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAgent{ready: make(chan struct{})}
	a.alive.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		superviseSystemd(ctx, a, n, 40*time.Millisecond, quietLogger())
	}()

	// Alive but not ready: watchdog pings, no READY.
	if m := next(sdnotify.Watchdog); strings.Contains(m, "READY") {
		t.Fatalf("READY before the agent was ready: %q", m)
	}
	close(a.ready)
	next(sdnotify.Ready)

	// Stuck: probes go on, but no WATCHDOG=1 is sent. A marker the test
	// sends on the same socket after a probe has seen the switch comes
	// after every datagram sent before (the loop sends before it probes
	// again), so reading up to it drains them.
	marker := func(name string) []string {
		t.Helper()
		if err := n.Send(name); err != nil {
			t.Fatal(err)
		}
		var before []string
		for {
			select {
			case m := <-msgs:
				if m == name {
					return before
				}
				before = append(before, m)
			case <-time.After(30 * time.Second):
				t.Fatalf("marker %s never arrived", name)
			}
		}
	}
	a.alive.Store(false)
	p0 := a.pings.Load()
	testutil.Eventually(t, 30*time.Second, func() bool { return a.pings.Load() >= p0+2 }, "the supervisor stopped probing")
	marker("MARKER=1")
	p1 := a.pings.Load()
	testutil.Eventually(t, 30*time.Second, func() bool { return a.pings.Load() >= p1+3 }, "the supervisor stopped probing")
	for _, m := range marker("MARKER=2") {
		if strings.Contains(m, sdnotify.Watchdog) {
			t.Fatalf("watchdog pinged while the agent is stuck: %q", m)
		}
	}
	a.alive.Store(true)
	next(sdnotify.Watchdog)

	cancel()
	<-done
	next(sdnotify.Stopping)
}
