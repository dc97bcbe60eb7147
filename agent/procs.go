package agent

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"syscall"
	"time"

	"agent/internal/affinity"
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

// Pinning (package affinity): while the governor runs the agent on one
// P, it also keeps every thread of the agent on the CPU the governor ran on
// when it pinned, provided the threads waited for a CPU less than a fifth
// of pinWaitMax over the window before (a quiet machine). It gives the
// agent its CPUs back when it gives the Ps back, and as soon as the
// agent's threads waited for that CPU more than pinWaitMax over a window
// (something else keeps it busy); then it does not pin again for
// pinBackoff windows.
const (
	pinWaitMax = 50 * time.Millisecond
	pinBackoff = 30
)

// governProcs runs the governor until ctx ends, then gives the agent its
// max Ps back (GOMAXPROCS as the agent started) and its CPUs. It starts
// with all of them: start-up is busy.
func (a *Agent) governProcs(ctx context.Context, max int) {
	if max <= 1 {
		return
	}
	defer runtime.GOMAXPROCS(max)
	pin := newPinner(a.log, affinity.Supported())
	defer pin.release()
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
				if next > 1 {
					pin.release()
				}
				runtime.GOMAXPROCS(next)
				a.log.Debug("processors", "from", cur, "to", next, "cpu", used)
				cur = next
			}
			pin.window(cur == 1)
		}
	}
}

// pinner pins the agent's threads to one CPU while the governor says the
// agent is idle. Governor goroutine only.
type pinner struct {
	log      *slog.Logger
	ok       bool  // pinning is possible and has not failed
	cpu      int   // the CPU pinned to, or -1
	wait     int64 // the threads' run delay at the last window, ns
	waitOK   bool
	backoff  int // windows left before pinning again
	failures int
	// runDelay is affinity.RunDelay (tests replace it).
	runDelay func() (int64, error)
}

func newPinner(log *slog.Logger, supported bool) *pinner {
	return &pinner{log: log, ok: supported, cpu: -1, runDelay: affinity.RunDelay}
}

// window is called once per governor window: idle says whether the agent
// runs on one P.
func (p *pinner) window(idle bool) {
	if !p.ok {
		return
	}
	wait, err := p.runDelay()
	waited := time.Duration(wait - p.wait)
	fresh := err == nil && p.waitOK
	p.wait, p.waitOK = wait, err == nil
	if p.backoff > 0 {
		p.backoff--
	}
	switch {
	case !idle:
		p.release()
	case p.cpu >= 0 && fresh && waited > pinWaitMax:
		p.log.Debug("CPU busy: threads unpinned", "cpu", p.cpu, "waited", waited)
		p.release()
		p.backoff = pinBackoff
	case p.backoff > 0:
	case p.cpu < 0 && (!fresh || waited > pinWaitMax/5):
		// Pin only when the threads have been getting a CPU at once:
		// on a busy machine the scheduler's balancing serves better.
	default:
		cpu := p.cpu
		if cpu < 0 {
			if cpu, err = affinity.Current(); err != nil {
				p.fail(err)
				return
			}
		}
		// Pinning again each window catches the threads made since.
		if err := affinity.Pin(cpu); err != nil {
			p.fail(err)
			return
		}
		if p.cpu < 0 {
			p.log.Debug("threads pinned", "cpu", cpu)
		}
		p.cpu, p.failures = cpu, 0
	}
}

// fail gives up pinning after three failures in a row, or at once when
// someone else set the CPUs.
func (p *pinner) fail(err error) {
	p.cpu = -1
	if errors.Is(err, affinity.ErrChanged) {
		p.ok = false
		p.log.Info("CPU pinning of the idle agent turned off: the CPUs were set from outside")
		return
	}
	p.failures++
	p.backoff = pinBackoff
	if p.failures >= 3 {
		p.ok = false
		p.log.Info("CPU pinning of the idle agent turned off", "err", err)
	}
}

// release gives the threads every CPU back.
func (p *pinner) release() {
	if p.cpu < 0 {
		return
	}
	p.cpu = -1
	if err := affinity.Unpin(); err != nil {
		p.fail(err)
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
