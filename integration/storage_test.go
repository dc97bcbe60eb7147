package integration

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"agent/internal/netfault"
)

// fileState is what a test compares to show a file was not touched.
type fileState struct {
	sum   string
	mtime time.Time
	ino   uint64
}

// snapshotTree records every file under dir (content hash, mtime, inode).
func snapshotTree(t testing.TB, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := fileState{mtime: info.ModTime()}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			st.ino = sys.Ino
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			st.sum = hex.EncodeToString(h[:8])
		}
		out[path] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// metric reads one sample (name with its labels, as exposed) from n's
// /metrics; -1 when absent.
func (n *node) metric(t testing.TB, name string) float64 {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s:%d/metrics", n.ip, n.apiPort))
	if err != nil {
		t.Fatalf("%s: /metrics: %v", n.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// waitMetric waits until cond holds on the named metric of n.
func (n *node) waitMetric(t testing.TB, name string, cond func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(svcTimeout)
	for {
		v := n.metric(t, name)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %v, condition not met within %v", n.name, name, v, svcTimeout)
		}
		time.Sleep(pollEvery)
	}
}

// anyRecord is one record of `agent events -o json`, of any kind.
type anyRecord struct {
	Seq  uint64          `json:"seq"`
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// streamRecords runs `agent events -o json args...` for a moment and
// returns the patch and event records, the reset records and stderr.
func (n *node) streamRecords(t testing.TB, args ...string) (recs, resets []anyRecord, stderr string) {
	t.Helper()
	out, errs, code := n.cli(append([]string{"events", "-o", "json", "--duration", "1s"}, args...)...)
	if code != 0 {
		t.Fatalf("%s: events %v: exit %d: %s", n.name, args, code, errs)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r anyRecord
		if err := jsonUnmarshal(line, &r); err != nil {
			t.Fatalf("%s: events -o json: %v: %q", n.name, err, line)
		}
		switch r.Kind {
		case "reset":
			resets = append(resets, r)
		case "patch", "event":
			recs = append(recs, r)
		}
	}
	return recs, resets, errs
}

// newestSegment returns the path of the journal's newest segment file.
func (n *node) newestSegment(t testing.TB) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(n.root, "var", "journal", "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no journal segment (%v)", n.name, err)
	}
	return files[len(files)-1]
}

// TestSecondDaemonOnLiveRoot: a second `daemon run` on a running agent's
// root exits 2 naming the pid, and touches nothing: journal, state,
// hook cursors, socket, lock file.
func TestSecondDaemonOnLiveRoot(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1, Extra: func(n *node) string {
		return "[hook#rec]\nevents = all\ncommand = /bin/true\n"
	}})
	n := c.node(1)
	postOrder(t, n, "freeze")
	deadline := time.Now().Add(svcTimeout)
	for {
		if _, err := os.Stat(filepath.Join(n.root, "var", "hooks", "rec.cursor")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no hook cursor written")
		}
		time.Sleep(pollEvery)
	}
	// Stopped, the live agent writes nothing: any change is the second's.
	n.signal(syscall.SIGSTOP)
	defer n.signal(syscall.SIGCONT)
	before := snapshotTree(t, filepath.Join(n.root, "var"))

	cmd := exec.Command(agentBin, "daemon", "run", "--root", n.root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err == nil {
		code = 0
	}
	want := fmt.Sprintf("agent already running on %s, pid %d", n.root, n.pid())
	if code != 2 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("second daemon: exit %d, stderr %q; want exit 2 and %q", code, stderr.String(), want)
	}
	after := snapshotTree(t, filepath.Join(n.root, "var"))
	for path, st := range before {
		if a, ok := after[path]; !ok || a != st {
			t.Errorf("%s changed by the second daemon: %+v -> %+v", path, st, a)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("%s created by the second daemon", path)
		}
	}
	n.signal(syscall.SIGCONT)
	postOrder(t, n, "thaw")
	n.waitFor("monitor.nodes.n1.frozen=0", detectTimeout)
}

