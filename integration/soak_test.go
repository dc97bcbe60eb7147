package integration

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resources is what the soak test watches in one agent process.
type resources struct {
	goroutines int // -1: no /metrics on the listener
	fds        int
	rssKB      int64
}

func (r resources) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, rss %d kB", r.goroutines, r.fds, r.rssKB)
}

func (n *node) resources(t testing.TB) resources {
	t.Helper()
	r := resources{goroutines: n.goroutines()}
	var err error
	if r.fds, err = openFiles(n.pid()); err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	if r.rssKB, err = procStatus(n.pid(), "VmRSS"); err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	return r
}

// goroutines reads go_goroutines from the listener's /metrics, or -1.
func (n *node) goroutines() int {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s:%d/metrics", n.ip, n.apiPort))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(f)
			}
		}
	}
	return -1
}

// nearBaseline allows for the churn's caches and buffers but not for
// growth with the number of operations.
func nearBaseline(base, now resources) []string {
	var bad []string
	if base.goroutines >= 0 && now.goroutines > base.goroutines+20 {
		bad = append(bad, fmt.Sprintf("goroutines %d → %d", base.goroutines, now.goroutines))
	}
	if now.fds > base.fds+10 {
		bad = append(bad, fmt.Sprintf("open files %d → %d", base.fds, now.fds))
	}
	if now.rssKB > base.rssKB*3/2+16*1024 {
		bad = append(bad, fmt.Sprintf("RSS %d kB → %d kB", base.rssKB, now.rssKB))
	}
	return bad
}

// TestSoak churns a three-node cluster for AGENT_SOAK (for instance 10m):
// freeze and thaw orders, subscribers connecting and disconnecting, n3
// restarting. Then the goroutines (when /metrics exists), open files and
// RSS of n1 and n2 must come back near their level before the churn, and
// the cluster must agree.
func TestSoak(t *testing.T) {
	soak := os.Getenv("AGENT_SOAK")
	if soak == "" {
		t.Skip("soak test: set AGENT_SOAK=10m to run it")
	}
	d, err := time.ParseDuration(soak)
	if err != nil {
		t.Fatalf("AGENT_SOAK=%q: %v", soak, err)
	}
	c := newCluster(t, clusterOpts{Nodes: 3})
	n1, n2, n3 := c.node(1), c.node(2), c.node(3)
	c.waitConverged()
	// Warm up the paths the churn uses before taking the baseline.
	warm := dialMirror(t, n1)
	n2.mustCLI("node", "freeze")
	n2.mustCLI("node", "thaw")
	warm.waitEqual(t, n1)
	warm.close()
	base := map[string]resources{n1.name: n1.resources(t), n2.name: n2.resources(t)}
	if base[n1.name].goroutines < 0 {
		t.Log("no go_goroutines on /metrics: goroutines not checked")
	}
	t.Logf("baseline: n1 %v; n2 %v", base[n1.name], base[n2.name])

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	end := time.Now().Add(d)
	var subs []*mirrorClient
	ops := 0
	for time.Now().Before(end) {
		ops++
		switch r := rng.IntN(20); {
		case r < 12:
			n := c.nodes[rng.IntN(3)]
			target := c.nodes[rng.IntN(3)]
			if n.running() && target.running() {
				n.cli("node", []string{"freeze", "thaw"}[rng.IntN(2)], "--node", target.name)
			}
		case r < 18:
			if len(subs) < 8 && rng.IntN(2) == 0 {
				subs = append(subs, dialMirror(t, c.nodes[rng.IntN(2)]))
			} else if len(subs) > 0 {
				i := rng.IntN(len(subs))
				subs[i].close()
				subs = append(subs[:i], subs[i+1:]...)
			}
		default:
			if n3.running() {
				n3.stop()
			} else {
				n3.restart()
			}
		}
		time.Sleep(time.Duration(20+rng.IntN(80)) * time.Millisecond)
	}
	for _, s := range subs {
		s.close()
	}
	if !n3.running() {
		n3.restart()
	}
	for _, n := range c.nodes {
		n.mustCLI("node", "thaw")
	}
	c.waitConverged()
	t.Logf("%d churn operations over %v", ops, d)

	// Resources settle once the closed subscribers' goroutines are gone.
	deadline := time.Now().Add(time.Minute)
	for {
		var bad []string
		for _, n := range []*node{n1, n2} {
			now := n.resources(t)
			for _, b := range nearBaseline(base[n.name], now) {
				bad = append(bad, n.name+": "+b)
			}
			t.Logf("%s after churn: %v", n.name, now)
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("resources did not return near the baseline: %s", strings.Join(bad, "; "))
		}
		time.Sleep(2 * time.Second)
	}
}
