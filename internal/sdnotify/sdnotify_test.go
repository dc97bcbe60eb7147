package sdnotify

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeSystemd listens where NOTIFY_SOCKET would point and returns the
// name and a function reading the next datagram.
func fakeSystemd(t *testing.T, abstract bool) (string, func() string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	if abstract {
		name = fmt.Sprintf("@agent-sdnotify-test-%d-%d", os.Getpid(), rand.Uint64())
	}
	listen := name
	if abstract {
		listen = "\x00" + name[1:]
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: listen, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return name, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("fake systemd: %v", err)
		}
		return string(buf[:n])
	}
}

func TestSendToPathAndAbstractSockets(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name, read := fakeSystemd(t, abstract)
		n, err := New(name)
		if err != nil {
			t.Fatal(err)
		}
		if !n.Enabled() {
			t.Fatal("notifier with a socket is not enabled")
		}
		if err := n.Send(Ready); err != nil {
			t.Fatal(err)
		}
		if got := read(); got != "READY=1" {
			t.Fatalf("got %q, want READY=1", got)
		}
		if err := n.Status("joined %s\nnow", "prod"); err != nil {
			t.Fatal(err)
		}
		if got := read(); got != "STATUS=joined prod now" {
			t.Fatalf("got %q", got)
		}
	}
}

func TestDisabledOutsideSystemd(t *testing.T) {
	n, err := New("")
	if err != nil || n.Enabled() || n.Send(Ready) != nil {
		t.Fatalf("empty NOTIFY_SOCKET: %v %v", err, n.Enabled())
	}
	var nilN *Notifier
	if nilN.Send(Ready) != nil || nilN.Enabled() {
		t.Fatal("nil notifier must be a no-op")
	}
	if _, err := New("relative/path"); err == nil {
		t.Fatal("relative NOTIFY_SOCKET accepted")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, false},
		{"30000000", "42", 30 * time.Second, false},
		{"30000000", "43", 0, false}, // meant for another process
		{"abc", "", 0, true},
		{"0", "", 0, true},
		{"30000000", "x", 0, true},
	} {
		got, err := WatchdogInterval(tc.usec, tc.pid, 42)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("WatchdogInterval(%q, %q) = %v, %v", tc.usec, tc.pid, got, err)
		}
	}
}
