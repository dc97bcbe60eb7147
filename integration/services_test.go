package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"agent/internal/netfault"
)

// svcTimeout bounds the waits on orchestration: failure detection (about
// five seconds in the local profile), the rejoin status (up to ten) and the
// ready period (five) add up.
const svcTimeout = 60 * time.Second

// upFile is where the test services keep their state on node n: the
// commands find it through the stateDirEnv the harness gives each agent.
func upFile(n *node, svc string) string { return filepath.Join(n.root, svc+".up") }

// failoverConf is a failover service over nodes whose commands keep the
// per-node state file $HOME/NAME.up (and log their starts and
// stops to NAME.log beside it). The text is the same for every node.
func failoverConf(name, nodes string) string {
	// Single quotes: SplitCommand keeps them literal and sh expands the
	// variable. No blank before ';' or '#', which would start a comment.
	f := `"$` + stateDirEnv + `/` + name
	return fmt.Sprintf(`[service]
nodes = %[1]s
topology = failover
orchestrate = ha
check = /bin/sh -c 'test -f %[2]s.up"'
start = /bin/sh -c 'touch %[2]s.up" && echo start >> %[2]s.log"'
stop = /bin/sh -c 'rm -f %[2]s.up" && echo stop >> %[2]s.log"'
check_interval = 200ms
timeout = 10s
`, nodes, f)
}

// writeService writes svc/NAME.conf on each node, atomically (a hidden
// temporary file renamed over it: the watcher ignores hidden files).
func writeService(t testing.TB, nodes []*node, name, text string) {
	t.Helper()
	for _, n := range nodes {
		dir := filepath.Join(n.root, "etc", "svc")
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name+".conf")); err != nil {
			t.Fatal(err)
		}
	}
}

// upOn returns the names of the nodes among nodes whose state file for svc
// exists, sorted.
func upOn(nodes []*node, svc string) []string {
	var out []string
	for _, n := range nodes {
		if _, err := os.Stat(upFile(n, svc)); err == nil {
			out = append(out, n.name)
		}
	}
	sort.Strings(out)
	return out
}

// waitUpOn waits until svc is up on exactly the nodes want among nodes
// (by their state files), or fails the test.
func waitUpOn(t testing.TB, nodes []*node, svc string, want ...string) {
	t.Helper()
	sort.Strings(want)
	deadline := time.Now().Add(svcTimeout)
	for {
		got := upOn(nodes, svc)
		if strings.Join(got, " ") == strings.Join(want, " ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: up on %v among %v after %v, want %v", svc, got, names(nodes), svcTimeout, want)
		}
		time.Sleep(pollEvery)
	}
}

// upSampler reads the state files of a set of nodes repeatedly and records
// every sample where more than one of them had the service up.
type upSampler struct {
	svc string

	mu      sync.Mutex
	watch   []*node
	samples int
	errs    []string

	stop chan struct{}
	done chan struct{}
}

