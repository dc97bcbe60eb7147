package netfault

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// Unavailable skips t, loudly (a WARNING on stderr, which go test shows
// even without -v), or fails it when RequireEnv is 1: a fault test that
// cannot run must not pass silently in CI.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	msg := "FAULT TESTS NOT RUN: " + why + " (they need root, iproute2 and nftables; set " + RequireEnv + "=1 to make this a failure)"
	if os.Getenv(RequireEnv) == "1" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "WARNING:", msg)
	t.Skip(msg)
}

// Require calls Unavailable unless fault tests can run here.
func Require(t testing.TB) {
	t.Helper()
	if err := Check(); err != nil {
		Unavailable(t, err.Error())
	}
}

// NewT creates a namespace for t (see New), deleted in t.Cleanup: register
// the cleanups that stop its processes after this call, so that they run
// first. Where fault tests cannot run, it calls Unavailable.
func NewT(t testing.TB, prefix string) *NS {
	t.Helper()
	Require(t)
	ns, err := New(prefix)
	if err != nil {
		unsupported(t, err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Log(err)
		}
	})
	return ns
}

// Must fails t when err (from a rule change) is not nil, or calls
// Unavailable when it says the kernel lacks support.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		unsupported(t, err)
	}
}

func unsupported(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrUnsupported) {
		Unavailable(t, err.Error())
	}
	t.Fatal(err)
}
