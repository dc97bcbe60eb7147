package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"agent/agent"
	"agent/config"
	"agent/events"
	"agent/monitor"
	"agent/stream"
)

// fanoutCase is one fan-out row: subs websocket subscribers in a child
// process while this process publishes rate records/s.
type fanoutCase struct {
	subs, rate int
	// batch asks for batch=1 frames; otherwise one record per message,
	// the stream's default.
	batch bool
	// listener runs a whole agent and its TCP listener, publishing real
	// patches through its store; otherwise a bus and the websocket handler
	// alone, on a loopback server.
	listener bool
	// floor serves the same frames without the agent (fanout_floor.go).
	floor   bool
	seconds time.Duration
}

func (c fanoutCase) mode() string {
	if c.batch {
		return "batch=1"
	}
	return "one record per message"
}

// fanoutWarmup is how long records flow before the measurement starts:
// the first second after a thousand subscribers connect at once is spent
// growing buffers, heaps and socket queues on both sides, and is not the
// steady state the target is about. The row gives that transient too.
const fanoutWarmup = 2 * time.Second

// fanoutRow measures one case: delivery latency of the records after the
// warm-up, from their own publish time, and the CPU this process (the
// agent side) used meanwhile.
func (b *bench) fanoutRow(c fanoutCase) {
	childProfile := ""
	if b.cpuprof != "" {
		childProfile = fmt.Sprintf("%s.child%d", b.cpuprof, c.subs)
	}
	where := "handler"
	switch {
	case c.listener:
		where = "a whole agent's TCP listener"
	case c.floor:
		where = "no agent: the floor, one goroutine writing the same frames to plain sockets"
	}
	metric := fmt.Sprintf("stream fan-out, %d subscribers × %d records/s, %s (%s; subscribers in another process, after %s warm-up)",
		c.subs, c.rate, c.mode(), where, fanoutWarmup)
	res, side, err := measureFanout(c, childProfile)
	if err != nil {
		b.add(metric, "error: "+err.Error(), "", nil)
		return
	}
	want := float64(c.subs * c.rate)
	got := float64(res.Deliveries) / (c.seconds + fanoutWarmup).Seconds()
	target := "p99 ≤ 100 ms within one core"
	ok := side.cores <= 1 && res.P99ms <= 100 && got >= 0.95*want
	if c.listener {
		target = "p99 ≤ 100 ms"
		ok = res.P99ms <= 100 && got >= 0.95*want
	}
	result := fmt.Sprintf("%.0f deliveries/s, p50 %.1f ms, p99 %.1f ms, max %.0f ms, agent side %.2f core (subscribers %.2f core); warm-up p99 %.0f ms",
		got, res.P50ms, res.P99ms, res.MaxMs, side.cores, res.ChildCores, res.WarmP99ms)
	if c.listener {
		result += fmt.Sprintf("; agent RSS %.0f MB (%.0f MB before the subscribers)", side.rssMB, side.rssBeforeMB)
	}
	if c.floor {
		// What the machine allows the row above; no target of its own.
		result = strings.Replace(result, "agent side", "writer", 1)
		b.add(metric, result, "(the machine's floor for the row above)", nil)
		return
	}
	b.add(metric, result, target, &ok)
}

// agentSide is what the parent measured of itself, the agent side.
type agentSide struct {
	cores              float64
	rssMB, rssBeforeMB float64
}

// fanoutTarget is where the subscribers connect and how records are made.
type fanoutTarget struct {
	url     string
	publish func(i int)
	close   func()
}

