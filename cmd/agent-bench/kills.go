package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"agent/stream"
)

// killRows starts n real `agent daemon run` processes with the given
// heartbeat profile and, trials times, sends SIGKILL to k of them at once
// (never n1), timing from the signal until the event stream of every
// survivor has shown node_down for each of them; then restarts them and
// waits until the cluster is whole again. The agents' own records are the
// measure: what an operator tailing `agent events` sees.
func (b *bench) killRows(dir string, n, k int) {
	label := fmt.Sprintf("failure detection, real agents, %s profile, %d processes, SIGKILL of %d (→ node_down on every survivor's stream)", b.profile, n, k)
	target := 3 * time.Second
	if k > 1 {
		target = 5 * time.Second
	}
	trials := b.trials
	if b.quick {
		trials = 3
	}
	b.logf("%s: starting", label)
	sub := filepath.Join(dir, fmt.Sprintf("kills-%d-%d", n, k))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	roots, pc, agents, err := startProcAgents(ctx, b.agent, sub, n, b.profile)
	if pc != nil {
		defer pc.stop()
	}
	if err != nil {
		b.detectionRow(label, nil, err, target)
		return
	}
	var out []time.Duration
	for range trials {
		victims := map[int]bool{}
		for _, i := range rand.Perm(n - 1)[:k] {
			victims[i+1] = true
		}
		d, err := killOnce(ctx, pc, agents, victims)
		if err != nil {
			b.detectionRow(label, out, err, target)
			return
		}
		out = append(out, d)
		if verbose != nil {
			fmt.Fprintf(verbose, "agent-bench: SIGKILL %d of %d real agents: %v\n", k, n, d.Round(time.Millisecond))
		}
		for i := range victims {
			cmd, err := launchOne(b.agent, sub, roots[i])
			if err != nil {
				b.detectionRow(label, out, err, target)
				return
			}
			pc.cmds[i] = cmd
		}
		if err := waitProcsConverged(ctx, agents, 2*time.Minute); err != nil {
			b.detectionRow(label, out, err, target)
			return
		}
	}
	b.detectionRow(label, out, nil, target)
}

// killOnce subscribes to the event records of every agent not in victims,
// kills the victims together and returns the time until every subscriber
// has seen node_down for all of them.
func killOnce(ctx context.Context, pc *procCluster, agents []*procAgent, victims map[int]bool) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	want := map[string]bool{}
	for i := range victims {
		want[agents[i].name] = true
	}
	var mu sync.Mutex
	var t0 time.Time
	var last time.Time
	left := 0
	all := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i, a := range agents {
		if victims[i] {
			continue
		}
		s, err := stream.Dial(ctx, stream.DialOptions{
			HTTPClient: a.client, URL: "http://unix/v1/events", Kinds: []string{"event"}, Logger: quiet(),
		})
		if err != nil {
			return 0, fmt.Errorf("subscribe to %s: %w", a.name, err)
		}
		left++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			seen := map[string]bool{}
			for len(seen) < len(want) {
				rec, err := s.Next(ctx)
				if err != nil {
					return
				}
				var ev struct {
					ID   string `json:"id"`
					Node string `json:"node"`
				}
				if json.Unmarshal(rec.Data, &ev) != nil || ev.ID != "node_down" || !want[ev.Node] {
					continue
				}
				seen[ev.Node] = true
			}
			at := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if at.After(last) {
				last = at
			}
			if left--; left == 0 {
				close(all)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // subscribed everywhere
	mu.Lock()
	t0 = time.Now()
	mu.Unlock()
	for i := range victims {
		_ = pc.cmds[i].Process.Signal(syscall.SIGKILL)
	}
	for i := range victims {
		_ = pc.cmds[i].Wait()
	}
	select {
	case <-all:
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("node_down of %v not on every survivor's stream within a minute", slices.Sorted(maps.Keys(want)))
	}
	mu.Lock()
	defer mu.Unlock()
	return last.Sub(t0), nil
}

// launchOne starts `agent daemon run` for r, appending to dir/NAME.log.
func launchOne(bin, dir string, r nodeRoot) (*exec.Cmd, error) {
	logf, err := os.OpenFile(filepath.Join(dir, r.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "daemon", "run", "--root", r.root)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}
