package proc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"agent/internal/testutil"
)

// waitLong bounds waits that would otherwise hang a broken test; it is
// never a timing assertion.
const waitLong = time.Minute

// script writes an executable /bin/sh script and returns its path.
func script(t testing.TB, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExitCodesAndOutput(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	for _, tc := range []struct {
		argv   []string
		code   int
		failed bool
	}{
		{[]string{"true"}, 0, false},
		{[]string{"false"}, 1, true},
		{[]string{"sh", "-c", "echo out; echo err >&2; exit 7"}, 7, true},
	} {
		res := Run(context.Background(), Command{Argv: tc.argv, Timeout: waitLong})
		if !res.Started || res.ExitCode != tc.code || res.Failed() != tc.failed || res.Err != nil {
			t.Errorf("%v: %+v", tc.argv, res)
		}
	}
	res := Run(context.Background(), Command{Argv: []string{"sh", "-c", "echo out; echo err >&2"}})
	if string(res.Stdout.Data) != "out\n" || string(res.Stderr.Data) != "err\n" {
		t.Errorf("stdout %q stderr %q", res.Stdout.Data, res.Stderr.Data)
	}
	res = Run(context.Background(), Command{Argv: []string{"sh", "-c", "kill -USR1 $$"}})
	if res.ExitCode != -1 || res.Signal == "" || !res.Failed() {
		t.Errorf("killed by a signal: %+v", res)
	}
	check()
}

func TestDoesNotStart(t *testing.T) {
	for _, argv := range [][]string{nil, {""}, {"/nonexistent/cmd"}, {"no-such-program-here"}} {
		res := Run(context.Background(), Command{Argv: argv})
		if res.Started || res.Err == nil || !res.Failed() || res.ExitCode != -1 {
			t.Errorf("%q: %+v", argv, res)
		}
	}
	if res := Run(context.Background(), Command{}); !errors.Is(res.Err, ErrNoCommand) {
		t.Errorf("empty argv: %v", res.Err)
	}
	if res := Run(context.Background(), Command{Argv: []string{"nope-x"}}); !errors.Is(res.Err, exec.ErrNotFound) {
		t.Errorf("missing program: %v", res.Err)
	}
}

func TestStdin(t *testing.T) {
	for _, n := range []int{0, 10, pipeBuf, pipeBuf + 1, 200_000} {
		in := []byte(strings.Repeat("x", n))
		res := Run(context.Background(), Command{Argv: []string{"wc", "-c"}, Stdin: in, Timeout: waitLong})
		if got := strings.TrimSpace(string(res.Stdout.Data)); got != strconv.Itoa(n) {
			t.Errorf("%d bytes on stdin, the command read %s (%+v)", n, got, res)
		}
	}
	// A command that reads nothing of a big stdin still ends well.
	res := Run(context.Background(), Command{Argv: []string{"true"}, Stdin: make([]byte, 1<<20), Timeout: waitLong})
	if res.Failed() {
		t.Errorf("%+v", res)
	}
}

func TestOutputLimit(t *testing.T) {
	res := Run(context.Background(), Command{
		Argv:        []string{"sh", "-c", `i=0; while [ $i -lt 2000 ]; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); done`},
		OutputLimit: 10,
		Timeout:     waitLong,
	})
	if string(res.Stdout.Data) != "line 0\nlin" || string(res.Stderr.Data) != "err 0\nerr " {
		t.Fatalf("stdout %q stderr %q", res.Stdout.Data, res.Stderr.Data)
	}
	if res.Stdout.Dropped == 0 || res.Stderr.Dropped == 0 || res.Failed() {
		t.Fatalf("%+v", res)
	}
}

// TestTimeoutKillsTheGroup: at the timeout the whole group goes, the
// grandchildren included, even those that ignore SIGTERM or outlive the
// leader.
func TestTimeoutKillsTheGroup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		trap  string
		child string
	}{
		{"sigterm", "", "sleep 100"},
		{"leader ignores sigterm", "trap '' TERM", "sleep 100"},
		{"grandchild ignores sigterm", "", "(trap '' TERM; sleep 100; :)"},
		{"grandchild of a grandchild", "", "sh -c 'sleep 100; :'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := testutil.CheckGoroutines(t)
			pidFile := filepath.Join(t.TempDir(), "pid")
			cmd := script(t, tc.trap+"\n"+tc.child+" &\necho $! > \""+pidFile+".tmp\" && mv \""+pidFile+".tmp\" \""+pidFile+"\"\nwait\nwait")
			// On a loaded machine the timeout may fire before the script
			// started its child: then try again with a longer one.
			var b []byte
			for timeout := 300 * time.Millisecond; b == nil; timeout *= 4 {
				if timeout > waitLong {
					t.Fatal("the command never started its child before its timeout")
				}
				res := Run(context.Background(), Command{Argv: []string{cmd}, Timeout: timeout, KillGrace: 50 * time.Millisecond})
				if !res.TimedOut || !res.Failed() || res.Canceled {
					t.Fatalf("%+v", res)
				}
				b, _ = os.ReadFile(pidFile)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, waitLong, func() bool { return testutil.ProcessGone(pid) }, "child %d killed with the group", pid)
			check()
		})
	}
}

