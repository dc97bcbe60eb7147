package integration

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Deadlines of the harness. They bound waits on conditions; none is an
// assertion on speed.
const (
	cliTimeout = 30 * time.Second // one CLI invocation
	waitSlice  = 20 * time.Second // one `agent wait` of waitFor
	// exitWaitTimeout is `agent wait`'s exit code when its duration ran
	// out.
	exitWaitTimeout = 1
	startTimeout    = 30 * time.Second // a started agent answers on its socket
	convergeTimeout = 60 * time.Second // the cluster agrees on monitor.nodes
	exitTimeout     = 30 * time.Second // a signalled agent exits
	pollEvery       = 100 * time.Millisecond
)

// stateDirEnv names the environment variable that gives each agent's
// service and hook commands their node's root directory. Commands get a
// clean environment (PATH, HOME, LANG, TZ and their own variables), so
// the harness starts each agent with HOME set to its root: with --root
// the agent itself does not use HOME.
const stateDirEnv = "HOME"

// clusterOpts shape a test cluster.
type clusterOpts struct {
	// Nodes is the number of agents, n1..nN on 127.0.0.1..N.
	Nodes int
	// Secret is the cluster's gossip key (base64), or "".
	Secret string
	// NetNS, when set, runs every agent in that network namespace with
	// fixed ports (the namespace is the test's own).
	NetNS string
	// Gid, when set, gives node i's process this group id (the netns tests
	// match packets to their sender by it).
	Gid func(i int) uint32
	// ClusterConf, when set, is more lines of node.conf's [cluster]
	// section (quorum = true, nodes = ...), the same on every node.
	ClusterConf string
	// Extra, when set, returns more sections appended to node n's
	// node.conf ([hook#NAME] ...).
	Extra func(n *node) string
	// Profile is the heartbeat profile; default local.
	Profile string
	// HB, when set, is more lines of node.conf's [hb] section
	// (forget_after = 20s), the same on every node.
	HB string
	// Labels, when set, replaces node n's labels line value.
	Labels func(n *node) string
	// Listener, when set, returns the lines that replace "auth = none" in
	// the [listener] section of node n (auth, token_file, max_conns, ...).
	Listener func(n *node) string
	// Env are more variables, KEY=VALUE, of every agent process's
	// environment.
	Env []string
}

// cluster is a set of agent processes of one test.
type cluster struct {
	t     testing.TB
	name  string
	dir   string
	opts  clusterOpts
	nodes []*node
	seeds []string
}

// node is one agent process, restartable.
type node struct {
	c       *cluster
	i       int
	name    string
	root    string
	ip      string
	hbPort  int
	apiPort int
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
	err  error         // its exit status, valid after done
}

// newCluster writes the node.conf of every node and starts them all. The
// processes are killed and, on failure, their logs dumped in t.Cleanup.
func newCluster(t testing.TB, opts clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), opts: opts}
	c.name = fmt.Sprintf("itest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.kill()
		}
		if t.Failed() {
			c.dumpLogs()
		}
	})
	// A port picked free may be taken by another test's process before
	// the agent binds it: then every node starts again on new ports.
	for attempt := 1; ; attempt++ {
		c.layout(attempt)
		for _, n := range c.nodes {
			n.writeConfig("")
			n.start()
		}
		taken := false
		for _, n := range c.nodes {
			if err := n.ready(); err != nil {
				b, _ := os.ReadFile(n.logPath)
				if attempt < 3 && opts.NetNS == "" && strings.Contains(string(b), "address already in use") {
					taken = true
					break
				}
				t.Fatal(err)
			}
		}
		if !taken {
			return c
		}
		t.Logf("attempt %d: a port was taken meanwhile, starting again", attempt)
		for _, n := range c.nodes {
			n.kill()
		}
	}
}