// TestPowerLossNeverRenumbers simulates what a power loss does to the
// journal (its unsynced tail gone, then its last line torn) after a kill:
// the agent never gives a lost record's seq to another record, a client
// that saw a lost record gets a reset, and one that did not resumes
// without one; no hook reports a skip.
func TestPowerLossNeverRenumbers(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1, Extra: func(n *node) string {
		return "[hook#rec]\nevents = all\ncommand = /bin/true\n"
	}})
	n := c.node(1)
	for _, tc := range []struct {
		name string
		torn bool
	}{{"whole lines", false}, {"torn line", true}} {
		for i := range 6 {
			postOrder(t, n, []string{"freeze", "thaw"}[i%2])
		}
		n.signal(syscall.SIGKILL)
		n.wait()

		// The power loss: the last 3 lines never reached the disk; with
		// torn, half of the one before them did.
		seg := n.newestSegment(t)
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.SplitAfter(data, []byte("\n"))
		lines = lines[:len(lines)-1]
		if len(lines) < 6 {
			t.Fatalf("%s: newest segment has %d lines", tc.name, len(lines))
		}
		seqs := make([]uint64, len(lines))
		for i, l := range lines {
			var r struct {
				Seq uint64 `json:"seq"`
			}
			if err := jsonUnmarshal(string(l), &r); err != nil {
				t.Fatalf("%s: journal line %d: %v", tc.name, i, err)
			}
			seqs[i] = r.Seq
		}
		lost := 3
		out := bytes.Join(lines[:len(lines)-lost], nil)
		if tc.torn {
			lost = 4
			last := lines[len(lines)-lost]
			out = append(bytes.Join(lines[:len(lines)-lost], nil), last[:len(last)/2]...)
		}
		if err := os.WriteFile(seg, out, 0o600); err != nil {
			t.Fatal(err)
		}
		top := seqs[len(seqs)-1]
		lastKept, prev := seqs[len(seqs)-1-lost], seqs[len(seqs)-2-lost]
		n.restart()

		after, resets, _ := n.streamRecords(t, "--since", strconv.FormatUint(lastKept, 10))
		if len(resets) != 0 || len(after) == 0 || after[0].Seq <= top {
			t.Fatalf("%s: after the restart, resets %v and first record %v, at or below the newest before (%d): renumbered?", tc.name, resets, after, top)
		}
		// A client that saw a lost record is told so.
		for _, seq := range seqs[len(seqs)-lost:] {
			_, resets, stderr := n.streamRecords(t, "--since", strconv.FormatUint(seq, 10))
			if len(resets) != 1 || !strings.Contains(stderr, "note:") {
				t.Fatalf("%s: resume after the lost record %d: %d resets, stderr %q", tc.name, seq, len(resets), stderr)
			}
		}
		// One that did not see them resumes without a reset, from the
		// records that are left.
		got, resets, _ := n.streamRecords(t, "--since", strconv.FormatUint(prev, 10))
		if len(resets) != 0 || len(got) < 2 || got[0].Seq != lastKept || got[1].Seq <= top {
			t.Fatalf("%s: resume after %d: resets %v, records %v", tc.name, prev, resets, got)
		}
		t.Logf("%s: records up to %d before, %d lost, numbering resumed at %d", tc.name, top, lost, after[0].Seq)
	}
	for _, r := range n.journalEvents() {
		if id, _ := r.Data["id"].(string); id == "hook_skipped" {
			t.Fatalf("a hook reported a skip across the restarts: %v", r.Data)
		}
	}
}

// setLabels rewrites n's node.conf with labels (replacing the harness's)
// and extra [node] keys; the agent applies it live.
func (n *node) setNodeConf(t testing.TB, labels, nodeKeys string) {
	t.Helper()
	conf := n.conf(n.c.opts.Secret)
	conf = strings.Replace(conf, fmt.Sprintf("labels = idx=%d\n", n.i), "labels = "+labels+"\n"+nodeKeys, 1)
	tmp := filepath.Join(n.root, "etc", ".node.conf.tmp")
	if err := os.WriteFile(tmp, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.root, "etc", "node.conf")); err != nil {
		t.Fatal(err)
	}
}

