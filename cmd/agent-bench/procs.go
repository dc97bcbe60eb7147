package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"agent/stream"
)

// procAgent is one real agent of the process row, reached through its
// unix socket.
type procAgent struct {
	name   string
	client *http.Client
	events *stream.Stream
}

// procRows starts n real `agent daemon run` processes (profile local) on
// 127.0.0.x, subscribes to the patch records of each, and measures how a
// freeze or thaw ordered on one agent reaches 99 % and 100 % of the
// others: from the order's HTTP request to the patch record on each
// agent's own stream. It reports the agents' RSS and CPU as well.
func (b *bench) procRows(dir string, n int) {
	label := fmt.Sprintf("real agents, %d processes", n)
	if n > 250 {
		b.add(label, "not measured: at most 250 agents on 127.0.0.x", "", nil)
		return
	}
	b.logf("%s: starting", label)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	_, pc, agents, err := startProcAgents(ctx, b.agent, filepath.Join(dir, "procs"), n, "local")
	if pc != nil {
		defer pc.stop()
	}
	if err != nil {
		b.add(label, "not measured: "+err.Error(), "", nil)
		return
	}
	b.logf("%s: converged %v after start", label, time.Since(t0).Round(time.Second))

	// Each agent's patch records: the time the change of interest shows.
	var mu sync.Mutex
	var cur *watchedChange
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i, a := range agents {
		s, err := stream.Dial(ctx, stream.DialOptions{
			HTTPClient: a.client, URL: "http://unix/v1/events", Kinds: []string{"patch"}, Logger: quiet(),
		})
		if err != nil {
			b.add(label, fmt.Sprintf("not measured: subscribe to %s: %v", a.name, err), "", nil)
			return
		}
		a.events = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			for {
				rec, err := s.Next(ctx)
				if err != nil {
					return
				}
				at := time.Now()
				mu.Lock()
				if c := cur; c != nil && rec.Nodename == c.owner && i != c.ownerIdx && !c.got[i] && bytes.Contains(rec.Data, c.path) {
					c.got[i] = true
					c.count++
					if c.count == c.need {
						c.t99 = at.Sub(c.t0)
					}
					if c.count == len(agents)-1 {
						c.t100 = at.Sub(c.t0)
						close(c.done)
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(2 * time.Second) // subscribed everywhere

	samples := 40
	if b.quick {
		samples = 10
	}
	b.logf("%s: %d freezes and thaws", label, samples)
	cpu0, err := pc.cpuTotal()
	if err != nil {
		b.add(label, "not measured: "+err.Error(), "", nil)
		return
	}
	w0 := time.Now()
	var t99, t100 []time.Duration
	missed := 0
	frozen := make([]bool, len(agents))
	for s := range samples {
		owner := s * 7 % len(agents)
		action := "freeze"
		if frozen[owner] {
			action = "thaw"
		}
		frozen[owner] = !frozen[owner]
		c := &watchedChange{owner: agents[owner].name, ownerIdx: owner, got: make([]bool, len(agents)),
			need: (99*(len(agents)-1) + 99) / 100, done: make(chan struct{}),
			path: []byte(fmt.Sprintf(`"/monitor/nodes/%s/frozen"`, agents[owner].name))}
		mu.Lock()
		cur = c
		c.t0 = time.Now()
		mu.Unlock()
		if err := postOrder(ctx, agents[owner], action); err != nil {
			b.add(label, "not measured: "+err.Error(), "", nil)
			return
		}
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
		}
		mu.Lock()
		cur = nil
		if c.t99 > 0 {
			t99 = append(t99, c.t99)
		}
		if c.t100 > 0 {
			t100 = append(t100, c.t100)
		} else {
			missed++
		}
		mu.Unlock()
		time.Sleep(time.Duration(100+s%5*20) * time.Millisecond)
	}
	cpu1, err := pc.cpuTotal()
	if err != nil {
		b.add(label, "not measured: "+err.Error(), "", nil)
		return
	}
	res := func(d []time.Duration) string {
		return fmt.Sprintf("p50 %s, p99 %s, %d changes", ms(quantile(d, 0.5)), ms(quantile(d, 0.99)), samples)
	}
	b.add(label+": one freeze/thaw → 99 % of the other agents' streams", res(t99), "", nil)
	r100 := res(t100)
	if missed > 0 {
		r100 += fmt.Sprintf("; %d not everywhere within 30 s", missed)
	}
	b.add(label+": one freeze/thaw → 100 % of the other agents' streams", r100, "", nil)
	rss, err := pc.rssTotal()
	if err != nil {
		b.add(label, "not measured: "+err.Error(), "", nil)
		return
	}
	el := time.Since(w0).Seconds()
	b.add(label+": footprint while measuring", fmt.Sprintf("RSS %.1f MB per agent on average; CPU %.2f%% of a core per agent (all agents: %.2f cores)",
		float64(rss)/1024/float64(n), float64(cpu1-cpu0)/clockTicks/el*100/float64(n), float64(cpu1-cpu0)/clockTicks/el), "", nil)
}

// watchedChange is the freeze or thaw being timed. Fields under the
// caller's mutex.
type watchedChange struct {
	owner     string
	ownerIdx  int
	path      []byte
	t0        time.Time
	got       []bool
	count     int
	need      int
	t99, t100 time.Duration
	done      chan struct{}
}

func postOrder(ctx context.Context, a *procAgent, action string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://unix/v1/nodes/"+a.name+"/"+action, nil)
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", action, a.name, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s on %s: %s: %s", action, a.name, resp.Status, body)
	}
	return nil
}

// startProcAgents writes n roots under dir with the given profile, starts
// an agent on each and waits (up to 5 minutes) until they have converged.
// pc, when not nil, is to be stopped, also after an error.
func startProcAgents(ctx context.Context, bin, dir string, n int, profile string) ([]nodeRoot, *procCluster, []*procAgent, error) {
	roots, err := writeRoots(dir, n, profile)
	if err != nil {
		return nil, nil, nil, err
	}
	pc, err := launchProcs(bin, dir, roots)
	if err != nil {
		return nil, nil, nil, err
	}
	agents := make([]*procAgent, len(roots))
	for i, r := range roots {
		agents[i] = &procAgent{name: r.name, client: stream.UnixHTTPClient(filepath.Join(r.root, "var", "agent.sock"))}
	}
	return roots, pc, agents, waitProcsConverged(ctx, agents, 5*time.Minute)
}

// waitProcsConverged waits until every agent holds the data of every
// agent and sees them all alive.
func waitProcsConverged(ctx context.Context, agents []*procAgent, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		why := ""
		for _, a := range agents {
			if why = procConverged(ctx, a, len(agents)); why != "" {
				break
			}
		}
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d real agents not converged within %v: %s", len(agents), timeout, why)
		}
		time.Sleep(time.Second)
	}
}

// procConverged says what agent a lacks, or "".
func procConverged(ctx context.Context, a *procAgent, n int) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://unix/v1/status", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Sprintf("%s: %v", a.name, err)
	}
	defer resp.Body.Close()
	var doc struct {
		Cluster struct {
			Nodes map[string]struct {
				State string `json:"state"`
			} `json:"nodes"`
		} `json:"cluster"`
		Monitor struct {
			Nodes map[string]json.RawMessage `json:"nodes"`
		} `json:"monitor"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return fmt.Sprintf("%s: status: %v", a.name, err)
	}
	alive := 0
	for _, m := range doc.Cluster.Nodes {
		if m.State == "alive" {
			alive++
		}
	}
	if alive != n || len(doc.Monitor.Nodes) != n {
		return fmt.Sprintf("%s sees %d alive and holds %d nodes' data of %d", a.name, alive, len(doc.Monitor.Nodes), n)
	}
	return ""
}
