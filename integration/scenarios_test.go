package integration

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// detectTimeout bounds the wait for failure detection and for a graceful
// leave to be seen. The harness's local profile takes about five seconds,
// but a suspicion that gets no confirmation lasts memberlist's longest
// timeout (18 s) after probes slowed by Lifeguard: a side of a partition
// whose two nodes hold different incarnations of a peer ignores each
// other's suspicions of it (seen: 26 s).
const detectTimeout = 60 * time.Second

func TestThreeNodesConverge(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 3})
	v := c.waitConverged()
	for _, n := range c.nodes {
		if v.gens[n.name] == 0 {
			t.Errorf("gen of %s is 0 in the common view", n.name)
		}
	}
	// Every agent also serves the same derived section and its own status
	// table; a smoke test of `agent status`.
	for _, n := range c.nodes {
		out := n.mustCLI("status")
		for _, m := range c.nodes {
			if !strings.Contains(out, m.name) {
				t.Errorf("%s: agent status does not name %s:\n%s", n.name, m.name, out)
			}
		}
	}
}

func TestFreezeForwardedSurvivesRestart(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 3})
	n1, n2, n3 := c.node(1), c.node(2), c.node(3)
	c.waitConverged()

	// An order for n3 given to n1 is forwarded to n3, the owner of the data.
	out := n1.mustCLI("node", "freeze", "--node", "n3")
	if !strings.Contains(out, "n3 frozen") {
		t.Fatalf("node freeze --node n3 printed %q", out)
	}
	for _, n := range c.nodes {
		n.waitFor("monitor.nodes.n3.frozen!=0", detectTimeout)
	}
	frozen := strings.TrimSpace(n3.mustCLI("daemon", "status", "--filter", "monitor.nodes.n3.frozen"))

	// A clean restart keeps it: the node's own data is persisted.
	n3.stop()
	n3.restart()
	got := strings.TrimSpace(n3.mustCLI("daemon", "status", "--filter", "monitor.nodes.n3.frozen"))
	if got != frozen {
		t.Fatalf("after restart n3 frozen = %s, want %s", got, frozen)
	}
	v := c.waitConverged()
	if !strings.Contains(v.nodesJSON, `"frozen":`+frozen) {
		t.Fatalf("converged view lost n3's freeze %s: %s", frozen, v.nodesJSON)
	}

	// Thaw from the third node.
	n2.mustCLI("node", "thaw", "--node", "n3")
	for _, n := range c.nodes {
		n.waitFor("monitor.nodes.n3.frozen=0", detectTimeout)
	}
	// Freezing itself (no --node) works too.
	n2.mustCLI("node", "freeze")
	n1.waitFor("monitor.nodes.n2.frozen!=0", detectTimeout)
}

// genSampler reads every node's view repeatedly and records any gen that
// went backwards in any view.
type genSampler struct {
	mu      sync.Mutex
	max     map[string]uint64 // viewer/owner → highest gen seen
	errs    []string
	samples int
	stop    chan struct{}
	done    chan struct{}
}

func startGenSampler(t *testing.T, nodes []*node) *genSampler {
	s := &genSampler{max: map[string]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			for _, n := range nodes {
				if !n.running() {
					continue
				}
				out, _, code, err := n.run("daemon", "status", "-o", "json")
				if err != nil || code != 0 {
					continue
				}
				var doc map[string]any
				if jsonUnmarshal(out, &doc) != nil {
					continue
				}
				v := viewOf(doc)
				s.mu.Lock()
				s.samples++
				for owner, g := range v.gens {
					k := n.name + "/" + owner
					if g < s.max[k] {
						s.errs = append(s.errs, fmt.Sprintf("%s sees %s gen %d after %d", n.name, owner, g, s.max[k]))
					} else {
						s.max[k] = g
					}
				}
				s.mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	t.Cleanup(s.finish)
	return s
}

func (s *genSampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func TestKillRestartGensNeverGoBack(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 3})
	n1, n2, n3 := c.node(1), c.node(2), c.node(3)
	c.waitConverged()
	n3.mustCLI("node", "freeze")
	n1.waitFor("monitor.nodes.n3.frozen!=0", detectTimeout)
	gens := startGenSampler(t, c.nodes)

	for round := 1; round <= 2; round++ {
		n3.signal(syscall.SIGKILL)
		n3.wait()
		for _, n := range []*node{n1, n2} {
			n.waitFor("cluster.nodes.n3.state=dead", detectTimeout)
			// The dead node's data is kept (until ForgetAfter).
			n.waitFor("monitor.nodes.n3.frozen!=0", time.Second)
		}
		n3.restart()
		v := c.waitConverged()
		t.Logf("round %d: converged, gens %v", round, v.gens)
		// Changes after the restart still flow both ways.
		n1.mustCLI("node", "freeze", "--node", "n3")
		n3.mustCLI("node", "thaw")
		n1.waitFor("monitor.nodes.n3.frozen=0", detectTimeout)
		n3.mustCLI("node", "freeze")
		n2.waitFor("monitor.nodes.n3.frozen!=0", detectTimeout)
	}
	gens.finish()
	gens.mu.Lock()
	defer gens.mu.Unlock()
	if gens.samples < 10 {
		t.Errorf("only %d gen samples taken", gens.samples)
	}
	for _, e := range gens.errs {
		t.Errorf("gen went backwards: %s", e)
	}
}

func TestGracefulLeaveSeenAsLeft(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 3})
	n1, n2, n3 := c.node(1), c.node(2), c.node(3)
	c.waitConverged()
	n3.stop()
	for _, n := range []*node{n1, n2} {
		n.waitFor("cluster.nodes.n3.state=left", detectTimeout)
		n.waitFor(`monitor.nodes.n3.status="shutting down"`, time.Second)
	}
	n3.restart()
	c.waitConverged()
}

