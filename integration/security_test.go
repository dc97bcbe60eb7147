package integration

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireRoot skips (loudly) a test that needs root, or fails it with
// AGENT_REQUIRE_FAULT_TESTS=1.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "ROOT TEST NOT RUN: " + why + " needs root (set AGENT_REQUIRE_FAULT_TESTS=1 to make this a failure)"
	if os.Getenv("AGENT_REQUIRE_FAULT_TESTS") == "1" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "WARNING:", msg)
	t.Skip(msg)
}

// countLines counts the lines of a file (0 when it is missing).
func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// waitCond polls cond until it holds, or fails the test after d.
func waitCond(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(pollEvery)
	}
}

// logOf returns the node's log so far.
func (n *node) logOf() string {
	b, _ := os.ReadFile(n.logPath)
	return string(b)
}

// TestServiceFileOfAnotherUserNeverRuns: a service file owned by uid 65534,
// mode 0666, is refused; its check never runs as root, while a sound
// service's check runs again and again; fixing owner and mode applies it
// without a restart.
func TestServiceFileOfAnotherUserNeverRuns(t *testing.T) {
	requireRoot(t, "chown of a service file to uid 65534")
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1})
	n := c.node(1)
	pwned, okRuns := filepath.Join(n.root, "pwned"), filepath.Join(n.root, "ok.runs")
	pwn := filepath.Join(n.root, "etc", "svc", "pwn.conf")
	if err := os.WriteFile(pwn, []byte("[service]\norchestrate = no\ncheck_interval = 200ms\ncheck = /bin/sh -c \"touch "+pwned+"\"\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pwn, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(pwn, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	ev := n.waitEvent(map[string]string{"id": "service_config_change", "reason": "invalid", "svcname": "pwn"})
	if msg, _ := ev.Data["error"].(string); !strings.Contains(msg, "owned by uid 65534") || !strings.Contains(msg, pwn) {
		t.Fatalf("the refusal does not name the file and the owner: %q", msg)
	}
	writeService(t, c.nodes, "ok", "[service]\norchestrate = no\ncheck_interval = 200ms\ncheck = /bin/sh -c \"echo x >> "+okRuns+"\"\n")
	waitCond(t, svcTimeout, "the sound service's check never ran 5 times", func() bool { return countLines(okRuns) >= 5 })
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("the check of a service file of uid 65534, mode 0666, ran as root")
	}

	if err := os.Chown(pwn, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pwn, 0o600); err != nil {
		t.Fatal(err)
	}
	waitCond(t, svcTimeout, "the fixed service file was not applied without restart", func() bool {
		_, err := os.Stat(pwned)
		return err == nil
	})
}

