// Package testutil holds helpers shared by the agent's tests: waiting on a
// condition with a deadline, and checking that goroutines do not leak.
package testutil

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Eventually polls cond every few milliseconds until it holds or timeout
// passes, then fails the test with msg. It asserts a condition, not a time:
// the timeout only bounds a test that would otherwise hang. An argument
// of type func() any is called when the message is written, so the
// message can show the state at the deadline rather than at the call.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			final := []any{timeout}
			for _, a := range args {
				if f, ok := a.(func() any); ok {
					a = f()
				}
				final = append(final, a)
			}
			t.Fatalf("condition not met within %s: "+msg, final...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// CheckGoroutines records the goroutine count and returns a function that
// fails the test if, after cleanup, the count does not come back to it.
func CheckGoroutines(t testing.TB) func() {
	t.Helper()
	base := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= base {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutines: %d after shutdown, %d before\n%s", n, base, trimStacks(string(buf)))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func trimStacks(s string) string {
	if len(s) > 20000 {
		return s[:20000] + "\n..." + strings.Repeat("", 0)
	}
	return s
}

// Repeat calls fn in a goroutine, again and again, at most n times, until
// the returned stop is called; stop waits for the goroutine to end. Tests
// use it to keep something happening (a peer joining an address) while
// they do something else.
func Repeat(n int, fn func()) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			select {
			case <-quit:
				return
			default:
			}
			fn()
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// FirstDiff returns the first index where a and b differ, or the length
// of the shorter when one is a prefix of the other: where to look when two
// sequences of records do not match.
func FirstDiff[T comparable](a, b []T) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// ImportsOnly fails the test when pkg depends, directly or not, on a
// package of this module outside allowed (itself aside): the layering
// rule that a package never imports upward. It skips when the go command
// is not at hand.
func ImportsOnly(t testing.TB, pkg string, allowed ...string) {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list the imports of %s: %v", pkg, err)
	}
	out, err := exec.Command(goCmd, "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	ok := map[string]bool{pkg: true}
	for _, a := range allowed {
		ok[a] = true
	}
	for _, dep := range strings.Fields(string(out)) {
		if (dep == "agent" || strings.HasPrefix(dep, "agent/")) && !ok[dep] {
			t.Errorf("%s depends on %s; it may depend only on %v", pkg, dep, allowed)
		}
	}
}

// ProcessGone reports whether process pid no longer runs: absent, or a
// zombie waiting for a reaper (Linux /proc).
func ProcessGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}
