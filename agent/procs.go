package agent

import (
	"context"
	"runtime"
	"syscall"
	"time"
)

// The procs governor runs the agent's goroutines on one processor (P)
// while the agent is idle, and on every CPU it may use when it is busy.
//
// Why: an idle agent's cost is the number of times its threads wake, not
// the work they do (a probe, an ack, a timer). With several Ps, every
// goroutine made runnable wakes a second thread to look for more work, and
// on a virtual machine each wake-up is a trip through the hypervisor:
// measured on a 2-vCPU KVM guest, five idle agents made 95 context switches
// a second each and used 0.6 to 1.4 % of a core with two Ps, 70 and about
// 0.5 % with one. A burst (a failover, a thousand subscribers, a history
// backfill) takes the Ps back within one sampling window. The metric
// go_sched_gomaxprocs_threads shows the current number.

const (
	// procsEvery is the governor's sampling window.
	procsEvery = 2 * time.Second
	// procsBusy is the share of the current Ps' capacity, used over a
	// window, that gives the agent every CPU again.
	procsBusy = 0.5
	// procsIdle is the CPU, in cores, under which a window counts as
	// quiet, and procsQuiet how many quiet windows in a row bring the
	// agent back to one P.
	procsIdle  = 0.1
	procsQuiet = 3
)

// procsStep decides the next number of Ps from the current one, the CPU
// used over the last window (in cores) and the quiet windows counted so
// far. max is the most the agent may use.
func procsStep(cur, max int, used float64, quiet int) (next, quietNext int) {
	if max <= 1 {
		return cur, 0
	}
	if cur < max && used >= procsBusy*float64(cur) {
		return max, 0
	}
	if cur == 1 {
		return 1, 0
	}
	if used >= procsIdle {
		return cur, 0
	}
	if quiet+1 >= procsQuiet {
		return 1, 0
	}
	return cur, quiet + 1
}

// governProcs runs the governor until ctx ends, then gives the agent its
// max Ps back (GOMAXPROCS as the agent started). It starts with all of
// them: start-up is busy.
func (a *Agent) governProcs(ctx context.Context, max int) {
	if max <= 1 {
		return
	}
	defer runtime.GOMAXPROCS(max)
	// A window may close up to a quarter early, on a wake-up the agent
	// has anyway: the CPU is divided by the window's true length.
	t := a.bell.NewTimer()
	defer t.Stop()
	t.Reset(procsEvery, procsEvery/4)
	cur, quiet := max, 0
	last, lastCPU := time.Now(), processCPU()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := processCPU()
			used := (cpu - lastCPU).Seconds() / now.Sub(last).Seconds()
			last, lastCPU = now, cpu
			t.Next(procsEvery, procsEvery/4)
			next, q := procsStep(cur, max, used, quiet)
			quiet = q
			if next != cur {
				runtime.GOMAXPROCS(next)
				a.log.Debug("processors", "from", cur, "to", next, "cpu", used)
				cur = next
			}
		}
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
