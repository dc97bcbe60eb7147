//go:build linux

package affinity

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// allowed returns the Cpus_allowed_list line of a status file.
func allowed(t *testing.T, status string) string {
	t.Helper()
	b, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s: no Cpus_allowed_list", status)
	return ""
}

func TestPinEveryThreadAndStartChildUnpinned(t *testing.T) {
	if !Supported() {
		t.Skip("one CPU only: nothing to pin")
	}
	want := allowed(t, "/proc/self/status")
	cpu, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	if err := Pin(cpu); err != nil {
		t.Fatal(err)
	}
	defer Unpin()
	if Pinned() != cpu {
		t.Fatalf("Pinned() = %d, want %d", Pinned(), cpu)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, st := range tasks {
		if got := allowed(t, st); got != strconv.Itoa(cpu) {
			t.Errorf("%s: CPUs %s, want %d", st, got, cpu)
		}
	}
	// A child forked while pinned gets the CPUs the process started with.
	var out strings.Builder
	cmd := exec.Command("grep", "Cpus_allowed_list", "/proc/self/status")
	cmd.Stdout = &out
	if err := StartChild(cmd.Start); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(strings.TrimPrefix(out.String(), "Cpus_allowed_list:")); got != want {
		t.Fatalf("child's CPUs %q, want %q (the process's at start)", got, want)
	}
	if err := Unpin(); err != nil {
		t.Fatal(err)
	}
	if Pinned() != -1 {
		t.Fatalf("Pinned() = %d after Unpin", Pinned())
	}
	for _, st := range tasks {
		if _, err := os.Stat(st); err != nil {
			continue // the thread ended
		}
		if got := allowed(t, st); got != want {
			t.Errorf("%s: CPUs %s after Unpin, want %s", st, got, want)
		}
	}
}

func TestPinRefusesForeignCPU(t *testing.T) {
	if !Supported() {
		t.Skip("one CPU only")
	}
	if err := Pin(100000); err == nil {
		Unpin()
		t.Fatal("pinned to a CPU the process did not start with")
	}
	if Pinned() != -1 {
		t.Fatal("a refused pin left the process pinned")
	}
}

func TestRunDelay(t *testing.T) {
	a, err := RunDelay()
	if err != nil {
		t.Fatal(err)
	}
	if a < 0 {
		t.Fatalf("run delay %d", a)
	}
}

// TestChangedFromOutsideIsLeftAlone: CPUs set by someone else (taskset
// -p) are neither pinned over nor "given back".
func TestChangedFromOutsideIsLeftAlone(t *testing.T) {
	if !Supported() {
		t.Skip("one CPU only")
	}
	cpu, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	other := -1
	for c := 0; c < 1024; c++ {
		if c != cpu && original.IsSet(c) {
			other = c
			break
		}
	}
	if err := Pin(cpu); err != nil {
		t.Fatal(err)
	}
	// As `taskset -a -p` would: every thread to another CPU.
	var set unix.CPUSet
	set.Set(other)
	mu.Lock()
	err = setAll(&set)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		mu.Lock()
		_ = setAll(&original)
		mu.Unlock()
	}()
	if err := Unpin(); !errors.Is(err, ErrChanged) {
		t.Fatalf("Unpin after an outside change = %v, want ErrChanged", err)
	}
	if err := Pin(cpu); !errors.Is(err, ErrChanged) {
		t.Fatalf("Pin after an outside change = %v, want ErrChanged", err)
	}
	if got := allowed(t, "/proc/self/status"); got != strconv.Itoa(other) {
		t.Fatalf("main thread's CPUs %s, want the outside choice %d", got, other)
	}
}