// layout (re)places the nodes: names, addresses, fresh ports, roots.
func (c *cluster) layout(attempt int) {
	c.nodes, c.seeds = nil, nil
	for i := 1; i <= c.opts.Nodes; i++ {
		n := &node{c: c, i: i, name: fmt.Sprintf("n%d", i), ip: fmt.Sprintf("127.0.0.%d", i)}
		if c.opts.NetNS != "" {
			n.hbPort, n.apiPort = 17001, 18001
		} else {
			n.hbPort, n.apiPort = freePort(c.t, n.ip), freePort(c.t, n.ip)
		}
		n.root = filepath.Join(c.dir, fmt.Sprintf("try%d", attempt), n.name)
		n.logPath = filepath.Join(c.dir, n.name+".log")
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes[:min(2, len(c.nodes))] {
		c.seeds = append(c.seeds, net.JoinHostPort(n.ip, strconv.Itoa(n.hbPort)))
	}
}

// freePort returns a port free for TCP and UDP on ip at the time of the
// call. Another process may take it before the agent binds it; the ports of
// the kernel's ephemeral range make that unlikely.
func freePort(t testing.TB, ip string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("listen on %s: %v", ip, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatalf("no port free for both TCP and UDP on %s", ip)
	return 0
}

// node returns node nN.
func (c *cluster) node(i int) *node { return c.nodes[i-1] }

// dumpLogs prints the tail of every agent's log.
func (c *cluster) dumpLogs() {
	for _, n := range c.nodes {
		b, _ := os.ReadFile(n.logPath)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 150 {
			lines = lines[len(lines)-150:]
		}
		c.t.Logf("==== log of %s (%s), last %d lines ====\n%s", n.name, n.logPath, len(lines), strings.Join(lines, "\n"))
	}
}

// conf is node.conf with extra lines appended (extra may override nothing:
// the INI sections are written once).
func (n *node) conf(secret string) string {
	var b strings.Builder
	labels := fmt.Sprintf("idx=%d", n.i)
	if n.c.opts.Labels != nil {
		labels = n.c.opts.Labels(n)
	}
	fmt.Fprintf(&b, "[node]\nname = %s\nlabels = %s\n\n[cluster]\nname = %s\nseeds = %s\n",
		n.name, labels, n.c.name, strings.Join(n.c.seeds, " "))
	if secret != "" {
		fmt.Fprintf(&b, "secret = %s\n", secret)
	}
	if cc := n.c.opts.ClusterConf; cc != "" {
		fmt.Fprintf(&b, "%s\n", strings.TrimRight(cc, "\n"))
	}
	fmt.Fprintf(&b, "\n[hb]\naddr = %s\nport = %d\nprofile = %s\n", n.ip, n.hbPort, cmp.Or(n.c.opts.Profile, "local"))
	if hb := n.c.opts.HB; hb != "" {
		fmt.Fprintf(&b, "%s\n", strings.TrimRight(hb, "\n"))
	}
	listener := "auth = none"
	if n.c.opts.Listener != nil {
		listener = strings.TrimRight(n.c.opts.Listener(n), "\n")
	}
	fmt.Fprintf(&b, "\n[listener]\naddr = %s\n%s\n", net.JoinHostPort(n.ip, strconv.Itoa(n.apiPort)), listener)
	if n.c.opts.Extra != nil {
		fmt.Fprintf(&b, "\n%s\n", n.c.opts.Extra(n))
	}
	return b.String()
}

// writeConfig writes node.conf; secret "" means the cluster's.
func (n *node) writeConfig(secret string) {
	if secret == "" {
		secret = n.c.opts.Secret
	}
	if err := os.MkdirAll(filepath.Join(n.root, "etc", "svc"), 0o700); err != nil {
		n.c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.root, "etc", "node.conf"), []byte(n.conf(secret)), 0o600); err != nil {
		n.c.t.Fatal(err)
	}
}

func (n *node) socket() string { return filepath.Join(n.root, "var", "agent.sock") }

// command builds `agent args...` for this node's process (inside the
// cluster's namespace, with its group id, when the cluster says so).
func (n *node) command(ctx context.Context, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if ns := n.c.opts.NetNS; ns != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, agentBin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, agentBin, args...)
	}
	if n.c.opts.Gid != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid: uint32(os.Geteuid()), Gid: n.c.opts.Gid(n.i), NoSetGroups: true,
		}}
	}
	return cmd
}

