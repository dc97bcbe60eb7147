package integration

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shellBlock is one ```sh block of a Markdown file and the heading above it.
type shellBlock struct {
	heading string
	line    int // of the opening fence
	text    string
}

// shellBlocks extracts the ```sh and ```bash blocks of a Markdown file.
func shellBlocks(t *testing.T, path string) []shellBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []shellBlock
	var cur *shellBlock
	heading := ""
	fenced := false // inside any fence (a # line there is no heading)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.HasPrefix(line, "```"):
			blocks = append(blocks, *cur)
			cur, fenced = nil, false
		case cur != nil:
			cur.text += line + "\n"
		case strings.HasPrefix(line, "```"):
			lang := strings.TrimSpace(strings.TrimPrefix(line, "```"))
			if lang == "sh" || lang == "bash" {
				cur = &shellBlock{heading: heading, line: n}
			} else {
				fenced = !fenced
			}
		case !fenced && strings.HasPrefix(line, "#"):
			heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// commands are the command lines of a block, without comments and blanks.
func commands(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if i := strings.Index(l, " #"); i >= 0 {
			l = strings.TrimSpace(l[:i])
		}
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// TestReadmeTopCommands: the README opens with the demo and the tests.
func TestReadmeTopCommands(t *testing.T) {
	blocks := shellBlocks(t, "../README.md")
	if len(blocks) == 0 {
		t.Fatal("README.md has no sh block")
	}
	got := commands(blocks[0].text)
	want := []string{"go run ./cmd/agent demo", "go test -race ./..."}
	if len(got) < 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("README's first commands are %q, want %q", got, want)
	}
}

// TestReadmeQuickStart runs the README's Quick start block as written, in
// a temporary directory: bin/agent is the binary this package built (from
// the same package as the README's go build line), AGENT_ROOT and HOME
// point into the temporary directory, with a node.conf that gives the
// one-node agent a free heartbeat port, and the three-node part gets free
// ports and its own directory in place of /tmp/agents and 10000. Every
// process it starts is in one process group, killed at the end.
func TestReadmeQuickStart(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	var qs *shellBlock
	for _, b := range shellBlocks(t, "../README.md") {
		if b.heading == "Quick start" {
			qs = &b
			break
		}
	}
	if qs == nil {
		t.Fatal(`README.md has no sh block under "## Quick start"`)
	}
	const build = "go build -o bin/agent ./cmd/agent"
	if cmds := commands(qs.text); len(cmds) == 0 || cmds[0] != build {
		t.Fatalf("the Quick start must begin with %q", build)
	}
	ignore, _ := os.ReadFile("../.gitignore")
	if !strings.Contains("\n"+string(ignore), "\n/bin/\n") {
		t.Error(".gitignore does not ignore /bin/, where the Quick start builds the binary")
	}
	const placeholders = "DIR=/tmp/agents PORT=10000"
	if !strings.Contains(qs.text, "\n"+placeholders+"\n") {
		t.Fatalf("the Quick start must set %q on a line of its own (this test replaces it)", placeholders)
	}

	work := shortDir(t)
	for _, d := range []string{"bin", "home", "root/etc", "agents"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(agentBin, filepath.Join(work, "bin", "agent")); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("[hb]\naddr = 127.0.0.1\nport = %d\n", freePort(t, "127.0.0.1"))
	if err := os.WriteFile(filepath.Join(work, "root", "etc", "node.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	script := strings.Replace(qs.text, build, "# "+build+" (built by the test)", 1)
	script = strings.Replace(script, "\n"+placeholders+"\n",
		fmt.Sprintf("\nDIR=%s PORT=%d\n", filepath.Join(work, "agents"), freePorts3(t)), 1)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "AGENT_ROOT="+filepath.Join(work, "root"), "HOME="+filepath.Join(work, "home"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Agents left running by a failed script hold its output open: stop
	// reading soon after bash exits, then kill them.
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	// Whatever happened, nothing the script started outlives the test.
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		logs := ""
		for _, l := range []string{"bin/agent.log", "agents/n1.log", "agents/n2.log", "agents/n3.log"} {
			b, _ := os.ReadFile(filepath.Join(work, l))
			logs += fmt.Sprintf("---- %s\n%s", l, b)
		}
		t.Fatalf("the Quick start (README.md line %d) failed: %v\n%s\n%s", qs.line, err, out, logs)
	}
	t.Logf("the Quick start's output:\n%s", out)
	for _, want := range []string{"alive  idle", "frozen", "thawed", "n3 frozen", "node_freeze"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the Quick start's output lacks %q:\n%s", want, out)
		}
	}
}

// shortDir is a temporary directory with a short path: unix socket paths
// are limited to 108 bytes.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "qs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// freePorts3 returns P such that P+1, P+2 and P+3 are free for TCP and UDP
// on 127.0.0.1 at the time of the call.
func freePorts3(t *testing.T) int {
	t.Helper()
	for range 200 {
		base := 20000 + rand.IntN(30000)
		ok := true
		for p := base + 1; p <= base+3 && ok; p++ {
			ok = portFree(p)
		}
		if ok {
			return base
		}
	}
	t.Fatal("no three consecutive free ports on 127.0.0.1")
	return 0
}

func portFree(p int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
