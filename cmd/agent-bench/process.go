package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"agent/agent"
	"agent/config"
	"agent/monitor"
)

// freePort returns a port free for TCP and UDP on ip when called.
func freePort(ip string) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

// nodeRoot is the --root of one agent of a bench cluster.
type nodeRoot struct {
	name, ip, root string
	hbPort         int
}

// writeRoots writes node.conf for count agents on 127.0.0.1..count under
// dir, the first two as seeds, the given heartbeat profile, no listener.
func writeRoots(dir string, count int, profile string) ([]nodeRoot, error) {
	var nodes []nodeRoot
	var seeds []string
	for i := 1; i <= count; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		port, err := freePort(ip)
		if err != nil {
			return nil, err
		}
		n := nodeRoot{name: fmt.Sprintf("n%d", i), ip: ip, root: filepath.Join(dir, fmt.Sprintf("n%d", i)), hbPort: port}
		nodes = append(nodes, n)
		if i <= 2 {
			seeds = append(seeds, net.JoinHostPort(ip, strconv.Itoa(port)))
		}
	}
	cluster := fmt.Sprintf("bench-%d", os.Getpid())
	for _, n := range nodes {
		if err := os.MkdirAll(filepath.Join(n.root, "etc", "svc"), 0o700); err != nil {
			return nil, err
		}
		conf := fmt.Sprintf("[node]\nname = %s\n\n[cluster]\nname = %s\nseeds = %s\n\n[hb]\naddr = %s\nport = %d\nprofile = %s\n",
			n.name, cluster, strings.Join(seeds, " "), n.ip, n.hbPort, profile)
		if err := os.WriteFile(filepath.Join(n.root, "etc", "node.conf"), []byte(conf), 0o600); err != nil {
			return nil, err
		}
	}
	return nodes, nil
}