// start starts the agent process, its stderr appended to the node's log.
func (n *node) start() {
	n.c.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.c.t.Fatal(err)
	}
	fmt.Fprintf(logf, "---- harness: start %s at %s ----\n", n.name, time.Now().Format(time.RFC3339Nano))
	cmd := n.command(context.Background(), "daemon", "run", "--root", n.root)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Service commands get it: one service config, identical on every
	// node, keeps its state in a directory of each node's own.
	cmd.Env = append(append(os.Environ(), n.c.opts.Env...), stateDirEnv+"="+n.root)
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.c.t.Fatalf("start %s: %v", n.name, err)
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
		close(done)
	}()
}

// pid is the current process id.
func (n *node) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// running says whether the current process has not exited.
func (n *node) running() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// signal sends sig to the current process.
func (n *node) signal(sig syscall.Signal) {
	n.c.t.Helper()
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		n.c.t.Fatalf("signal %v to %s: %v", sig, n.name, err)
	}
}

// wait waits for the current process to exit and returns its exit code.
func (n *node) wait() int {
	n.c.t.Helper()
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
	case <-time.After(exitTimeout):
		n.c.t.Fatalf("%s did not exit within %v", n.name, exitTimeout)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var ee *exec.ExitError
	switch {
	case n.err == nil:
		return 0
	case errors.As(n.err, &ee):
		return ee.ExitCode()
	default:
		n.c.t.Fatalf("%s: wait: %v", n.name, n.err)
		return -1
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (n *node) stop() {
	n.c.t.Helper()
	n.signal(syscall.SIGTERM)
	if code := n.wait(); code != 0 {
		n.c.t.Fatalf("%s exited %d after SIGTERM, want 0", n.name, code)
	}
}

// kill ends the process at once (SIGKILL, continuing a stopped one), if it
// runs. Safe at any time.
func (n *node) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-done:
	case <-time.After(exitTimeout):
	}
}

// restart starts the process again after it exited and waits until it
// answers.
func (n *node) restart() {
	n.c.t.Helper()
	n.start()
	n.waitReady()
}

// cli runs `agent --root ROOT args...` and returns stdout, stderr and the
// exit code.
func (n *node) cli(args ...string) (string, string, int) {
	n.c.t.Helper()
	out, errs, code, err := n.run(args...)
	if err != nil {
		n.c.t.Fatalf("%s: agent %s: %v", n.name, strings.Join(args, " "), err)
	}
	return out, errs, code
}

// run is cli for any goroutine: a failure to run the binary is returned.
func (n *node) run(args ...string) (string, string, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBin, append([]string{"--root", n.root}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return "", "", -1, err
		}
		return out.String(), errb.String(), ee.ExitCode(), nil
	}
	return out.String(), errb.String(), 0, nil
}

// mustCLI runs a CLI command that must exit 0 and returns its stdout.
func (n *node) mustCLI(args ...string) string {
	n.c.t.Helper()
	out, errs, code := n.cli(args...)
	if code != 0 {
		n.c.t.Fatalf("%s: agent %s: exit %d: %s", n.name, strings.Join(args, " "), code, strings.TrimSpace(errs))
	}
	return out
}

// waitFor runs `agent wait --filter expr` on this node and fails the test
// unless expr came to hold within d.
//
// One `agent wait` lasts at most waitSlice (a CLI invocation is cut at
// cliTimeout); a longer d takes several, until d has passed.
func (n *node) waitFor(expr string, d time.Duration) {
	n.c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		slice := min(time.Until(deadline), waitSlice)
		out, errs, code := n.cli("wait", "--filter", expr, "--duration", max(slice, time.Millisecond).String())
		if code == 0 {
			return
		}
		if code != exitWaitTimeout || time.Until(deadline) <= 0 {
			n.c.t.Fatalf("%s: wait %q for %v: exit %d: %s %s", n.name, expr, d, code, strings.TrimSpace(out), strings.TrimSpace(errs))
		}
	}
}

// waitReady waits until the agent answers on its socket with its own node
// idle (or rejoin), or fails the test.
func (n *node) waitReady() {
	n.c.t.Helper()
	if err := n.ready(); err != nil {
		n.c.t.Fatal(err)
	}
}

