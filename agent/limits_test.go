package agent

import (
	"syscall"
	"testing"
)

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