func measureFanout(c fanoutCase, childProfile string) (fanoutResult, agentSide, error) {
	var res fanoutResult
	var side agentSide
	if err := raiseOpenFiles(); err != nil {
		return res, side, err
	}
	var t *fanoutTarget
	var err error
	switch {
	case c.listener:
		t, err = listenerTarget(c.subs)
	case c.floor:
		t, err = floorTarget()
	default:
		t, err = handlerTarget()
	}
	if err != nil {
		return res, side, err
	}
	defer t.close()
	// Earlier rows' memory goes back to the system first, so that the
	// figures are this row's.
	debug.FreeOSMemory()
	side.rssBeforeMB = float64(selfRSSKB()) / 1024

	self, err := os.Executable()
	if err != nil {
		return res, side, err
	}
	warm := int(fanoutWarmup.Seconds() * float64(c.rate))
	total := warm + int(c.seconds.Seconds()*float64(c.rate))
	u := t.url
	if c.batch {
		u += "?batch=1"
	}
	args, _ := json.Marshal(childArgs{URL: u, Subs: c.subs, Batch: c.batch, Records: total, Warm: warm,
		Deadline: 5*time.Minute + 3*(c.seconds+fanoutWarmup)})
	cmd := exec.Command(self, "--"+fanoutChildFlag, string(args), "--cpuprofile", childProfile)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, side, err
	}
	if err := cmd.Start(); err != nil {
		return res, side, err
	}
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	rd := bufio.NewReader(out)
	line, err := rd.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		if strings.HasPrefix(line, "{") {
			_ = json.Unmarshal([]byte(line), &res)
			return res, side, fmt.Errorf("subscribers did not start: %s", res.Err)
		}
		return res, side, fmt.Errorf("subscribers did not start: %q %v", line, err)
	}

	var cpu0 time.Duration
	var measured time.Time
	start := time.Now()
	for i := range total {
		if i == warm {
			cpu0, measured = processCPU(), time.Now()
		}
		t.publish(i)
		next := start.Add(time.Duration(i+1) * time.Second / time.Duration(c.rate))
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
	line, err = rd.ReadString('\n')
	side.cores = (processCPU() - cpu0).Seconds() / time.Since(measured).Seconds()
	side.rssMB = float64(selfRSSKB()) / 1024
	if err != nil {
		return res, side, fmt.Errorf("subscribers ended without a result: %v", err)
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, side, err
	}
	waited = true
	_ = cmd.Wait()
	if res.Err != "" {
		return res, side, errors.New(res.Err)
	}
	return res, side, nil
}

// handlerTarget serves the websocket handler alone on a loopback server,
// over a bus of its own.
func handlerTarget() (*fanoutTarget, error) {
	bus, err := events.Open(events.Config{Logger: quiet(), MaxLag: 1 << 20, RingSize: 1 << 17})
	if err != nil {
		return nil, err
	}
	h := stream.NewHandler(stream.HandlerConfig{Bus: stream.BusAdapter{Bus: bus}, Logger: quiet()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = h.Close()
		_ = bus.Close()
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	payload := json.RawMessage(`[{"op":"replace","path":"/monitor/nodes/n1/labels/k","value":"v0123456789"}]`)
	return &fanoutTarget{
		url:     "ws://" + ln.Addr().String() + "/v1/events",
		publish: func(int) { bus.Publish("n1", events.KindPatch, payload) },
		close: func() {
			_ = h.Close()
			_ = srv.Close()
			wg.Wait()
			_ = bus.Close()
		},
	}, nil
}

// listenerTarget runs a whole agent (one node) with its TCP listener on
// loopback, without auth; records are the patches of label changes made
// through its store.
func listenerTarget(subs int) (*fanoutTarget, error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("agent-bench-fanout-%d-", os.Getpid()))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*fanoutTarget, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	hbPort, err := freePort("127.0.0.1")
	if err != nil {
		return fail(err)
	}
	apiPort, err := freePort("127.0.0.1")
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "etc", "svc"), 0o700); err != nil {
		return fail(err)
	}
	// The caps leave room for the subscribers (the defaults would do for
	// 10,000, not for more).
	conf := fmt.Sprintf("[node]\nname = n1\n\n[cluster]\nname = bench-fanout-%d\n\n[hb]\naddr = 127.0.0.1\nport = %d\nprofile = local\n\n"+
		"[listener]\naddr = 127.0.0.1:%d\nauth = none\nmax_conns = %d\nmax_subscribers = %d\n",
		os.Getpid(), hbPort, apiPort, subs+1024, subs+1024)
	if err := os.WriteFile(filepath.Join(dir, "etc", "node.conf"), []byte(conf), 0o600); err != nil {
		return fail(err)
	}
	home, _ := os.UserHomeDir()
	a, err := agent.New(agent.Options{Paths: config.ResolvePaths(dir, os.Geteuid(), home), Logger: quiet(), StatsInterval: -1})
	if err != nil {
		return fail(fmt.Errorf("agent: %w", err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Run(ctx) })
	st := a.Store()
	return &fanoutTarget{
		url: "ws://" + a.ListenAddr() + "/v1/events",
		publish: func(i int) {
			_, _, _ = st.UpdateLocal("bench", func(d *monitor.NodeData) {
				if d.Labels == nil {
					d.Labels = map[string]string{}
				}
				d.Labels["bench"] = strconv.Itoa(i)
			})
		},
		close: func() {
			cancel()
			wg.Wait()
			_ = a.Close()
			_ = os.RemoveAll(dir)
		},
	}, nil
}

// raiseOpenFiles sets the open-file soft limit to the hard limit: ten
// thousand subscribers are ten thousand sockets on each side.
func raiseOpenFiles() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise the open-file limit to %d: %w", lim.Max, err)
		}
	}
	return nil
}

// selfRSSKB is this process's resident set, in KiB (0 when unknown).
func selfRSSKB() int64 {
	kb, _ := rssKB(os.Getpid())
	return kb
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