// inprocAgents runs count agent.Agent instances in this process.
type inprocAgents struct {
	agents []*agent.Agent
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startAgents(dir string, count int) (*inprocAgents, error) {
	roots, err := writeRoots(dir, count, "local")
	if err != nil {
		return nil, err
	}
	ia := &inprocAgents{}
	ctx, cancel := context.WithCancel(context.Background())
	ia.cancel = cancel
	home, _ := os.UserHomeDir()
	for _, r := range roots {
		a, err := agent.New(agent.Options{
			Paths: config.ResolvePaths(r.root, os.Geteuid(), home), Logger: quiet(), StatsInterval: -1,
		})
		if err != nil {
			ia.close()
			return nil, fmt.Errorf("agent %s: %w", r.name, err)
		}
		ia.agents = append(ia.agents, a)
		ia.wg.Add(1)
		go func() { defer ia.wg.Done(); _ = a.Run(ctx) }()
	}
	deadline := time.Now().Add(time.Minute)
	for !ia.converged() {
		if time.Now().After(deadline) {
			ia.close()
			return nil, errors.New("in-process agents did not converge within 1m")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ia, nil
}

func (ia *inprocAgents) converged() bool {
	for _, owner := range ia.agents {
		gen, _, _ := owner.Store().Local()
		for _, a := range ia.agents {
			if g, _, ok := a.Store().Held(owner.Name()); !ok || g != gen {
				return false
			}
		}
	}
	return true
}

func (ia *inprocAgents) close() {
	ia.cancel()
	ia.wg.Wait()
	for _, a := range ia.agents {
		_ = a.Close()
	}
}

// measureWait starts `agent wait` on agent B for a value of A's data, then
// makes that change on A and times until the wait process has exited 0.
// The wait process is given time to subscribe before the change: what is
// measured is propagation plus the stream plus the process's exit.
func measureWait(bin string, ia *inprocAgents, samples int) ([]time.Duration, error) {
	a, b := ia.agents[0], ia.agents[len(ia.agents)-1]
	var lat []time.Duration
	base := time.Now().Unix()
	for i := range samples {
		v := base + int64(i) + 1
		cmd := exec.Command(bin, "--root", b.Paths().Root, "wait", "--filter",
			fmt.Sprintf("monitor.nodes.%s.frozen=%d", a.Name(), v), "--duration", "30s")
		var errb strings.Builder
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Subscribed by then on an idle machine; a late subscriber would
		// still see the value in its snapshot, only the time would be short.
		time.Sleep(300 * time.Millisecond)
		t0 := time.Now()
		if _, _, err := a.Store().UpdateLocal("bench", func(d *monitor.NodeData) { d.Frozen = v }); err != nil {
			return nil, err
		}
		if err := <-done; err != nil {
			return nil, fmt.Errorf("agent wait: %v: %s", err, errb.String())
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

// procCluster is count real `agent daemon run` processes.
type procCluster struct {
	cmds []*exec.Cmd
}

func startProcs(bin, dir string, count int, profile string) (*procCluster, []nodeRoot, error) {
	roots, err := writeRoots(dir, count, profile)
	if err != nil {
		return nil, nil, err
	}
	pc, err := launchProcs(bin, dir, roots)
	if err != nil {
		return nil, nil, err
	}
	// Converged when the last node sees count alive members.
	deadline := time.Now().Add(time.Minute)
	last := roots[len(roots)-1]
	for {
		out, err := exec.Command(bin, "--root", last.root, "wait", "--duration", "1s", "--filter",
			fmt.Sprintf("cluster.nodes.n1.state=alive and cluster.nodes.n%d.state=alive and monitor.nodes.n1.status=idle", count)).Output()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			pc.stop()
			return nil, nil, fmt.Errorf("real agents not converged: %v %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return pc, roots, nil
}

// launchProcs starts `agent daemon run` for each root, logging to
// dir/NAME.log (launchOne).
func launchProcs(bin, dir string, roots []nodeRoot) (*procCluster, error) {
	pc := &procCluster{}
	for _, r := range roots {
		cmd, err := launchOne(bin, dir, r)
		if err != nil {
			pc.stop()
			return nil, err
		}
		pc.cmds = append(pc.cmds, cmd)
	}
	return pc, nil
}

// cpuTotal is the CPU ticks of every process so far.
func (pc *procCluster) cpuTotal() (int64, error) {
	var sum int64
	for _, c := range pc.cmds {
		t, err := cpuTicks(c.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

// rssTotal is the RSS of every process, summed, in KiB.
func (pc *procCluster) rssTotal() (int64, error) {
	var sum int64
	for _, c := range pc.cmds {
		r, err := rssKB(c.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += r
	}
	return sum, nil
}

func (pc *procCluster) stop() {
	for _, c := range pc.cmds {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}

// cpuTicks is utime+stime of /proc/PID/stat, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat times")
	}
	return u + st, nil
}

// rssKB is VmRSS of /proc/PID/status.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS")
}

// clockTicks is USER_HZ; 100 on every Linux this runs on.
const clockTicks = 100

// idleUsage measures every process's RSS (max), CPU over d (as a
// percentage of one core) and context switches per second (what an idle
// agent's CPU is made of on a virtual machine: each wake-up of one of its
// threads), each sorted.
func (pc *procCluster) idleUsage(d time.Duration) (maxRSSKB int64, cpus, switches []float64, err error) {
	t0 := time.Now()
	start := make([]int64, len(pc.cmds))
	cs0 := make([]int64, len(pc.cmds))
	for i, c := range pc.cmds {
		if start[i], err = cpuTicks(c.Process.Pid); err != nil {
			return 0, nil, nil, err
		}
		cs0[i] = ctxSwitches(c.Process.Pid)
	}
	time.Sleep(d)
	el := time.Since(t0).Seconds()
	for i, c := range pc.cmds {
		end, err := cpuTicks(c.Process.Pid)
		if err != nil {
			return 0, nil, nil, err
		}
		cpus = append(cpus, float64(end-start[i])/clockTicks/el*100)
		switches = append(switches, float64(ctxSwitches(c.Process.Pid)-cs0[i])/el)
		rss, err := rssKB(c.Process.Pid)
		if err != nil {
			return 0, nil, nil, err
		}
		maxRSSKB = max(maxRSSKB, rss)
	}
	slices.Sort(cpus)
	slices.Sort(switches)
	return maxRSSKB, cpus, switches, nil
}

// ctxSwitches is the sum of the voluntary and involuntary context switches
// of every thread of pid (0 when unknown).
func ctxSwitches(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}
