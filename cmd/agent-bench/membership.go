package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/monitor"
)

// The membership section measures, with the default profile (lan) unless
// --profile says otherwise: failure detection (a node killed without a
// leave, as SIGKILL does: its sockets close), two of five killed at once,
// the same for nodes gone silent (memberlist's failure detector alone, as
// for a power cut), and the repair of a last delta lost on the way.

// verbose, when set, gets one line per trial.
var verbose io.Writer = os.Stderr

// membershipRows adds the detection and repair rows.
func (b *bench) membershipRows() {
	o := nodeOpts{profile: b.profile, tune: b.tune}
	trials := b.trials
	if b.quick {
		trials = 3
	}
	for _, n := range b.detectNodes {
		b.logf("detection: %d nodes, %d kills", n, trials)
		d, err := detection(n, 1, trials, o, true)
		b.detectionRow(fmt.Sprintf("failure detection, %s profile, %d nodes (kill → dead on every survivor)", b.profile, n), d, err, 3*time.Second)
	}
	b.logf("detection: two of five at once, %d times", trials)
	d, err := detection(5, 2, trials, o, true)
	b.detectionRow(fmt.Sprintf("failure detection, %s profile, two of five killed at once", b.profile), d, err, 5*time.Second)
	// Gone silent: no crash signal, memberlist's probes and suspicion
	// alone. No promise of its own (SPEC's are for killed agents).
	n := slices.Max(b.detectNodes)
	b.logf("detection: %d nodes, %d gone silent", n, trials)
	d, err = detection(n, 1, trials, o, false)
	b.detectionRow(fmt.Sprintf("failure detection, %s profile, %d nodes, node gone silent (power cut: memberlist alone)", b.profile, n), d, err, 0)
	b.logf("detection: two of five gone silent at once, %d times", trials)
	d, err = detection(5, 2, trials, o, false)
	b.detectionRow(fmt.Sprintf("failure detection, %s profile, two of five gone silent at once (memberlist alone)", b.profile), d, err, 0)
	for _, n := range b.detectNodes {
		b.logf("repair of a lost last delta: %d nodes", n)
		r, err := lostDeltaRepair(n, trials, o)
		if err != nil {
			b.add(fmt.Sprintf("repair of a lost last delta, %d nodes", n), "not measured: "+err.Error(), "≤ 2 s", nil)
			continue
		}
		worst := slices.Max(r)
		b.add(fmt.Sprintf("repair of a silently lost last delta, %s profile, %d nodes", b.profile, n),
			fmt.Sprintf("median %s, max %s (%d losses)", ms(quantile(r, 0.5)), ms(worst), len(r)), "≤ 2 s", ptr(worst <= 2*time.Second))
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// dur is d in seconds, or in milliseconds under a second.
func dur(d time.Duration) string {
	if d < time.Second {
		return ms(d)
	}
	return secs(d)
}

// detectionRow adds a detection row; a zero target is a row without a
// promise of its own.
func (b *bench) detectionRow(metric string, d []time.Duration, err error, target time.Duration) {
	t := fmt.Sprintf("≤ %v", target)
	if target == 0 {
		t = "none"
	}
	if err != nil {
		b.add(metric, "not measured: "+err.Error(), t, nil)
		return
	}
	worst := slices.Max(d)
	var met *bool
	if target > 0 {
		met = ptr(worst <= target)
	}
	b.add(metric, fmt.Sprintf("median %s, max %s (%d kills)", dur(quantile(d, 0.5)), dur(worst), len(d)), t, met)
}

// detection starts a cluster of n nodes and, trials times, kills k of
// them at once (never n1, the seed; crash: as SIGKILL does, else
// silenced), times until every survivor has them all dead, then restarts
// them on their ports and waits until the cluster is whole again.
func detection(n, k, trials int, o nodeOpts, crash bool) ([]time.Duration, error) {
	c, err := startHBCluster(n, o)
	if err != nil {
		return nil, err
	}
	defer c.close()
	var out []time.Duration
	for range trials {
		victims := map[string]bool{}
		for _, i := range rand.Perm(n - 1)[:k] {
			victims[c.nodes[i+1].name] = true
		}
		// Kill them together, as one event: closing sockets takes a
		// moment, so in parallel.
		t0 := time.Now()
		done := make(chan struct{}, k)
		for _, v := range c.nodes {
			if victims[v.name] {
				go func() { v.stop(crash); done <- struct{}{} }()
			}
		}
		for range k {
			<-done
		}
		if err := c.waitStates(victims, monitor.StateDead, time.Minute); err != nil {
			return out, err
		}
		out = append(out, time.Since(t0))
		if verbose != nil {
			fmt.Fprintf(verbose, "agent-bench: detection %d/%d nodes: %v\n", k, n, out[len(out)-1].Round(time.Millisecond))
		}
		for i, v := range c.nodes {
			if !victims[v.name] {
				continue
			}
			back, err := startNode(c.cluster, v.name, []string{c.nodes[0].hb.Addr()}, v.opts, v.port)
			if err != nil {
				return out, fmt.Errorf("restart %s: %w", v.name, err)
			}
			c.nodes[i] = back
		}
		if err := c.waitStates(victims, monitor.StateAlive, time.Minute); err != nil {
			return out, err
		}
		if err := c.waitConverged(time.Minute); err != nil {
			return out, err
		}
	}
	return out, nil
}

// waitStates waits until every node not in victims sees every victim in
// state (alive: and every victim sees the others alive).
func (c *hbCluster) waitStates(victims map[string]bool, state string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, n := range c.nodes {
			if victims[n.name] && state != monitor.StateAlive {
				continue
			}
			members := n.store.Members()
			for v := range victims {
				if v != n.name && members[v].State != state {
					ok = false
				}
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%v not %s everywhere within %v", keys(victims), state, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// lostDeltaRepair measures, trials times, how long a node that silently
// lost the last delta of a change takes to hold the change: n1 changes its
// data once, a random other node drops that delta, and nothing follows.
func lostDeltaRepair(n, trials int, o nodeOpts) ([]time.Duration, error) {
	var victim atomic.Pointer[string]
	var dropped atomic.Bool
	o.drop = func(node string, msg []byte) bool {
		v := victim.Load()
		if v == nil || *v != node || len(msg) == 0 || msg[0] != 'd' || !bytes.Contains(msg, []byte(`"n":"n1"`)) {
			return false
		}
		dropped.Store(true)
		victim.Store(nil) // that one delta only
		return true
	}
	c, err := startHBCluster(n, o)
	if err != nil {
		return nil, err
	}
	defer c.close()
	time.Sleep(time.Second) // past the join's exchanges
	var out []time.Duration
	for i := range trials {
		r := c.nodes[1+rand.IntN(n-1)]
		dropped.Store(false)
		victim.Store(&r.name)
		t0 := time.Now()
		gen, _, err := c.nodes[0].store.UpdateLocal("bench", func(d *monitor.NodeData) {
			d.Labels["lost"] = strconv.Itoa(i)
		})
		if err != nil {
			return out, err
		}
		deadline := t0.Add(time.Minute)
		for {
			if g, _, _ := r.store.Held("n1"); g >= gen {
				break
			}
			if time.Now().After(deadline) {
				return out, fmt.Errorf("%s never repaired n1's gen %d", r.name, gen)
			}
			time.Sleep(time.Millisecond)
		}
		if !dropped.Load() {
			return out, fmt.Errorf("%s did not drop the delta", r.name)
		}
		out = append(out, time.Since(t0))
		time.Sleep(1500 * time.Millisecond) // past the trailing digests
	}
	return out, nil
}

// parseTune reads --memberlist: comma-separated key=value overrides of
// memberlist's timings, for experiments.
func parseTune(s string) (func(*memberlist.Config), error) {
	if s == "" {
		return nil, nil
	}
	var sets []func(*memberlist.Config)
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		dur := func(f func(*memberlist.Config, time.Duration)) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s: %v", k, err)
			}
			sets = append(sets, func(c *memberlist.Config) { f(c, d) })
			return nil
		}
		num := func(f func(*memberlist.Config, int)) error {
			i, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s: %v", k, err)
			}
			sets = append(sets, func(c *memberlist.Config) { f(c, i) })
			return nil
		}
		var err error
		switch k {
		case "probe_interval":
			err = dur(func(c *memberlist.Config, d time.Duration) { c.ProbeInterval = d })
		case "probe_timeout":
			err = dur(func(c *memberlist.Config, d time.Duration) { c.ProbeTimeout = d })
		case "gossip_interval":
			err = dur(func(c *memberlist.Config, d time.Duration) { c.GossipInterval = d })
		case "gossip_nodes":
			err = num(func(c *memberlist.Config, i int) { c.GossipNodes = i })
		case "suspicion_mult":
			err = num(func(c *memberlist.Config, i int) { c.SuspicionMult = i })
		case "suspicion_max_mult":
			err = num(func(c *memberlist.Config, i int) { c.SuspicionMaxTimeoutMult = i })
		case "awareness_max":
			err = num(func(c *memberlist.Config, i int) { c.AwarenessMaxMultiplier = i })
		case "indirect_checks":
			err = num(func(c *memberlist.Config, i int) { c.IndirectChecks = i })
		default:
			err = fmt.Errorf("unknown key %q (probe_interval, probe_timeout, gossip_interval, gossip_nodes, suspicion_mult, suspicion_max_mult, awareness_max, indirect_checks)", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return func(c *memberlist.Config) {
		for _, f := range sets {
			f(c)
		}
	}, nil
}
