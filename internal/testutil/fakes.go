package testutil

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// FakeClock is a clock tests move by hand, starting at a fixed date.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock returns a clock at 2026-11-22T10:00:00Z.
func NewFakeClock() *FakeClock {
	return &FakeClock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// FastTimings shrinks memberlist's timings to milliseconds, for
// in-process clusters on loopback.
func FastTimings(c *memberlist.Config) {
	// Tolerant enough that a loaded machine under -race does not see
	// healthy peers flap between dead and alive (with a 60 ms probe
	// timeout and a 300 ms suspicion they did, with two test suites
	// running at once on two cores), fast enough that a death is seen
	// within a second or two.
	c.ProbeInterval = 150 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.PushPullInterval = 300 * time.Millisecond
	c.SuspicionMult = 4
	c.TCPTimeout = 500 * time.Millisecond
	c.GossipToTheDeadTime = 500 * time.Millisecond
	c.DeadNodeReclaimTime = 10 * time.Millisecond
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