func TestStopContDownThenUp(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 3})
	n1, n2, n3 := c.node(1), c.node(2), c.node(3)
	c.waitConverged()
	n3.signal(syscall.SIGSTOP)
	for _, n := range []*node{n1, n2} {
		n.waitFor("cluster.nodes.n3.state=dead", detectTimeout)
	}
	// While n3 sleeps the others change: it must catch up after.
	n1.mustCLI("node", "freeze")
	n2.waitFor("monitor.nodes.n1.frozen!=0", detectTimeout)
	n3.signal(syscall.SIGCONT)
	for _, n := range []*node{n1, n2} {
		n.waitFor("cluster.nodes.n3.state=alive", detectTimeout)
	}
	v := c.waitConverged()
	if !strings.Contains(v.nodesJSON, `"n1":{"frozen":`) || strings.Contains(v.nodesJSON, `"n1":{"frozen":0`) {
		t.Fatalf("n1's freeze missing from the converged view: %s", v.nodesJSON)
	}
	// n1 recorded both transitions of n3 as events.
	out := n1.mustCLI("events", "--kind", "event", "-o", "json", "--since", "0", "--duration", "2s",
		"--filter", "data.node=n3 and (data.id=node_down or data.id=node_up)")
	down := strings.Index(out, `"node_down"`)
	up := strings.LastIndex(out, `"node_up"`)
	if down < 0 || up < down {
		t.Fatalf("n1 events for n3: want node_down then node_up, got:\n%s", out)
	}
}

func TestGarbageToHeartbeatPort(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 2})
	n1, n2 := c.node(1), c.node(2)
	c.waitConverged()
	addr := net.JoinHostPort(n1.ip, strconv.Itoa(n1.hbPort))

	payloads := [][]byte{{}, {0}, {0xff}, []byte("hello"), []byte(c.name), make([]byte, 1400), make([]byte, 65000)}
	for i := range 40 {
		b := make([]byte, 1+i*37)
		_, _ = rand.Read(b)
		payloads = append(payloads, b)
	}
	for _, typ := range []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 244, 252} {
		// memberlist message types followed by junk: exercise the decoders.
		b := make([]byte, 64)
		_, _ = rand.Read(b)
		b[0] = typ
		payloads = append(payloads, b)
	}
	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range payloads {
		_, _ = u.Write(p)
	}
	u.Close()
	for _, p := range payloads {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write(p)
		conn.Close()
	}
	// A connection left open and idle must not wedge the listener.
	idle, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	if !n1.running() {
		t.Fatal("n1 died of garbage")
	}
	n2.mustCLI("node", "freeze")
	n1.waitFor("monitor.nodes.n2.frozen!=0", detectTimeout)
	n1.mustCLI("node", "freeze")
	n2.waitFor("monitor.nodes.n1.frozen!=0", detectTimeout)
	c.waitConverged()
}

func TestDuplicateNameRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 2})
	n1 := c.node(1)
	c.waitConverged()

	// A third process calls itself n1, on its own address.
	dup := &node{c: c, i: 3, name: "n1", ip: "127.0.0.3", root: filepath.Join(c.dir, "dup"), logPath: filepath.Join(c.dir, "dup.log")}
	dup.hbPort, dup.apiPort = freePort(t, dup.ip), freePort(t, dup.ip)
	dup.writeConfig("")
	c.nodes = append(c.nodes, dup) // killed and dumped with the others
	dup.start()
	code := dup.wait()
	logb, _ := os.ReadFile(dup.logPath)
	logs := string(logb)
	if code == 0 {
		t.Fatalf("duplicate n1 exited 0, want an error")
	}
	if !strings.Contains(logs, "already in use") || !strings.Contains(logs, `"n1"`) {
		t.Fatalf("duplicate n1: the error does not name the conflict:\n%s", logs)
	}
	if strings.Contains(logs, "panic:") {
		t.Fatalf("duplicate n1 panicked:\n%s", logs)
	}
	// The genuine n1 is untouched.
	v := waitConverged(t, c.nodes[:2], names(c.nodes[:2]), names(c.nodes[:2]))
	if v.members["n1"] != "alive" {
		t.Fatalf("n1 is %q after the duplicate's attempt", v.members["n1"])
	}
	n1.mustCLI("node", "freeze")
	c.node(2).waitFor("monitor.nodes.n1.frozen!=0", detectTimeout)
}

