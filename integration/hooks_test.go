package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// hookOut is the file the rec hook of TestHookAtLeastOnceAcrossKill
// appends the records to, on node n.
func hookOut(n *node) string { return filepath.Join(n.root, "hook.out") }

// hookSeqs reads the seqs of the records in the hook's file; a line cut
// short by the kill is ignored.
func hookSeqs(t testing.TB, path string) map[uint64]int {
	t.Helper()
	seqs := map[uint64]int{}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return seqs
	}
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r record
		if jsonUnmarshal(sc.Text(), &r) == nil && r.Seq > 0 {
			seqs[r.Seq]++
		}
	}
	return seqs
}

// postOrder posts a node order on n's TCP listener (auth none): faster
// than a CLI process per event.
func postOrder(t testing.TB, n *node, action string) {
	t.Helper()
	url := fmt.Sprintf("http://%s/v1/nodes/%s/%s", net.JoinHostPort(n.ip, strconv.Itoa(n.apiPort)), n.name, action)
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}

// TestHookAtLeastOnceAcrossKill makes a slow hook fall behind 300 events,
// kills the agent while it catches up, restarts it and expects every event
// the journal holds (from the hook's first one on) in the hook's file.
func TestHookAtLeastOnceAcrossKill(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1, Extra: func(n *node) string {
		// No blank before ';': it would start a comment.
		return "[hook#rec]\nevents = all\ncommand = /bin/sh -c 'sleep 0.01; cat >> \"$" + stateDirEnv + "/hook.out\"'\ntimeout = 10s\n"
	}})
	n := c.node(1)
	out := hookOut(n)

	// A new hook starts at the head of the stream: what came before its
	// first run is not its to deliver. The first freeze marks the start.
	postOrder(t, n, "freeze")
	deadline := time.Now().Add(svcTimeout)
	var base uint64
	for base == 0 {
		for s := range hookSeqs(t, out) {
			if base == 0 || s < base {
				base = s
			}
		}
		if base == 0 && time.Now().After(deadline) {
			t.Fatalf("the hook wrote nothing to %s within %v", out, svcTimeout)
		}
		time.Sleep(pollEvery)
	}

	const events = 300
	for i := range events {
		postOrder(t, n, []string{"thaw", "freeze"}[i%2])
	}
	// Kill it while the hook is behind.
	for len(hookSeqs(t, out)) < 20 {
		time.Sleep(10 * time.Millisecond)
	}
	got := len(hookSeqs(t, out))
	n.signal(syscall.SIGKILL)
	n.wait()
	t.Logf("killed with %d records in the hook's file", got)
	if got >= events {
		t.Logf("the hook had caught up before the kill: the restart is not exercised")
	}
	n.restart()

	var missing []uint64
	// The deadline is for a hook that stops progressing: on a loaded
	// machine each run of the hook can take most of a second.
	deadline = time.Now().Add(svcTimeout)
	fewest := -1
	for {
		recs := n.journalEvents()
		seqs := hookSeqs(t, out)
		missing = missing[:0]
		last := uint64(0)
		for _, r := range recs {
			if r.Seq >= base && seqs[r.Seq] == 0 {
				missing = append(missing, r.Seq)
			}
			if id, _ := r.Data["id"].(string); id == "hook_skipped" {
				t.Fatalf("the hook skipped records: %v", r.Data)
			}
			last = max(last, r.Seq)
		}
		if len(missing) == 0 {
			var before []any
			for _, r := range recs {
				if r.Seq < base {
					before = append(before, r.Data["id"])
				}
			}
			t.Logf("events before the hook's first: %v", before)
			dups := 0
			for _, k := range seqs {
				dups += k - 1
			}
			t.Logf("all %d events from seq %d to %d delivered, %d duplicates", len(recs), base, last, dups)
			if len(recs) < events {
				t.Errorf("the journal holds %d events, want at least %d", len(recs), events)
			}
			return
		}
		if fewest < 0 || len(missing) < fewest {
			fewest = len(missing)
			deadline = time.Now().Add(svcTimeout)
		}
		if time.Now().After(deadline) {
			if len(missing) > 20 {
				missing = missing[:20]
			}
			t.Fatalf("no progress for %v, events of the journal missing from the hook's file: %v ...", svcTimeout, missing)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
