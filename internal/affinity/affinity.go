// Package affinity keeps an idle agent's threads on one CPU, and the
// commands it starts off that restriction.
//
// Why: an idle agent's CPU is the cost of waking its threads, and on a
// virtual machine a thread woken on another virtual CPU than the one
// waking it costs an inter-processor interrupt and the wake-up of a halted
// vCPU, both trips through the hypervisor. With every thread of the agent
// on one CPU, Go's threads wake each other there. Measured on a 2-vCPU KVM
// guest, five idle agents: 0.38 and 0.43 % of a core each (largest of
// five) with their threads on one CPU, 1.05 and 1.53 % without, the same
// minutes, the same number of wake-ups.
//
// The agent's processors governor pins while it runs the agent on one Go
// processor, and unpins as soon as it is busy or finds its threads waiting
// for that CPU. Commands the agent starts (service checks, starts and
// stops, hooks) get the CPUs the agent was started with, never the pin:
// StartChild forks them from a thread that has those CPUs.
package affinity

import (
	"errors"
	"runtime"
	"sync"
)

// ErrChanged is returned by Pin and Unpin when the process's CPUs were
// set by someone else since it started (taskset -p, a cpuset): they are
// left as they are.
var ErrChanged = errors.New("the CPUs of the agent's threads were changed from outside")

var (
	// mu is held for reading while a child is forked, for writing while
	// the threads' CPUs change, so that no child is forked half-way.
	mu     sync.RWMutex
	pinned = -1 // the CPU every thread is pinned to, or -1
)

// Pinned returns the CPU the process's threads are pinned to, or -1.
func Pinned() int {
	mu.RLock()
	defer mu.RUnlock()
	return pinned
}

// StartChild runs start, a fork such as exec.Cmd.Start, so that the child
// gets the CPUs the process started with even while its threads are
// pinned.
func StartChild(start func() error) error {
	mu.RLock()
	defer mu.RUnlock()
	if pinned < 0 {
		return start()
	}
	errc := make(chan error, 1)
	go func() {
		// The goroutine ends locked to this thread, so the runtime ends
		// the thread with it: it never goes back to the pool unpinned.
		// Should the thread keep the pin, the child is started anyway:
		// a command on one CPU is better than a service not started.
		runtime.LockOSThread()
		_ = unpinThread()
		err := start()
		// A thread the runtime made from this one meanwhile (to run
		// other goroutines while this one forked) got its CPUs: pin
		// every thread again.
		_ = repin()
		errc <- err
	}()
	return <-errc
}