// TestLooseFilesRefusedAtStart: a node.conf others can write, a token
// file others can read, and an empty node.conf, stop `daemon run` with
// exit 2, the path and the reason.
func TestLooseFilesRefusedAtStart(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	conf := filepath.Join(root, "etc", "node.conf")
	token := filepath.Join(root, "token")
	if err := os.MkdirAll(filepath.Dir(conf), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "[node]\nname = loose\n[hb]\naddr = 127.0.0.1\nport = 0\n"
	for _, tc := range []struct {
		name, text string
		mode       os.FileMode
		want       []string
	}{
		{"node.conf 0666", base, 0o666, []string{conf, "writable by group and others (mode 0666)", "chmod go-w"}},
		{"node.conf empty", "", 0o600, []string{conf, "empty node.conf is not a config", "remove it to start on the defaults"}},
		{"token 0644", base + "[listener]\naddr = 127.0.0.1:1\ntoken_file = " + token + "\n", 0o600,
			[]string{token, "readable by group or others (mode 0644)", "chmod go-r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(conf, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(conf, tc.mode); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), agentBin, "daemon", "run", "--root", root)
			out, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); err == nil || code != 2 {
				t.Fatalf("exit %d (%v), want 2; output:\n%s", code, err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("stderr does not say %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestChmodReappliesHooks: chmod 664 of node.conf refuses it (and an edit
// made meanwhile); chmod 600 applies the edit without restart, and the
// event's applied list says what changed.
func TestChmodReappliesHooks(t *testing.T) {
	t.Parallel()
	var outOne, outTwo string
	hookSec := func(name, events, out string) string {
		return fmt.Sprintf("[hook#%s]\nevents = %s\ncommand = /bin/sh -c \"cat >> %s\"\n", name, events, out)
	}
	c := newCluster(t, clusterOpts{Nodes: 1, Extra: func(n *node) string {
		outOne, outTwo = filepath.Join(n.root, "one.out"), filepath.Join(n.root, "two.out")
		return hookSec("one", "node_freeze", outOne)
	}})
	n := c.node(1)
	conf := filepath.Join(n.root, "etc", "node.conf")
	if err := os.Chmod(conf, 0o664); err != nil {
		t.Fatal(err)
	}
	n.waitEvent(map[string]string{"id": "node_config_change", "reason": "invalid"})
	// The edit keeps the 0664 mode.
	if err := os.WriteFile(conf, []byte(n.conf("")+"\n"+hookSec("two", "node_thaw", outTwo)), 0o664); err != nil {
		t.Fatal(err)
	}
	invalids := func() int {
		k := 0
		for _, r := range n.journalEvents() {
			if r.Data["id"] == "node_config_change" && r.Data["reason"] == "invalid" {
				k++
			}
		}
		return k
	}
	waitCond(t, svcTimeout, "the edit of a loose node.conf was not refused", func() bool { return invalids() >= 2 })
	postOrder(t, n, "freeze")
	waitCond(t, svcTimeout, "hook one stopped while node.conf was loose", func() bool { return countLines(outOne) >= 1 })

	if err := os.Chmod(conf, 0o600); err != nil {
		t.Fatal(err)
	}
	waitCond(t, svcTimeout, "chmod 600 did not apply the hooks", func() bool {
		for _, r := range n.journalEvents() {
			if r.Data["id"] == "node_config_change" && r.Data["reason"] == "reload" {
				return fmt.Sprint(r.Data["applied"]) == "[hooks]"
			}
		}
		return false
	})
	postOrder(t, n, "thaw")
	waitCond(t, svcTimeout, "hook two never ran after chmod 600", func() bool { return countLines(outTwo) >= 1 })
}

// TestVanishedNodeConf: an emptied, then removed node.conf is refused
// while the agent runs: the labels stay cluster-wide, the hook runs every
// event meanwhile, and the restored file applies nothing and skips
// nothing.
func TestVanishedNodeConf(t *testing.T) {
	t.Parallel()
	var out string
	c := newCluster(t, clusterOpts{Nodes: 2, Extra: func(n *node) string {
		out = filepath.Join(n.root, "hook.out")
		return fmt.Sprintf("[hook#rec]\nevents = node_freeze,node_thaw\ncommand = /bin/sh -c \"cat >> %s\"\n", out)
	}})
	n1, n2 := c.node(1), c.node(2)
	out = filepath.Join(n1.root, "hook.out")
	c.waitConverged()
	conf := filepath.Join(n1.root, "etc", "node.conf")
	text, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	n1.waitEvent(map[string]string{"id": "node_config_change", "reason": "invalid"})
	postOrder(t, n1, "freeze")
	if err := os.Remove(conf); err != nil {
		t.Fatal(err)
	}
	waitCond(t, svcTimeout, "removed node.conf not refused", func() bool {
		for _, r := range n1.journalEvents() {
			if msg, _ := r.Data["error"].(string); strings.Contains(msg, "was removed") {
				return true
			}
		}
		return false
	})
	postOrder(t, n1, "thaw")
	waitCond(t, svcTimeout, "the hook did not run both events while node.conf was gone", func() bool { return countLines(out) >= 2 })
	n2.waitFor("monitor.nodes.n1.labels.idx=1", detectTimeout)

	if err := os.WriteFile(conf, text, 0o600); err != nil {
		t.Fatal(err)
	}
	n1.waitEvent(map[string]string{"id": "node_config_change", "reason": "reload"})
	for _, r := range n1.journalEvents() {
		if r.Data["id"] == "hook_skipped" {
			t.Fatalf("a hook that stayed configured skipped records: %v", r.Data)
		}
		if r.Data["id"] == "node_config_change" && r.Data["reason"] == "reload" && fmt.Sprint(r.Data["applied"]) != "[]" {
			t.Fatalf("the restored node.conf applied %v, want nothing", r.Data["applied"])
		}
	}
}

// TestSymlinkedNodeConf: node.conf is a symlink; edits of its target apply.
func TestSymlinkedNodeConf(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1})
	n := c.node(1)
	conf := filepath.Join(n.root, "etc", "node.conf")
	target := filepath.Join(c.dir, "shared", "n1.conf")
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, text, 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := conf + ".link"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, conf); err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(text), "labels = idx=1", "labels = idx=9", 1)
	if err := os.WriteFile(target, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	n.waitFor("monitor.nodes.n1.labels.idx=9", detectTimeout)
}

// TestSighupReloads: SIGHUP logs a reload and does not kill the daemon; it
// sees a directory above node.conf made loose, and its fix.
func TestSighupReloads(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1})
	n := c.node(1)
	n.signal(syscall.SIGHUP)
	waitCond(t, svcTimeout, "no reload line in the log after SIGHUP", func() bool {
		return strings.Contains(n.logOf(), "reloaded node.conf and service files")
	})
	if !n.running() {
		t.Fatal("SIGHUP killed the daemon")
	}
	n.waitReady()

	// The root directory is not watched: SIGHUP re-checks it.
	if err := os.Chmod(n.root, 0o777); err != nil {
		t.Fatal(err)
	}
	n.signal(syscall.SIGHUP)
	ev := n.waitEvent(map[string]string{"id": "node_config_change", "reason": "invalid"})
	if msg, _ := ev.Data["error"].(string); !strings.Contains(msg, "directory "+n.root) {
		t.Fatalf("refusal does not name the loose directory: %q", msg)
	}
	if err := os.Chmod(n.root, 0o700); err != nil {
		t.Fatal(err)
	}
	n.signal(syscall.SIGHUP)
	n.waitEvent(map[string]string{"id": "node_config_change", "reason": "reload"})
	n.stop() // SIGTERM still leaves gracefully, exit 0
}

// TestSigpipeOnStderr: `agent daemon run 2>&1 | head -1`: once the reader
// is gone, the daemon's log writes fail, and it keeps running.
func TestSigpipeOnStderr(t *testing.T) {
	t.Parallel()
	c := &cluster{t: t, dir: t.TempDir(), opts: clusterOpts{Nodes: 1}}
	c.name = fmt.Sprintf("itest-%d-pipe", os.Getpid())
	// The log goes to the closed pipe: a start-up failure (a port taken
	// meanwhile: exit 2) cannot be told apart from a death by SIGPIPE but
	// by its exit status, and is tried again on new ports.
	for attempt := 1; ; attempt++ {
		c.layout(attempt)
		n := c.nodes[0]
		n.writeConfig("")
		err := sigpipeRun(t, n)
		if err == nil {
			return
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 2 && attempt < 3 {
			t.Logf("attempt %d: exit 2 at start (port taken?), again", attempt)
			continue
		}
		t.Fatalf("the daemon died writing to a closed stderr: %v", err)
	}
}

// sigpipeRun runs the daemon of n with its stdout and stderr on a pipe
// closed after one line, makes it log, checks that it answers, then stops
// it. It returns the exit error of a daemon that died.
func sigpipeRun(t *testing.T, n *node) error {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentBin, "daemon", "run", "--root", n.root)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan error, 1)
	gone := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(gone) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-gone
	}()
	if _, err := bufio.NewReader(r).ReadString('\n'); err != nil {
		t.Fatalf("no first log line: %v", err)
	}
	r.Close() // head -1 is done
	// Make it log, into the closed pipe.
	for range 3 {
		_ = cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-exited:
			return err
		default:
		}
		if _, _, code, err := n.run("daemon", "status", "--filter", "monitor.nodes.n1.status"); err == nil && code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon does not answer after its stderr closed")
		}
		time.Sleep(pollEvery)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(exitTimeout):
		t.Fatal("no exit after SIGTERM")
	}
	return nil
}