func TestContextEndStopsTheCommand(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	ctx, cancel := context.WithCancel(context.Background())
	started := filepath.Join(t.TempDir(), "started")
	done := make(chan *Result, 1)
	go func() {
		done <- Run(ctx, Command{Argv: []string{"sh", "-c", ": > " + started + "; sleep 100"}, KillGrace: 50 * time.Millisecond})
	}()
	testutil.Eventually(t, waitLong, func() bool { _, err := os.Stat(started); return err == nil }, "the command started")
	cancel()
	res := <-done
	if !res.Canceled || res.TimedOut || !res.Failed() {
		t.Fatalf("%+v", res)
	}
	if res := Run(ctx, Command{Argv: []string{"true"}}); !res.Canceled || res.Started {
		t.Fatalf("with a context already done: %+v", res)
	}
	check()
}

// TestEnvironmentIsClean: the agent's secrets and systemd's variables never
// reach a command; PATH, HOME, LANG, TZ and the caller's own do.
func TestEnvironmentIsClean(t *testing.T) {
	t.Setenv("AGENT_TOKEN", "secret-token")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LISTEN_FDS", "2")
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDNAMES", "a:b")
	t.Setenv("SOMETHING_ELSE", "x")
	t.Setenv("HOME", "/home/agent-test")
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("TZ", "Europe/Paris")
	res := Run(context.Background(), Command{
		Argv:        []string{"env"},
		Env:         []string{"AGENT_HOOK=notify", "MY_VAR=a b", "LANG=fr_FR.UTF-8"},
		OutputLimit: 1 << 16,
		Timeout:     waitLong,
	})
	if res.Failed() {
		t.Fatalf("%+v", res)
	}
	got := strings.Split(strings.TrimSpace(string(res.Stdout.Data)), "\n")
	slices.Sort(got)
	want := []string{"AGENT_HOOK=notify", "HOME=/home/agent-test", "LANG=fr_FR.UTF-8", "MY_VAR=a b",
		"PATH=" + os.Getenv("PATH"), "TZ=Europe/Paris"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the command's environment:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("PATH", "")
	res := Run(context.Background(), Command{Argv: []string{"sh", "-c", `echo "$PATH"`}, Timeout: waitLong})
	if res.Failed() || strings.TrimSpace(string(res.Stdout.Data)) != DefaultPath {
		t.Fatalf("%+v, stdout %q", res, res.Stdout.Data)
	}
	// A program is looked up in the command's PATH, never in a relative
	// directory.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mine"), []byte("#!/bin/sh\necho mine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if res := Run(context.Background(), Command{Argv: []string{"mine"}, Env: []string{"PATH=" + dir}}); string(res.Stdout.Data) != "mine\n" {
		t.Fatalf("%+v", res)
	}
	if res := Run(context.Background(), Command{Argv: []string{"mine"}, Env: []string{"PATH=."}}); res.Started {
		t.Fatalf("found in a relative PATH entry: %+v", res)
	}
}

func TestPipesHeldByABackgroundProcess(t *testing.T) {
	res := Run(context.Background(), Command{Argv: []string{"sh", "-c", "sleep 10 & echo bye"}, Timeout: waitLong})
	if !res.PipesHeld || res.ExitCode != 0 || string(res.Stdout.Data) != "bye\n" {
		t.Fatalf("%+v", res)
	}
}

func TestImports(t *testing.T) {
	testutil.ImportsOnly(t, "agent/proc")
}

func TestLogArgs(t *testing.T) {
	res := Run(context.Background(), Command{Argv: []string{script(t, "echo out; echo err >&2; head -c 100 /dev/zero; exit 3")}, OutputLimit: 50})
	got := res.LogArgs()
	want := []any{LogKeyExit, 3, LogKeyStdout, string(res.Stdout.Data), LogKeyStderr, "err\n", LogKeyDropped, res.Stdout.Dropped}
	if !slices.Equal(got, want) || res.Stdout.Dropped == 0 {
		t.Fatalf("LogArgs %v, want %v", got, want)
	}
	if got := (&Result{ExitCode: -1}).LogArgs(); len(got) != 0 {
		t.Fatalf("a command that did not start: %v", got)
	}
}