// ready waits until the agent answers on its socket with its own node
// idle or rejoin; an error says why not (the process exited, or the deadline).
func (n *node) ready() error {
	deadline := time.Now().Add(startTimeout)
	for {
		if !n.running() {
			n.mu.Lock()
			err := n.err
			n.mu.Unlock()
			return fmt.Errorf("%s exited during start-up (%v); see its log", n.name, err)
		}
		if _, err := os.Stat(n.socket()); err == nil {
			out, _, code, err := n.run("daemon", "status", "--filter", "monitor.nodes."+n.name+".status")
			// "rejoin" is a node still looking for its peers: it runs.
			if st := strings.TrimSpace(out); err == nil && code == 0 && (st == `"idle"` || st == `"rejoin"`) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v", n.name, startTimeout)
		}
		time.Sleep(pollEvery)
	}
}

// status returns the cluster data as this node sees it, or nil when the
// agent does not answer.
func (n *node) status() map[string]any {
	n.c.t.Helper()
	out, _, code := n.cli("daemon", "status", "-o", "json")
	if code != 0 {
		return nil
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		n.c.t.Fatalf("%s: daemon status is not JSON: %v", n.name, err)
	}
	return doc
}

// view is one node's view of the cluster: canonical monitor.nodes and its
// hash, the members' states, and every node's gen.
type view struct {
	nodesJSON string
	hash      string
	members   map[string]string
	gens      map[string]uint64
}

// canonical re-encodes v with sorted keys and no spaces.
func canonical(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// viewOf extracts the view from a status document.
func viewOf(doc map[string]any) view {
	v := view{members: map[string]string{}, gens: map[string]uint64{}}
	mon, _ := doc["monitor"].(map[string]any)
	nodes, _ := mon["nodes"].(map[string]any)
	v.nodesJSON = canonical(nodes)
	v.hash = sha(v.nodesJSON)
	for name, d := range nodes {
		if m, ok := d.(map[string]any); ok {
			if g, ok := m["gen"].(float64); ok {
				v.gens[name] = uint64(g)
			}
		}
	}
	cl, _ := doc["cluster"].(map[string]any)
	members, _ := cl["nodes"].(map[string]any)
	for name, m := range members {
		if mm, ok := m.(map[string]any); ok {
			v.members[name], _ = mm["state"].(string)
		}
	}
	return v
}

// views reads the view of each node given.
func views(t testing.TB, nodes []*node) []view {
	t.Helper()
	out := make([]view, len(nodes))
	for i, n := range nodes {
		if doc := n.status(); doc != nil {
			out[i] = viewOf(doc)
		}
	}
	return out
}

// waitConverged waits until every node of c holds byte-identical
// monitor.nodes with an entry for each node of c, and sees every one
// alive. It returns the common view.
func (c *cluster) waitConverged() view {
	c.t.Helper()
	all := names(c.nodes)
	return waitConverged(c.t, c.nodes, all, all)
}

// waitConverged waits until every node given holds byte-identical
// monitor.nodes with an entry for each of want, and sees each of alive
// alive. It returns the common view.
func waitConverged(t testing.TB, nodes []*node, want []string, alive []string) view {
	t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	var last []view
	for {
		last = views(t, nodes)
		if converged(last, want, alive) {
			return last[0]
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for i, v := range last {
				fmt.Fprintf(&b, "\n  %s: hash %s members %v gens %v\n    %s", nodes[i].name, v.hash, v.members, v.gens, v.nodesJSON)
			}
			t.Fatalf("no convergence within %v:%s", convergeTimeout, b.String())
		}
		time.Sleep(pollEvery)
	}
}

func converged(vs []view, want, alive []string) bool {
	for _, v := range vs {
		if v.hash == "" || v.hash != vs[0].hash {
			return false
		}
		for _, w := range want {
			if _, ok := v.gens[w]; !ok {
				return false
			}
		}
		for _, a := range alive {
			if v.members[a] != "alive" {
				return false
			}
		}
	}
	return true
}

// names returns the names of nodes.
func names(nodes []*node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.name
	}
	return out
}

// except returns the nodes of c but those given.
func (c *cluster) except(skip ...*node) []*node {
	var out []*node
next:
	for _, n := range c.nodes {
		for _, s := range skip {
			if n == s {
				continue next
			}
		}
		out = append(out, n)
	}
	return out
}

// procStatus reads one field (kB for VmRSS) of /proc/PID/status.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			fs := strings.Fields(rest)
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// openFiles counts /proc/PID/fd.
func openFiles(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
