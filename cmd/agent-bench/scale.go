package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"agent/heartbeat"
	"agent/internal/sim"
)

// scaleChangeRate is the cluster-wide change rate of the loaded traffic
// row, in changes per second of real time (k times fewer per wall second
// at scale k).
const scaleChangeRate = 10

// scaleFactor returns the time scale k for a simulated cluster of n nodes:
// the one --scale gives for n, else 1 up to 300 nodes (real time) and
// n/100 above (10 at 1000 nodes). At n/200 (5 at 1000 nodes) a probe
// timed out after 1 s of wall time, which a process running a thousand
// memberlists and their garbage collections on two cores did not always
// answer in: false suspicions and deaths, and the rejoins they cause,
// kept the membership from ever being whole.
func (b *bench) scaleFactor(n int) float64 {
	if k, ok := b.scales[n]; ok {
		return k
	}
	if k, ok := b.scales[0]; ok && n > 300 {
		return k
	}
	if n <= 300 {
		return 1
	}
	return float64(n) / 100
}

// parseScales parses --scale: "K" (every size above 300 nodes) or
// "N=K,N=K" (per size).
func parseScales(s string) (map[int]float64, error) {
	out := map[int]float64{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		n, ks, per := strings.Cut(part, "=")
		if !per {
			n, ks = "0", part
		}
		size, err1 := strconv.Atoi(n)
		k, err2 := strconv.ParseFloat(ks, 64)
		if err1 != nil || err2 != nil || k < 1 || size < 0 {
			return nil, fmt.Errorf("%q: want K or N=K with K ≥ 1", part)
		}
		out[size] = k
	}
	return out, nil
}

// scaleRows runs the simulated cluster of n nodes and adds its rows.
func (b *bench) scaleRows(n int) {
	k := b.scaleFactor(n)
	label := fmt.Sprintf("sim %d nodes", n)
	if k != 1 {
		label += fmt.Sprintf(", k=%g", k)
	}
	if b.grace > 0 {
		label += fmt.Sprintf(", digest grace %v", b.grace)
	}
	samples, window := 60, 20*time.Second
	switch {
	case b.quick:
		samples, window = 15, 5*time.Second
	case n >= 1000:
		// At k = 10 a 20 s window is over 3 minutes of wall time.
		samples, window = 30, 10*time.Second
	}
	window = time.Duration(float64(window) * k)
	b.logf("%s: starting", label)
	if n > 300 {
		defer relaxGC()()
	}
	ctx := context.Background()
	c, err := sim.Start(ctx, sim.Config{
		Nodes: n, Scale: k, Seed: uint64(time.Now().UnixNano()),
		Heartbeat: func(hc *heartbeat.Config) {
			if b.grace > 0 {
				hc.DigestGrace = time.Duration(float64(b.grace) * k)
			}
		},
		Progress: func(f string, a ...any) { b.logf("%s: "+f, append([]any{label}, a...)...) },
	})
	if err != nil {
		b.add(label, "not measured: "+err.Error(), "", nil)
		return
	}
	defer c.Close()
	probe := c.ProbeInterval()
	b.logf("%s: converged in %v, %d goroutines; %d changes one at a time", label, c.StartTime.Round(time.Second), c.Goroutines, samples)
	// Let the join's exchanges and trailing digests settle.
	time.Sleep(time.Duration(float64(2*time.Second) * k))

	hb0 := c.HeartbeatStats()
	idle, err := c.Traffic(ctx, window, 0)
	if err != nil {
		b.add(label, "not measured: "+err.Error(), "", nil)
		return
	}
	pause, limit := time.Duration(float64(100*time.Millisecond)*k), time.Duration(float64(30*time.Second)*k)
	if n >= 1000 {
		// A change not everywhere after 10 s of protocol time is
		// counted as missed: 30 s × k would be 5 minutes per change.
		limit = time.Duration(float64(10*time.Second) * k)
	}
	spreads, err := c.Spread(ctx, samples, 0, pause, limit)
	if err != nil {
		b.add(label, "not measured: "+err.Error(), "", nil)
		return
	}
	b.logf("%s: %d large changes", label, max(5, samples/3))
	large, err := c.Spread(ctx, max(5, samples/3), largeChange, pause, limit)
	if err != nil {
		b.add(label, "not measured: "+err.Error(), "", nil)
		return
	}
	b.logf("%s: %g changes/s for %v", label, scaleChangeRate/k, window)
	load, err := c.Traffic(ctx, window, scaleChangeRate/k)
	if err != nil {
		b.add(label, "not measured: "+err.Error(), "", nil)
		return
	}
	// A run that cannot keep up shows as missed convergence.
	conv := "converged after the load"
	if err := c.WaitConverged(ctx, time.Duration(float64(30*time.Second)*k)); err != nil {
		conv = err.Error()
	}
	hb := sim.SubStats(c.HeartbeatStats(), hb0)
	b.logf("%s: one node joins", label)
	join, joinErr := c.JoinOne(ctx, time.Duration(float64(60*time.Second)*k))

	real := func(d time.Duration) time.Duration { return time.Duration(float64(d) / k) }
	spread := func(d []time.Duration) string {
		p50, p99 := quantile(d, 0.5), quantile(d, 0.99)
		s := fmt.Sprintf("p50 %s, p99 %s", ms(real(p50)), ms(real(p99)))
		if k != 1 {
			s += fmt.Sprintf(" (wall ÷ k; %.3f / %.3f probe intervals)", float64(p50)/float64(probe), float64(p99)/float64(probe))
		}
		return s
	}
	t99, t100, missed := spreadTimes(spreads)
	b.add(label+": one change → 99 % of the other nodes", fmt.Sprintf("%s, %d samples", spread(t99), len(spreads)), "", nil)
	res := fmt.Sprintf("%s, %d samples", spread(t100), len(spreads))
	if missed > 0 {
		res += fmt.Sprintf("; %d changes not everywhere within %v", missed, real(limit))
	}
	target, ok := "", (*bool)(nil)
	if n >= 1000 {
		target, ok = "p99 ≤ 1 s", ptr(missed == 0 && real(quantile(t100, 0.99)) <= time.Second)
	}
	b.add(label+": one change → 100 % of the other nodes", res, target, ok)
	var first, fan []time.Duration
	for _, sp := range spreads {
		if sp.T100 > 0 {
			first = append(first, sp.T1)
			fan = append(fan, sp.T100-sp.T1)
		}
	}
	b.add(label+": one change → first node; first → last node (the owner's sends in turn)",
		fmt.Sprintf("first: %s; first → last: %s", spread(first), spread(fan)), "", nil)
	_, l100, lmissed := spreadTimes(large)
	res = fmt.Sprintf("%s, %d samples", spread(l100), len(large))
	if lmissed > 0 {
		res += fmt.Sprintf("; %d changes not everywhere within %v", lmissed, real(limit))
	}
	b.add(fmt.Sprintf("%s: one %d B change (over the packet size: TCP to each peer) → 100 %%", label, largeChange), res, "", nil)

	perNode := func(t sim.Traffic) string {
		bps := t.BytesPerNodePerSec(n) * k
		pk := float64(t.Net.BytesSent) / float64(n) / t.Window.Seconds() * k
		return fmt.Sprintf("%.0f B/s (packets %.0f, streams %.0f); sim CPU %.2f cores", bps, pk, bps-pk, t.CPU.Seconds()/t.Window.Seconds())
	}
	b.add(label+": bytes sent per node per second, idle", perNode(idle), "", nil)
	b.add(fmt.Sprintf("%s: bytes sent per node per second, %d changes/s cluster-wide", label, scaleChangeRate),
		fmt.Sprintf("%s; %d changes", perNode(load), load.Changes), "", nil)

	ex := idle.Net.Exchanges + load.Net.Exchanges
	if ex > 0 {
		mean := float64(idle.Net.ExchangeBytes+load.Net.ExchangeBytes) / float64(2*ex)
		b.add(label+": push/pull message size", fmt.Sprintf("mean %.1f KiB, largest %.1f KiB (%d push/pulls; memberlist's cap 20 MiB)",
			mean/1024, float64(max(idle.Net.ExchangeMax, load.Net.ExchangeMax))/1024, ex), "", nil)
	} else {
		b.add(label+": push/pull message size", "no push/pull in the windows", "", nil)
	}

	full := fmt.Sprintf("%d resyncs, %d full requests, %d full sends, %d divergences, %d queue overflows over %d changes; %s",
		hb.Resyncs, hb.FullRequests, hb.FullSent, hb.Divergences, hb.QueueOverflows, len(spreads)+len(large)+load.Changes, conv)
	b.add(label+": full resyncs while measuring", full, "0", ptr(hb.Resyncs == 0))
	if joinErr != nil {
		b.add(label+": one node joins", "not measured: "+joinErr.Error(), "", nil)
	} else {
		b.add(label+": one node joins (through n1)", fmt.Sprintf("holds every node's data after %s, every node holds its data after %s; %d TCP streams, %.0f KiB",
			ms(time.Duration(float64(join.Holds)/k)), ms(time.Duration(float64(join.Held)/k)), join.Net.StreamsAccepted,
			float64(join.Net.StreamBytesSent)/1024), "", nil)
	}
	b.add(label+": start-up and footprint",
		fmt.Sprintf("converged %v after start; %.1f goroutines per node; %s", c.StartTime.Round(time.Second),
			float64(c.Goroutines)/float64(n), footprint()), "", nil)
}