// TestTokenStaysHome: the local token file goes to the node's own
// listener, never to another --server; --token goes to --server.
func TestTokenStaysHome(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"cluster":{},"monitor":{}}`))
	}))
	defer foreign.Close()
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return "(no request)"
		}
		return got[len(got)-1]
	}
	c := newCluster(t, clusterOpts{Nodes: 1, Listener: func(n *node) string {
		return "auth = token\ntoken_file = " + filepath.Join(n.root, "token")
	}})
	n := c.node(1)
	own := fmt.Sprintf("http://%s:%d", n.ip, n.apiPort)
	if _, errs, code := n.cli("--server", own, "daemon", "status"); code != 0 {
		t.Fatalf("own listener with the local token: exit %d: %s", code, errs)
	}
	n.cli("--server", foreign.URL, "daemon", "status")
	if a := last(); a != "" {
		t.Fatalf("the local token went to a foreign server: %q", a)
	}
	n.cli("--server", foreign.URL, "--token", "for-foreign", "daemon", "status")
	if a := last(); a != "Bearer for-foreign" {
		t.Fatalf("--token did not go to --server: %q", a)
	}
	// The same port on another address is another server too.
	if _, errs, code := n.cli("--server", fmt.Sprintf("http://127.0.0.200:%d", n.apiPort), "daemon", "status"); code != 2 {
		t.Fatalf("another address: exit %d: %s", code, errs)
	}
}
