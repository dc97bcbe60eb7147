package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"agent/internal/agenttest"
)

// TestRelativeRoot: --root n1 from the directory above works for every
// client command, as --root /abs/n1 does.
func TestRelativeRoot(t *testing.T) {
	nodes := agenttest.StartCluster(t, 1, agenttest.Options{})
	t.Chdir(filepath.Dir(nodes[0].Root))
	rel := filepath.Base(nodes[0].Root)
	if code, out, errs := cli(rel, "daemon", "status", "--filter", "monitor.nodes.n1.frozen"); code != 0 || strings.TrimSpace(out) != "0" {
		t.Fatalf("--root %s daemon status: %d %q %q", rel, code, out, errs)
	}
	if code, out, errs := cli("./"+rel, "wait", "--filter", "monitor.nodes.n1.frozen=0", "--duration", "10s"); code != 0 {
		t.Fatalf("--root ./%s wait: %d %q %q", rel, code, out, errs)
	}
}

// TestEmptyErrorBody: a refusal without a body still gives one line that
// says what happened.
func TestEmptyErrorBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	var o, e strings.Builder
	code := run([]string{"--server", srv.URL, "--token", "x", "status"}, &o, &e)
	want := srv.URL + " answered GET /v1/status with 502 Bad Gateway and no message"
	if code != exitUsage || strings.TrimSpace(e.String()) != "agent: "+want {
		t.Fatalf("exit %d, stderr %q; want 2 and %q", code, e.String(), want)
	}
}

// TestWaitFiltersAreANDed: with two --filter flags, wait returns only when
// both hold, and a bad one is named by its position.
func TestWaitFiltersAreANDed(t *testing.T) {
	nodes := agenttest.StartCluster(t, 1, agenttest.Options{})
	root := nodes[0].Root
	code, out, errs := cli(root, "wait", "--filter", "monitor.nodes.n1.frozen=0", "--filter", "monitor.nodes.n1.frozen!=0", "--duration", "300ms")
	if code != exitTimeout || strings.TrimSpace(out) != "timeout" {
		t.Fatalf("contradicting filters: %d %q %q; want timeout", code, out, errs)
	}
	code, out, errs = cli(root, "wait", "--filter", "monitor.nodes.n1.frozen=0", "--filter", "cluster.name=test", "--duration", "10s")
	if code != 0 {
		t.Fatalf("two true filters: %d %q %q", code, out, errs)
	}
	code, _, errs = cli(root, "wait", "--filter", "cluster.name", "--filter", "a=", "--duration", "1s")
	if code != exitUsage || !strings.Contains(errs, "--filter #2") || !strings.Contains(errs, "column 3") {
		t.Fatalf("bad second filter: %d %q", code, errs)
	}
}

// TestWaitForAnAgentThatIsNotThereYet: with --duration, no agent is
// retried until the deadline and then is a connection error (exit 2), not
// a timeout; without it, exit 2 at once.
func TestWaitForAnAgentThatIsNotThereYet(t *testing.T) {
	code, out, errs := cli(t.TempDir(), "wait", "--filter", "cluster.name", "--duration", "300ms")
	if code != exitUsage || out != "" || !strings.Contains(errs, "no agent answers") {
		t.Fatalf("no agent, --duration: %d %q %q", code, out, errs)
	}
	code, _, errs = cli(t.TempDir(), "wait", "--filter", "cluster.name")
	if code != exitUsage || !strings.Contains(errs, "no agent answers") {
		t.Fatalf("no agent: %d %q", code, errs)
	}
}

// TestStatusShowsFrozenAsTime: the FROZEN column is a time, not a unix
// timestamp.
func TestStatusShowsFrozenAsTime(t *testing.T) {
	nodes := agenttest.StartCluster(t, 1, agenttest.Options{})
	root := nodes[0].Root
	if code, _, errs := cli(root, "node", "freeze"); code != 0 {
		t.Fatalf("freeze: %d %q", code, errs)
	}
	code, out, _ := cli(root, "status")
	if code != 0 || !regexp.MustCompile(`\bn1\b.*\b20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ\b`).MatchString(out) {
		t.Fatalf("status of a frozen node: %d\n%s", code, out)
	}
}
