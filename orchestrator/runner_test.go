//go:build unix

package orchestrator

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agent/internal/testutil"
)

func TestExecRunner(t *testing.T) {
	r := &ExecRunner{Logger: quietLogger()}
	ctx := context.Background()
	for _, tc := range []struct {
		argv []string
		code int
	}{
		{[]string{"true"}, 0},
		{[]string{"false"}, 1},
		{[]string{"sh", "-c", "exit 2"}, 2},
		{[]string{"sh", "-c", "echo out; echo err >&2; exit 7"}, 7},
	} {
		code, err := r.Run(ctx, Command{Service: "s", Action: ActionCheck, Argv: tc.argv, Timeout: 5 * time.Second})
		if err != nil || code != tc.code {
			t.Errorf("%v: code %d err %v, want %d", tc.argv, code, err, tc.code)
		}
		if got := availOf(code, err); tc.code == 7 && got != AvailUnknown {
			t.Errorf("exit 7 gives %s", got)
		}
	}
	if _, err := r.Run(ctx, Command{Service: "s", Action: ActionStart, Argv: []string{"/nonexistent/cmd"}, Timeout: time.Second}); err == nil {
		t.Error("missing command: no error")
	}
	if _, err := r.Run(ctx, Command{Service: "s", Action: ActionStart}); err == nil {
		t.Error("empty argv: no error")
	}
	// A program others can write is refused at run time too: it may have
	// been loosened after the service file was read.
	marker := filepath.Join(t.TempDir(), "ran")
	prog := filepath.Join(t.TempDir(), "check")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(prog, 0o777); err != nil {
		t.Fatal(err)
	}
	code, err := r.Run(ctx, Command{Service: "s", Action: ActionCheck, Argv: []string{prog}, Timeout: 5 * time.Second})
	if err == nil || code != -1 || !strings.Contains(err.Error(), "writable by group and others") {
		t.Errorf("loose program: code %d err %v", code, err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a loose program ran")
	}
}

func TestExecRunnerTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	r := &ExecRunner{Logger: quietLogger()}
	// The shell starts a background child that would outlive it; the
	// whole process group must die at the timeout.
	script := "sleep 30 & echo $! > " + pidFile + "; wait"
	_, err := r.Run(context.Background(), Command{Service: "s", Action: ActionStart, Argv: []string{"sh", "-c", script}, Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		// Gone, or a zombie waiting for init to reap it.
		stat, err := os.ReadFile("/proc/" + string(trimNL(raw)) + "/stat")
		return errors.Is(err, os.ErrNotExist) || strings.Contains(string(stat), ") Z ")
	}, "background child %s survived the timeout", raw)
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// TestShellScriptService runs a one-node orchestrator with the real runner
// and tiny shell scripts whose state is a file.
func TestShellScriptService(t *testing.T) {
	leak := testutil.CheckGoroutines(t)
	func() {
		dir := t.TempDir()
		state := filepath.Join(dir, "up")
		c := newCluster(t, []string{"n1"}, clusterOpts{ready: 10 * time.Millisecond})
		n := c.node("n1")
		// Replace the fake runner: a new orchestrator on the same store.
		n.shutdown()
		o, err := New(Config{Store: n.store, ReadyPeriod: 10 * time.Millisecond, Tick: 20 * time.Millisecond, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = o.Run(ctx) }()
		defer func() { cancel(); <-done; _ = o.Close() }()
		s := testService("web", "failover")
		s.Check = []string{"test", "-e", state}
		s.Start = []string{"touch", state}
		s.Stop = []string{"rm", "-f", state}
		if err := o.SetService(&s); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() bool { _, err := os.Stat(state); return err == nil }, "never started")
		if err := o.Order("web", "stop"); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() bool { return o.Done("web") }, "stop never done")
		if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("still up after stop: %v", err)
		}
		if st := o.Stats(); st.Starts != 1 || st.Stops != 1 || st.Checks == 0 {
			t.Errorf("stats %+v", st)
		}
	}()
	leak()
}

// TestExecRunnerEnvironment: a service's commands get its env values and
// the clean environment, never the agent's secrets.
func TestExecRunnerEnvironment(t *testing.T) {
	t.Setenv("AGENT_TOKEN", "secret")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LISTEN_PID", "1")
	r := &ExecRunner{Logger: quietLogger()}
	check := `test "$DB" = "db 1" && test -z "$AGENT_TOKEN$NOTIFY_SOCKET$LISTEN_PID" && test -n "$PATH"`
	code, err := r.Run(context.Background(), Command{Service: "s", Action: ActionCheck,
		Argv: []string{"sh", "-c", check}, Env: []string{"DB=db 1"}, Timeout: time.Minute})
	if err != nil || code != 0 {
		t.Fatalf("code %d err %v: the command's environment is not the clean one plus the service's", code, err)
	}
}
