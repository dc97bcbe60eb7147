package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Defaults of Command.
const (
	// DefaultKillGrace is the time between SIGTERM and SIGKILL.
	DefaultKillGrace = 5 * time.Second
	// DefaultOutputLimit is how many bytes of stdout and of stderr are kept.
	DefaultOutputLimit = 4096
	// DefaultPath is the PATH a command gets when the agent has none.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// PipeWait bounds how long Run waits, once the command exited, for its
// stdout and stderr to close.
const PipeWait = time.Second

// BaseVars are the variables of the agent's environment a command gets.
var BaseVars = []string{"PATH", "HOME", "LANG", "TZ"}

// ErrNoCommand is the Result.Err of a Command without a program.
var ErrNoCommand = errors.New("no command")

// Command is a program to run and how.
type Command struct {
	// Argv is the program and its arguments, run without a shell.
	Argv []string
	// Env are the caller's own variables, KEY=VALUE, added to the clean
	// environment (a later one replaces an earlier one of the same name,
	// PATH included).
	Env []string
	// Stdin is what the command reads on its stdin; nil: nothing.
	Stdin []byte
	// Timeout bounds the run; 0 means none (the context still ends it).
	Timeout time.Duration
	// KillGrace is how long the group has to exit after SIGTERM before
	// SIGKILL; 0 means DefaultKillGrace.
	KillGrace time.Duration
	// OutputLimit is how many bytes of stdout and of stderr are kept; 0
	// means DefaultOutputLimit.
	OutputLimit int
}

// Result is the outcome of a run.
type Result struct {
	// Started reports whether the program started.
	Started bool
	// ExitCode is the exit status, -1 when the command did not start or
	// was killed by a signal.
	ExitCode int
	// Signal names the signal that killed the command, if one did.
	Signal string
	// TimedOut: the command was stopped at its timeout.
	TimedOut bool
	// Canceled: the command was stopped because the context ended.
	Canceled bool
	// Err says why the command did not start, or could not be waited for.
	Err error
	// PipesHeld: a background process kept stdout or stderr open past
	// PipeWait after the command exited; they were closed.
	PipesHeld bool
	// Duration is how long the command ran.
	Duration time.Duration
	// Stdout and Stderr are the captured output.
	Stdout, Stderr Output
}

// Failed reports whether the run did not succeed: it did not start, did
// not exit 0, or was stopped.
func (r *Result) Failed() bool {
	return !r.Started || r.TimedOut || r.Canceled || r.ExitCode != 0 || r.Err != nil
}

// Output is the captured output of one stream: the first bytes, and how
// many more were dropped. It is an io.Writer that never fails.
type Output struct {
	// Data is the first OutputLimit bytes.
	Data []byte
	// Dropped counts the bytes read past the limit.
	Dropped int64

	limit int
}

// Write keeps what fits under the limit and counts the rest.
func (o *Output) Write(p []byte) (int, error) {
	n := max(0, min(len(p), o.limit-len(o.Data)))
	o.Data = append(o.Data, p[:n]...)
	o.Dropped += int64(len(p) - n)
	return len(p), nil
}

// Env returns the clean environment of a command: BaseVars from the
// agent's environment (PATH defaulting to DefaultPath), then extra, a
// later variable replacing an earlier one of the same name.
func Env(extra ...string) []string {
	env := make([]string, 0, len(BaseVars)+len(extra))
	for _, k := range BaseVars {
		v, ok := os.LookupEnv(k)
		if k == "PATH" && v == "" {
			v, ok = DefaultPath, true
		}
		if ok {
			env = append(env, k+"="+v)
		}
	}
	for _, kv := range extra {
		name, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, e := range env {
			if n, _, _ := strings.Cut(e, "="); n == name {
				env[i], replaced = kv, true
				break
			}
		}
		if !replaced {
			env = append(env, kv)
		}
	}
	return env
}

// lookPath finds a program named without a slash in the absolute
// directories of path.
func lookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
}

// envValue returns the value of name in env, "" when absent.
func envValue(env []string, name string) string {
	for _, e := range env {
		if n, v, ok := strings.Cut(e, "="); ok && n == name {
			return v
		}
	}
	return ""
}