func startUpSampler(t testing.TB, svc string, nodes []*node) *upSampler {
	s := &upSampler{svc: svc, watch: nodes, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			s.mu.Lock()
			up := upOn(s.watch, s.svc)
			s.samples++
			if len(up) > 1 && len(s.errs) < 20 {
				s.errs = append(s.errs, fmt.Sprintf("%s up on %v at once (among %v)", s.svc, up, names(s.watch)))
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.finish)
	return s
}

// setWatch changes the nodes sampled (say, the alive ones).
func (s *upSampler) setWatch(nodes []*node) {
	s.mu.Lock()
	s.watch = nodes
	s.mu.Unlock()
}

// check stops the sampler and reports what it saw.
func (s *upSampler) check(t testing.TB) {
	t.Helper()
	s.finish()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.samples < 10 {
		t.Errorf("only %d samples of the state files", s.samples)
	}
	for _, e := range s.errs {
		t.Error(e)
	}
	t.Logf("%d samples of the state files", s.samples)
}

func (s *upSampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// record is one record of `agent events -o json`.
type record struct {
	Seq      uint64         `json:"seq"`
	Time     time.Time      `json:"time"`
	Kind     string         `json:"kind"`
	Nodename string         `json:"nodename"`
	Data     map[string]any `json:"data"`
}

// journalEvents returns every event record n's journal holds.
func (n *node) journalEvents() []record {
	n.c.t.Helper()
	out := n.mustCLI("events", "--since", "0", "--kind", "event", "-o", "json", "--duration", "2s")
	var recs []record
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r record
		if err := jsonUnmarshal(line, &r); err != nil {
			n.c.t.Fatalf("%s: events -o json: %v: %q", n.name, err, line)
		}
		if r.Kind == "event" {
			recs = append(recs, r)
		}
	}
	return recs
}

// findEvent returns the first event of recs whose data holds every
// key=value of want.
func findEvent(recs []record, want map[string]string) (record, bool) {
next:
	for _, r := range recs {
		for k, v := range want {
			if s, _ := r.Data[k].(string); s != v {
				continue next
			}
		}
		return r, true
	}
	return record{}, false
}

// waitEvent waits until n's journal holds an event matching want.
func (n *node) waitEvent(want map[string]string) record {
	n.c.t.Helper()
	deadline := time.Now().Add(svcTimeout)
	for {
		recs := n.journalEvents()
		if r, ok := findEvent(recs, want); ok {
			return r
		}
		if time.Now().After(deadline) {
			var ids []string
			for _, r := range recs {
				ids = append(ids, fmt.Sprintf("%v/%v/%v", r.Data["id"], r.Data["reason"], r.Data["node"]))
			}
			n.c.t.Fatalf("%s: no event %v within %v; events: %v", n.name, want, svcTimeout, ids)
		}
		time.Sleep(pollEvery)
	}
}

// upExpr holds when the summary of svc says it is up on node only.
func upExpr(svc, node string) string {
	return fmt.Sprintf("monitor.services.%[1]s.up.#=1 and monitor.services.%[1]s.up.0=%[2]s", svc, node)
}

func TestServiceFailoverOnKill(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 3})
	n1, n2, n3 := c.node(1), c.node(2), c.node(3)
	c.waitConverged()

	writeService(t, c.nodes, "web", failoverConf("web", "n1 n2 n3"))
	s := startUpSampler(t, "web", c.nodes)
	waitUpOn(t, c.nodes, "web", "n1")

	// --wait returns when the orchestration is done: the files say so at
	// once.
	n2.mustCLI("svc", "stop", "web", "--wait", "--duration", svcTimeout.String())
	if up := upOn(c.nodes, "web"); len(up) != 0 {
		t.Fatalf("after svc stop --wait, web still up on %v", up)
	}
	n3.mustCLI("svc", "start", "web", "--wait", "--duration", svcTimeout.String())
	if up := upOn(c.nodes, "web"); strings.Join(up, " ") != "n1" {
		t.Fatalf("after svc start --wait, web up on %v, want [n1]", up)
	}

	// n1 dies with its instance's file left behind: the alive ones fail
	// over, one at a time.
	alive := []*node{n2, n3}
	s.setWatch(alive)
	n1.signal(syscall.SIGKILL)
	n1.wait()
	waitUpOn(t, alive, "web", "n2")
	for _, n := range alive {
		n.waitFor(upExpr("web", "n2"), svcTimeout)
	}
	s.check(t)

	r := n2.waitEvent(map[string]string{"id": "instance_start", "reason": "failover", "svcname": "web"})
	t.Logf("n2: instance_start failover at seq %d: %v", r.Seq, r.Data["node"])

	out, errs, code := n2.cli("svc", "start", "nosuch")
	if code != 2 || strings.TrimSpace(errs) == "" {
		t.Errorf("svc start nosuch: exit %d, stdout %q, stderr %q; want exit 2 and a message", code, out, errs)
	}
}

// TestFaultServiceQuorumSplit splits five nodes with quorum on: the
// minority stops its instance, the majority starts one, one only.
func TestFaultServiceQuorumSplit(t *testing.T) {
	t.Parallel()
	ns := newFaultNS(t)
	c := newCluster(t, clusterOpts{
		Nodes: 5, NetNS: ns.Name, Gid: netfault.GID,
		ClusterConf: "quorum = true\nnodes = n1 n2 n3 n4 n5",
	})
	c.waitConverged()
	writeService(t, c.nodes, "web", failoverConf("web", "n1 n2 n3 n4 n5"))
	s := startUpSampler(t, "web", c.nodes)
	waitUpOn(t, c.nodes, "web", "n1")

	a, b := []int{1, 2}, []int{3, 4, 5}
	minority, majority := []*node{c.node(1), c.node(2)}, []*node{c.node(3), c.node(4), c.node(5)}
	s.setWatch(majority)
	ns.partition(a, b)
	for _, n := range minority {
		n.waitEvent(map[string]string{"id": "quorum_lost"})
	}
	c.node(1).waitEvent(map[string]string{"id": "instance_stop", "reason": "split", "svcname": "web"})
	waitUpOn(t, minority, "web")
	waitUpOn(t, majority, "web", "n3")
	for _, n := range majority {
		n.waitFor(deadExpr(a), detectTimeout)
		if _, lost := findEvent(n.journalEvents(), map[string]string{"id": "quorum_lost"}); lost {
			t.Errorf("%s, on the majority side, lost the quorum", n.name)
		}
	}
	// Once the sides are healed the stale data of the split must not start
	// a second instance anywhere.
	s.setWatch(c.nodes)
	ns.heal()
	for _, n := range minority {
		n.waitEvent(map[string]string{"id": "quorum_regained"})
	}
	c.waitConverged()
	for _, n := range c.nodes {
		n.waitFor(upExpr("web", "n3"), svcTimeout)
	}
	if up := upOn(c.nodes, "web"); strings.Join(up, " ") != "n3" {
		t.Errorf("after the heal web is up on %v, want [n3]", up)
	}
	s.check(t)
}