func TestBadNodeConfExits2WithFileLine(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	conf := filepath.Join(root, "etc", "node.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o700); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"port":    "[node]\nname = bad\n\n[hb]\nport = notanumber\n",
		"profile": "[node]\nname = bad\n[hb]\naddr = 127.0.0.1\nprofile = fastest\n",
		"syntax":  "[node\nname = bad\n",
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			c := &cluster{t: t}
			n := &node{c: c, name: "bad", root: root}
			cmd := n.command(t.Context(), "daemon", "run", "--root", root)
			out, err := cmd.CombinedOutput()
			code := 0
			if err != nil {
				code = cmd.ProcessState.ExitCode()
			}
			if code != 2 {
				t.Errorf("exit %d, want 2; output:\n%s", code, out)
			}
			if !strings.Contains(string(out), "node.conf:") {
				t.Errorf("stderr names no file:line:\n%s", out)
			}
			if strings.Contains(string(out), "panic:") {
				t.Errorf("daemon run panicked on a bad node.conf:\n%s", out)
			}
		})
	}
}

func TestWrongSecretCannotJoin(t *testing.T) {
	t.Parallel()
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	c := newCluster(t, clusterOpts{Nodes: 2, Secret: base64.StdEncoding.EncodeToString(key)})
	n1, n2 := c.node(1), c.node(2)
	c.waitConverged()

	other := make([]byte, 16)
	_, _ = rand.Read(other)
	in := &node{c: c, i: 3, name: "n3", ip: "127.0.0.3", root: filepath.Join(c.dir, "n3"), logPath: filepath.Join(c.dir, "n3.log")}
	in.hbPort, in.apiPort = freePort(t, in.ip), freePort(t, in.ip)
	in.writeConfig(base64.StdEncoding.EncodeToString(other))
	c.nodes = append(c.nodes, in)
	in.start()
	in.waitReady()
	// Several probe and push-pull rounds: n3 must never appear, and n3
	// must never see n1. `wait` exits 1 on timeout.
	for _, chk := range []struct {
		n    *node
		expr string
	}{{n1, "cluster.nodes.n3"}, {n2, "monitor.nodes.n3"}, {in, "cluster.nodes.n1"}} {
		out, errs, code := chk.n.cli("wait", "--filter", chk.expr, "--duration", "6s")
		if code != 1 || strings.TrimSpace(out) != "timeout" {
			t.Errorf("%s: wait %s: exit %d %q %q; want exit 1 and timeout", chk.n.name, chk.expr, code, out, errs)
		}
	}
	// The cluster itself keeps working.
	n2.mustCLI("node", "freeze")
	n1.waitFor("monitor.nodes.n2.frozen!=0", detectTimeout)
}

// The quorum's high-water mark survives a kill -9 of every agent: it is
// kept in var/quorum.json (a list that grows with the cluster, so not in
// state.json's sector), and a node restarted alone still counts the three
// nodes it saw, so it does not think itself a majority.
//
// Not parallel: it kills and restarts agents, and running beside the fault
// group's timing tests on a 2-core machine only adds to their load.
func TestQuorumMarkSurvivesKill(t *testing.T) {
	c := newCluster(t, clusterOpts{Nodes: 3, ClusterConf: "quorum = true"})
	n1, n2, n3 := c.node(1), c.node(2), c.node(3)
	c.waitConverged()
	n3.waitFor("monitor.nodes.n3.quorum.hwm=3", detectTimeout)
	for _, n := range []*node{n1, n2, n3} {
		n.signal(syscall.SIGKILL)
		n.wait()
	}
	b, err := os.ReadFile(filepath.Join(n3.root, "var", "quorum.json"))
	if err != nil || !strings.Contains(string(b), `"n1"`) || !strings.Contains(string(b), `"n3"`) {
		t.Fatalf("var/quorum.json after the kill: %q, %v", b, err)
	}
	n3.restart()
	n3.waitFor("monitor.nodes.n3.quorum.hwm=3", detectTimeout)
	n3.waitFor("monitor.nodes.n3.quorum.lost=true", detectTimeout)
}