// Run runs c and waits for it: until it exits, its timeout passes, or ctx
// ends; in the last two cases its process group gets SIGTERM, then SIGKILL
// after KillGrace. See the package documentation.
func Run(ctx context.Context, c Command) *Result {
	res := &Result{ExitCode: -1}
	limit := c.OutputLimit
	if limit <= 0 {
		limit = DefaultOutputLimit
	}
	grace := c.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	res.Stdout.limit, res.Stderr.limit = limit, limit
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		res.Err = ErrNoCommand
		return res
	}
	env := Env(c.Env...)
	path, err := lookPath(c.Argv[0], envValue(env, "PATH"))
	if err != nil {
		res.Err = err
		return res
	}
	if err := ctx.Err(); err != nil {
		res.Canceled, res.Err = true, err
		return res
	}
	cmd := &exec.Cmd{Path: path, Args: c.Argv, Env: env}
	stdin, err := stdinFor(c.Stdin)
	if err != nil {
		res.Err = err
		return res
	}
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = &res.Stdout, &res.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = PipeWait

	start := time.Now()
	err = cmd.Start()
	if f, ok := stdin.(*os.File); ok {
		f.Close() // the child has its copy
	}
	if err != nil {
		res.Err = err
		return res
	}
	res.Started = true
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- waitExited(cmd) }()

	var timeout <-chan time.Time
	if c.Timeout > 0 {
		t := time.NewTimer(c.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-timeout:
		res.TimedOut = true
		waitErr = terminate(pid, grace, exited)
	case <-ctx.Done():
		res.Canceled = true
		waitErr = terminate(pid, grace, exited)
	}
	if reapLater {
		if res.TimedOut || res.Canceled {
			// The leader exited but is not reaped yet, so its pid is still
			// the group's: finish off what ignored SIGTERM.
			signalGroup(pid, syscall.SIGKILL)
		}
		waitErr = cmd.Wait()
	}
	res.Duration = time.Since(start)

	if ps := cmd.ProcessState; ps != nil {
		res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal().String()
		}
	}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.Is(waitErr, exec.ErrWaitDelay):
		res.PipesHeld = true
	case errors.As(waitErr, &exitErr):
	default:
		res.Err = fmt.Errorf("wait for %s: %w", c.Argv[0], waitErr)
	}
	return res
}

// pipeBuf is what a pipe holds without a reader on every Unix (PIPE_BUF).
const pipeBuf = 4096

// stdinFor returns the command's stdin: nothing (the null device) when
// empty; for bytes that fit, a pipe already holding them (no copying
// goroutine, no extra wake-up); else a reader that os/exec copies into a
// pipe.
func stdinFor(b []byte) (io.Reader, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) > pipeBuf {
		return bytes.NewReader(b), nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, err = pw.Write(b)
	if cerr := pw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		pr.Close()
		return nil, err
	}
	return pr, nil
}

// terminate sends SIGTERM to the process group of pid, and SIGKILL after
// grace if the leader has not exited by then; it returns once the leader
// exited, with what waitExited said.
func terminate(pid int, grace time.Duration, exited <-chan error) error {
	signalGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-exited:
		return err
	case <-t.C:
	}
	signalGroup(pid, syscall.SIGKILL)
	return <-exited
}

// signalGroup signals the process group whose leader is pid. A group that
// is gone already is not an error.
func signalGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}

// Log attribute keys of LogArgs.
const (
	LogKeyExit    = "exit"
	LogKeySignal  = "signal"
	LogKeyStdout  = "stdout"
	LogKeyStderr  = "stderr"
	LogKeyDropped = "output_dropped"
)

// LogArgs returns slog key-value pairs describing how r ended, for a log
// line of the caller's: the exit status (when the command started), the
// signal, the captured stdout and stderr, and how many bytes of output were
// dropped past the limit; each only when there is one.
func (r *Result) LogArgs() []any {
	var args []any
	if r.Started {
		args = append(args, LogKeyExit, r.ExitCode)
	}
	if r.Signal != "" {
		args = append(args, LogKeySignal, r.Signal)
	}
	if len(r.Stdout.Data) > 0 {
		args = append(args, LogKeyStdout, string(r.Stdout.Data))
	}
	if len(r.Stderr.Data) > 0 {
		args = append(args, LogKeyStderr, string(r.Stderr.Data))
	}
	if d := r.Stdout.Dropped + r.Stderr.Dropped; d > 0 {
		args = append(args, LogKeyDropped, d)
	}
	return args
}