// TestHugeLabelRefused: a label that would make a node's data bigger than
// max_data is refused as an invalid edit, and nothing is replicated; a
// peer configured with a bigger limit sends data over this node's limit,
// which refuses it on receipt with a metric.
func TestHugeLabelRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 2})
	n1, n2 := c.node(1), c.node(2)
	c.waitConverged()

	big := strings.Repeat("x", 2<<20)
	n1.setNodeConf(t, "idx=1 big="+big, "")
	r := n1.waitEvent(map[string]string{"id": "node_config_change", "reason": "invalid"})
	if e, _ := r.Data["error"].(string); !strings.Contains(e, "max_data") {
		t.Fatalf("invalid edit event without the reason: %v", r.Data)
	}
	n1.setNodeConf(t, "idx=1 small=yes", "")
	n2.waitFor("monitor.nodes.n1.labels.small=yes", detectTimeout)
	if doc := n2.status(); strings.Contains(canonical(doc), big[:1000]) {
		t.Fatal("the refused label reached the peer")
	}

	// n2 allows more than n1 does: n1 refuses n2's data when it grows past
	// its own limit, and says so in a metric.
	n2.stop()
	n2.setNodeConf(t, "idx=2", "max_data = 8MiB\n")
	n2.restart()
	n1.waitFor("cluster.nodes.n2.state=alive", detectTimeout)
	n2.setNodeConf(t, "idx=2 big="+strings.Repeat("y", 1500<<10), "max_data = 8MiB\n")
	n2.waitFor("monitor.nodes.n2.labels.idx=2", detectTimeout)
	n1.waitMetric(t, "agent_peer_data_refused_total", func(v float64) bool { return v >= 1 })
	if out, _, _ := n1.cli("daemon", "status", "--filter", "monitor.nodes.n2.labels.big"); strings.Contains(out, "yyyy") {
		t.Fatal("n1 took n2's data over its max_data")
	}
	log, _ := os.ReadFile(n1.logPath)
	if !bytes.Contains(log, []byte("peer data over max_data refused")) {
		t.Fatal("no log line for the refused peer data")
	}
}

// TestMemoryAfterBigLabels measures the RSS of every agent of a 3-node
// cluster after 10 changes of a 900 KB label on one node: the README
// figure. The bound is the promise: under 100 MB each.
func TestMemoryAfterBigLabels(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 3})
	n1 := c.node(1)
	c.waitConverged()
	for i := range 10 {
		label := strings.Repeat(string(rune('a'+i)), 900<<10)
		n1.setNodeConf(t, fmt.Sprintf("idx=1 round=%d big=%s", i, label), "")
		for _, n := range c.nodes {
			n.waitFor(fmt.Sprintf("monitor.nodes.n1.labels.round=%d", i), detectTimeout)
		}
	}
	var worst int64
	for _, n := range c.nodes {
		rss, err := procStatus(n.pid(), "VmRSS")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: RSS %d MB after 10 changes of a 900 KB label on n1", n.name, rss>>10)
		worst = max(worst, rss)
	}
	if worst > 100<<10 {
		t.Fatalf("an agent uses %d MB, over 100 MB", worst>>10)
	}
}

// requireTmpfs skips (loudly) or, with AGENT_REQUIRE_FAULT_TESTS=1, fails
// when a tmpfs cannot be mounted here.
func requireTmpfs(t *testing.T) {
	t.Helper()
	switch {
	case os.Geteuid() != 0:
		netfault.Unavailable(t, "not root (a small tmpfs is mounted to fill the disk)")
	case !have("mount") || !have("umount"):
		netfault.Unavailable(t, "no mount command")
	}
}

// mountTmpfs mounts a tmpfs of size bytes on dir until the test ends
// (after kill, which the caller registers later and so runs first).
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		netfault.Unavailable(t, fmt.Sprintf("mount tmpfs: %v: %s", err, bytes.TrimSpace(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for i := 0; i < 1<<14; i++ {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			// The last bytes too: a page may be left.
			for n := 4096; n > 0; n /= 2 {
				for {
					if _, err := f.Write(chunk[:n]); err != nil {
						break
					}
				}
			}
			return
		}
	}
	t.Fatalf("fill %s: the file system never filled", path)
}

// checkGapless fails unless recs are consecutive seqs.
func checkGapless(t testing.TB, what string, recs []anyRecord) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 {
			t.Fatalf("%s: record %d after %d", what, recs[i].Seq, recs[i-1].Seq)
		}
	}
}

