package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// throttle ways of starving the agent of CPU.
const (
	quotaAlone = iota // a cgroup CPU quota of a fifth of a core
	quotaBusy         // the same quota, shared with a busy loop
	niceBusy          // nice 19, pinned to one CPU beside a busy loop pinned there
)

// throttleRow runs five real agents and, for b.throttle, starves one of
// them (n5) of CPU: held to a fifth of a core with a cgroup CPU quota,
// alone in its cgroup, then sharing it with a busy loop; then at nice 19
// pinned to one CPU beside a busy loop pinned there (taskset). It counts
// how often the four others declared n5 dead meanwhile: the target is
// never. It needs root, a writable cgroup cpu controller (v1 or v2) and
// taskset.
func (b *bench) throttleRow(dir string) {
	for _, way := range []int{quotaAlone, quotaBusy, niceBusy} {
		what := [...]string{
			"agent at a fifth of a core (cgroup CPU quota)",
			"agent sharing a fifth of a core with a busy loop (cgroup CPU quota)",
			"agent at nice 19 pinned beside a busy loop (taskset)",
		}[way] + fmt.Sprintf(" for %v, %s profile: false downs", b.throttle, b.profile)
		b.logf("throttle: %s", what)
		res, ok, err := b.throttleOnce(filepath.Join(dir, fmt.Sprintf("throttle-%d", way)), way)
		if err != nil {
			b.add(what, "not measured: "+err.Error(), "0", nil)
			continue
		}
		b.add(what, res, "0", ptr(ok))
	}
}

func (b *bench) throttleOnce(dir string, way int) (string, bool, error) {
	var cg *cpuCgroup
	if way != niceBusy {
		var err error
		if cg, err = newCPUCgroup(fmt.Sprintf("agent-bench-%d", os.Getpid()), 20000, 100000); err != nil {
			return "", false, err
		}
		defer cg.remove()
	} else if _, err := exec.LookPath("taskset"); err != nil {
		return "", false, errors.New("no taskset command")
	}
	pc, roots, err := startProcs(b.agent, dir, 5, b.profile)
	if err != nil {
		return "", false, err
	}
	defer pc.stop()
	victim := pc.cmds[4].Process.Pid
	if cg != nil {
		if err := cg.add(victim); err != nil {
			return "", false, err
		}
	}
	if way != quotaAlone {
		loop := exec.Command("sh", "-c", "while :; do :; done")
		if way == niceBusy {
			loop = exec.Command("taskset", "-c", "0", "sh", "-c", "while :; do :; done")
		}
		if err := loop.Start(); err != nil {
			return "", false, err
		}
		defer func() { _ = loop.Process.Kill(); _ = loop.Wait() }()
		if cg != nil {
			if err := cg.add(loop.Process.Pid); err != nil {
				return "", false, err
			}
		}
	}
	if way == niceBusy {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", "0", fmt.Sprint(victim)).CombinedOutput(); err != nil {
			return "", false, fmt.Errorf("taskset: %v: %s", err, out)
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, victim, 19); err != nil {
			return "", false, fmt.Errorf("nice 19: %w", err)
		}
		// Every thread: setpriority on a pid only renices its main thread.
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", victim)); err == nil {
			for _, e := range ents {
				if tid, err := strconv.Atoi(e.Name()); err == nil {
					_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, 19)
				}
			}
		}
	}
	t0 := time.Now()
	c0, err := cpuTicks(victim)
	if err != nil {
		return "", false, err
	}
	time.Sleep(b.throttle)
	el := time.Since(t0).Seconds()
	c1, err := cpuTicks(victim)
	if err != nil {
		return "", false, err
	}
	used := float64(c1-c0) / clockTicks / el * 100
	var throttled time.Duration
	if cg != nil {
		if err := cg.release(victim); err != nil {
			return "", false, err
		}
		throttled, _ = cg.throttledTime()
	}
	downs := 0
	for _, r := range roots[:4] {
		out, err := exec.Command(b.agent, "--root", r.root, "events", "--since", "0", "--kind", "event", "-o", "json",
			"--duration", "2s", "--filter", "data.id=node_down and data.node=n5").Output()
		if err != nil && len(out) == 0 {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				return "", false, fmt.Errorf("agent events on %s: %v", r.name, err)
			}
		}
		downs += strings.Count(string(out), `"node_down"`)
	}
	res := fmt.Sprintf("%d node_down of n5 on its 4 peers; n5 used %.1f%% of a core", downs, used)
	if throttled > 0 {
		res += fmt.Sprintf(", throttled %.1f s", throttled.Seconds())
	}
	return res, downs == 0, nil
}

// cpuCgroup is a cgroup with a CPU quota, v2 (cpu.max) or v1
// (cpu.cfs_quota_us).
type cpuCgroup struct {
	dir, parent string
	v2          bool
}

func newCPUCgroup(name string, quota, period int) (*cpuCgroup, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (cgroup CPU quota)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		c := &cpuCgroup{dir: filepath.Join("/sys/fs/cgroup", name), parent: "/sys/fs/cgroup", v2: true}
		if err := os.Mkdir(c.dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(c.dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, period)), 0); err != nil {
			c.remove()
			return nil, fmt.Errorf("cpu.max (is the cpu controller enabled in cgroup.subtree_control?): %w", err)
		}
		return c, nil
	}
	c := &cpuCgroup{dir: filepath.Join("/sys/fs/cgroup/cpu", name), parent: "/sys/fs/cgroup/cpu"}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("no cgroup cpu controller: %w", err)
	}
	for file, v := range map[string]int{"cpu.cfs_period_us": period, "cpu.cfs_quota_us": quota} {
		if err := os.WriteFile(filepath.Join(c.dir, file), []byte(strconv.Itoa(v)), 0); err != nil {
			c.remove()
			return nil, err
		}
	}
	return c, nil
}

func (c *cpuCgroup) add(pid int) error {
	return os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// release moves pid back to the parent cgroup.
func (c *cpuCgroup) release(pid int) error {
	return os.WriteFile(filepath.Join(c.parent, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// throttledTime is how long the cgroup's tasks were held back by the quota.
func (c *cpuCgroup) throttledTime() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "throttled_usec": // v2
			return time.Duration(v) * time.Microsecond, nil
		case "throttled_time": // v1, nanoseconds
			return time.Duration(v), nil
		}
	}
	return 0, errors.New("no throttled time in cpu.stat")
}

// remove moves what is left back to the parent and deletes the cgroup.
func (c *cpuCgroup) remove() {
	if b, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs")); err == nil {
		for _, p := range strings.Fields(string(b)) {
			_ = os.WriteFile(filepath.Join(c.parent, "cgroup.procs"), []byte(p), 0)
		}
	}
	_ = os.Remove(c.dir)
}
