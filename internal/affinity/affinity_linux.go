package affinity

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// original is the CPU set the process started with.
var original, originalErr = startSet()

func startSet() (unix.CPUSet, error) {
	var set unix.CPUSet
	err := unix.SchedGetaffinity(0, &set)
	return set, err
}

// Supported reports whether the process may be pinned: the CPUs it
// started with are known and there are several.
func Supported() bool { return originalErr == nil && original.Count() > 1 }

// Current returns the CPU the calling thread runs on.
func Current() (int, error) {
	var cpu uint32
	if _, _, errno := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); errno != 0 {
		return -1, errno
	}
	return int(cpu), nil
}

// Pin restricts every thread of the process to cpu, one of the CPUs it
// started with. Threads made later inherit it from the thread that makes
// them; calling Pin again catches any made while it ran.
func Pin(cpu int) error {
	if !Supported() {
		return fmt.Errorf("pin: %v", cmpErr(originalErr, "one CPU only"))
	}
	if !original.IsSet(cpu) {
		return fmt.Errorf("pin: CPU %d is not one the agent started with", cpu)
	}
	var set unix.CPUSet
	set.Set(cpu)
	mu.Lock()
	defer mu.Unlock()
	if err := checkOwn(); err != nil {
		return err
	}
	if err := setAll(&set); err != nil {
		// Some threads may be pinned already: give them all back.
		_ = setAll(&original)
		pinned = -1
		return err
	}
	pinned = cpu
	return nil
}

// Unpin gives every thread the CPUs the process started with.
func Unpin() error {
	mu.Lock()
	defer mu.Unlock()
	if pinned < 0 {
		return nil
	}
	if err := checkOwn(); err != nil {
		pinned = -1
		return err
	}
	pinned = -1
	return setAll(&original)
}

// checkOwn returns ErrChanged when the CPUs of the main thread are
// neither those the process started with nor the pin: someone else
// (taskset -p, a cpuset) set them, and their choice stands. mu held.
func checkOwn() error {
	want := original
	if pinned >= 0 {
		want = unix.CPUSet{}
		want.Set(pinned)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(os.Getpid(), &set); err != nil {
		return fmt.Errorf("read CPUs of the main thread: %w", err)
	}
	if set != want {
		return ErrChanged
	}
	return nil
}

// repin pins every thread to the CPU pinned to. mu held for reading.
func repin() error {
	var set unix.CPUSet
	set.Set(pinned)
	return setAll(&set)
}

// unpinThread gives the calling thread the CPUs the process started with.
func unpinThread() error {
	return unix.SchedSetaffinity(0, &original)
}

// setAll sets the CPUs of every thread of the process. A thread made
// while it runs, by one not yet set, inherits the old CPUs: it lists the
// threads again until a pass finds none it has not set. mu held.
func setAll(set *unix.CPUSet) error {
	done := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("list threads: %w", err)
		}
		fresh := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh = true
			done[tid] = true
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("set CPUs of thread %d: %w", tid, err)
			}
		}
		if !fresh {
			return nil
		}
	}
	return errors.New("set CPUs: threads kept appearing")
}

// RunDelay returns how long the process's threads have waited, in total,
// for a CPU while runnable (/proc/self/task/*/schedstat). Threads that
// ended are not counted: compare two readings only as a lower bound.
func RunDelay() (int64, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue // ended meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return 0, fmt.Errorf("schedstat of thread %s: %q", t.Name(), b)
		}
		d, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("schedstat of thread %s: %w", t.Name(), err)
		}
		total += d
	}
	return total, nil
}

func cmpErr(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}
