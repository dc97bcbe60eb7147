package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"agent/internal/testutil"
)

// lockedBuffer is a bytes.Buffer the demo writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// demoTryLines are the command lines the demo printed under "Try, in
// another terminal:", without the program name.
func demoTryLines(out string) [][]string {
	_, after, ok := strings.Cut(out, "Try, in another terminal:\n")
	if !ok {
		return nil
	}
	var cmds [][]string
	for _, l := range strings.Split(after, "\n") {
		if strings.TrimSpace(l) == "" {
			break
		}
		// The words hold no blanks: only the quotes of the shell go.
		f := strings.Fields(strings.ReplaceAll(l, "'", ""))
		// The program: "go run ./cmd/agent" or a path; every hint then
		// starts with --root or --server.
		for len(f) > 0 && !strings.HasPrefix(f[0], "-") {
			f = f[1:]
		}
		if len(f) > 0 {
			cmds = append(cmds, f)
		}
	}
	return cmds
}

// TestDemoHintsRun starts the demo on free ports and runs every command it
// suggests, as a user would from another terminal once the nodes have met:
// each must end by itself with exit 0 (a wait without --duration, or a hint
// that fails on a fresh demo, would not).
func TestDemoHintsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node demo cluster")
	}
	// The demo puts node N on 127.0.0.N, all on the same two ports.
	hb, api := testutil.FreePort(t), testutil.FreePort(t)
	var out lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runDemo(ctx, &globals{}, &demoFlags{dir: t.TempDir(), nodes: 3, hbPort: hb, apiPort: api, quiet: true}, &out)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	}()

	var cmds [][]string
	testutil.Eventually(t, time.Minute, func() bool {
		cmds = demoTryLines(out.String())
		return len(cmds) > 0
	}, "the demo printed no commands to try:\n%s", out.String())
	var root string
	for _, c := range cmds {
		for i, w := range c {
			if w == "--root" && i+1 < len(c) {
				root = c[i+1]
			}
		}
	}
	if root == "" {
		t.Fatalf("no --root in the demo's hints: %q", cmds)
	}
	// A user reads the hints before typing: by then the nodes have met.
	var o, e bytes.Buffer
	if code := run([]string{"--root", root, "wait", "--filter", "monitor.nodes.n3.status=idle", "--filter", "monitor.nodes.n1.services.web.avail=up", "--duration", "2m"}, &o, &e); code != 0 {
		t.Fatalf("the demo cluster never settled: exit %d %s%s\n%s", code, o.String(), e.String(), out.String())
	}
	// One service file for every node: configs that differ between nodes
	// are reported as a disagreement, which the demo must not show.
	first, err := os.ReadFile(filepath.Join(root, "etc", "svc", "web.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n2", "n3"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(root), n, "etc", "svc", "web.conf"))
		if err != nil || !bytes.Equal(b, first) {
			t.Errorf("%s's web.conf differs from n1's (%v):\n%s\n%s", n, err, b, first)
		}
	}
	for _, c := range cmds {
		if len(c) < 3 {
			t.Fatalf("hint %q: want --root DIR or --server URL, then the command", c)
		}
		if c[0] == "wait" || strings.Contains(strings.Join(c, " "), " wait ") {
			if !strings.Contains(strings.Join(c, " "), "--duration") {
				t.Errorf("hint %q waits without --duration", c)
			}
		}
		if strings.Contains(strings.Join(c, " "), " events ") && !strings.Contains(strings.Join(c, " "), "--duration") {
			t.Errorf("hint %q tails without --duration", c)
		}
		o.Reset()
		e.Reset()
		if code := run(c, &o, &e); code != 0 {
			t.Errorf("hint %q: exit %d\nstdout: %s\nstderr: %s", c, code, o.String(), e.String())
		} else if verb := c[2]; (verb == "status" || verb == "events") && strings.TrimSpace(o.String()) == "" {
			t.Errorf("hint %q printed nothing", c)
		}
	}
}