// relaxGC lets the heap of a large simulation grow to five times its live
// size (GOGC 400), up to 10 GiB, and returns what puts the settings back.
// A thousand nodes hold about 2 GiB live (every node's copy of every
// node's data): at the default GOGC the collector ran every 2 GiB
// allocated and took 40 % of the CPU of the start-up, which starved
// memberlists into false suspicions. One agent holds one node's share.
func relaxGC() (restore func()) {
	pct := debug.SetGCPercent(400)
	limit := debug.SetMemoryLimit(10 << 30)
	return func() {
		debug.SetGCPercent(pct)
		debug.SetMemoryLimit(limit)
	}
}

// footprint is the live heap (after a collection), the heap in use and
// the process's resident memory now and at its peak.
func footprint() string {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	inUse := m.HeapInuse
	runtime.GC()
	runtime.ReadMemStats(&m)
	s := fmt.Sprintf("heap %.0f MiB in use, %.0f MiB live after a GC", float64(inUse)/(1<<20), float64(m.HeapAlloc)/(1<<20))
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "VmRSS" || k == "VmHWM") {
				name := map[string]string{"VmRSS": "RSS", "VmHWM": "peak RSS"}[k]
				s += fmt.Sprintf(", %s %s", name, strings.Join(strings.Fields(v), " "))
			}
		}
	}
	return s
}

// largeChange is the size of the label value of the large changes: over
// the heartbeat's UDP limit (memberlist's 1400-byte packets, less headers).
const largeChange = 2048

// spreadTimes returns the times to 99 % and 100 % of the changes that got
// there, and how many never reached every node.
func spreadTimes(spreads []sim.Spread) (t99, t100 []time.Duration, missed int) {
	for _, s := range spreads {
		if s.T99 > 0 {
			t99 = append(t99, s.T99)
		}
		if s.T100 > 0 {
			t100 = append(t100, s.T100)
		} else {
			missed++
		}
	}
	return t99, t100, missed
}