// TestDiskFull runs an agent whose var/ is a small tmpfs, fills it, and
// checks SPEC's promise: records keep flowing from memory, no file per
// failed write, the journal catches up when space returns, and records
// lost for good (an outage longer than the ring, or a kill during one)
// are reported: a note from `events --since 0`, a reset on resume.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	requireTmpfs(t)
	c := newCluster(t, clusterOpts{Nodes: 1, Extra: func(n *node) string { return "[journal]\nring_bytes = 1MiB\n" }})
	n := c.node(1)
	n.stop()
	varDir := filepath.Join(n.root, "var")
	if err := os.RemoveAll(varDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(varDir, 0o700); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, varDir, 8<<20)
	t.Cleanup(n.kill) // before the umount
	n.restart()
	filler := filepath.Join(varDir, "filler")
	journal := filepath.Join(varDir, "journal")
	head := func() uint64 {
		recs, _, _ := n.streamRecords(t, "--since", "0")
		return recs[len(recs)-1].Seq
	}

	// 1. Full: the records keep flowing, from memory; no file per failure.
	fillDisk(t, filler)
	start := head()
	for i := range 20 {
		postOrder(t, n, []string{"freeze", "thaw"}[i%2])
	}
	recs, resets, _ := n.streamRecords(t, "--since", strconv.FormatUint(start, 10))
	if len(resets) != 0 || len(recs) < 40 || recs[0].Seq != start+1 {
		t.Fatalf("disk full: %d records after %d (first %v), %d resets", len(recs), start, recs, len(resets))
	}
	checkGapless(t, "disk full", recs)
	// (The segment's last page may take a few records before writes fail.)
	if v := n.metric(t, "agent_journal_waiting_records"); v < 1 {
		t.Fatalf("journal_waiting_records %v while the disk is full", v)
	}
	if files, _ := os.ReadDir(journal); len(files) > 3 {
		t.Fatalf("%d files in the journal directory after failed writes", len(files))
	}

	// 2. Space returns: the journal catches up, gapless.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n.waitMetric(t, "agent_journal_waiting_records", func(v float64) bool { return v == 0 })
	all, resets, stderr := n.streamRecords(t, "--since", "0")
	if len(resets) != 0 || strings.Contains(stderr, "note:") {
		t.Fatalf("after the journal caught up: resets %v, stderr %q", resets, stderr)
	}
	checkGapless(t, "caught up", all)

	// 3. An outage longer than the ring holds: records lost for good.
	before := head()
	fillDisk(t, filler)
	for i := range 4 {
		n.setNodeConf(t, fmt.Sprintf("idx=1 round=%d big=%s", i, strings.Repeat(string(rune('p'+i)), 400<<10)), "")
		n.waitFor(fmt.Sprintf("monitor.nodes.n1.labels.round=%d", i), detectTimeout)
	}
	n.waitMetric(t, "agent_journal_lost_records_total", func(v float64) bool { return v >= 1 })
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n.waitMetric(t, "agent_journal_waiting_records", func(v float64) bool { return v == 0 })
	_, _, stderr = n.streamRecords(t, "--since", "0")
	if !strings.Contains(stderr, "note:") || !strings.Contains(stderr, "were lost") {
		t.Fatalf("events --since 0 across the hole: stderr %q", stderr)
	}
	_, resets, _ = n.streamRecords(t, "--since", strconv.FormatUint(before, 10))
	if len(resets) != 1 || !strings.Contains(string(resets[0].Data), "lost") {
		t.Fatalf("resume across the hole: resets %v", resets)
	}

	// 4. Killed while records wait for the disk: a restart knows them lost.
	before = head()
	fillDisk(t, filler)
	for i := range 40 { // more than the segment's last page takes
		postOrder(t, n, []string{"freeze", "thaw"}[i%2])
	}
	n.waitMetric(t, "agent_journal_waiting_records", func(v float64) bool { return v >= 1 })
	n.signal(syscall.SIGKILL)
	n.wait()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n.restart()
	_, resets, _ = n.streamRecords(t, "--since", strconv.FormatUint(before, 10))
	if len(resets) != 1 || !strings.Contains(string(resets[0].Data), "lost") {
		t.Fatalf("resume across records lost at a kill during the outage: resets %v", resets)
	}
	log, _ := os.ReadFile(n.logPath)
	if !bytes.Contains(log, []byte("records were not journaled before the last stop")) {
		t.Fatal("the restart did not report the records lost at the kill")
	}
}
