package hooks

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"

	"agent/config"
	"agent/events"
)

// pipeWait bounds how long a run waits, once its command exited, for its
// stdout and stderr to close: a background process it started may hold
// them open. The run then ends and the pipes are closed.
const pipeWait = time.Second

// Environment variables a command gets besides the agent's own.
const (
	EnvEventID  = "AGENT_EVENT_ID"
	EnvNodename = "AGENT_NODENAME"
	EnvSeq      = "AGENT_SEQ"
	EnvHook     = "AGENT_HOOK"
)

// runResult is the outcome of one run.
type runResult struct {
	started     bool
	timedOut    bool // killed at the hook's timeout
	interrupted bool // killed by Close
	exitCode    int  // -1: killed by a signal, or not started
	signal      string
	err         error // the command did not start, or could not be waited for
	pipesOpen   bool  // a background process kept stdout or stderr open
	duration    time.Duration
	stdout      capBuffer
	stderr      capBuffer
}

func (r *runResult) failed() bool {
	return !r.started || r.timedOut || r.exitCode != 0 || r.err != nil
}

// capBuffer keeps the first limit bytes written to it and counts the rest,
// so a chatty command never blocks on a full pipe nor fills the memory.
type capBuffer struct {
	limit   int
	buf     []byte
	dropped int64
}

func (b *capBuffer) Write(p []byte) (int, error) {
	n := min(len(p), b.limit-len(b.buf))
	b.buf = append(b.buf, p[:n]...)
	b.dropped += int64(len(p) - n)
	return len(p), nil
}

// runCommand runs the hook's command for rec, without a shell, in its own
// process group, and waits for it: until it exits, its timeout passes, or
// the runner closes. In the last two cases the group gets SIGTERM, then
// SIGKILL after KillGrace.
func (r *Runner) runCommand(s *spec, rec *events.Record, id string) *runResult {
	res := &runResult{exitCode: -1}
	res.stdout.limit, res.stderr.limit = r.cfg.OutputLimit, r.cfg.OutputLimit
	raw := rec.JSON()
	line := make([]byte, len(raw)+1)
	copy(line, raw)
	line[len(raw)] = '\n'

	// Checked again at each run: the config watcher checked it when it read
	// node.conf, but the program may have been replaced since.
	if err := config.CheckProgram(s.command[0]); err != nil {
		res.err = err
		return res
	}
	cmd := exec.Command(s.command[0], s.command[1:]...)
	stdin, err := stdinFor(line)
	if err != nil {
		res.err = err
		return res
	}
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = &res.stdout, &res.stderr
	cmd.Env = append(slices.Clip(r.env),
		EnvEventID+"="+id,
		EnvNodename+"="+rec.Nodename,
		EnvSeq+"="+strconv.FormatUint(rec.Seq, 10),
		EnvHook+"="+s.name,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = pipeWait

	start := r.cfg.Now()
	err = cmd.Start()
	if f, ok := stdin.(*os.File); ok {
		f.Close() // the child has its copy
	}
	if err != nil {
		res.err = err
		return res
	}
	res.started = true
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- waitExited(cmd) }()

	timer := time.NewTimer(s.timeout)
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-timer.C:
		res.timedOut = true
		waitErr = r.terminate(pid, exited)
	case <-r.kill:
		res.interrupted = true
		waitErr = r.terminate(pid, exited)
	}
	timer.Stop()
	if reapLater {
		if res.timedOut || res.interrupted {
			// The leader exited but is not reaped yet, so its pid is still
			// the group's: finish off what ignored SIGTERM.
			signalGroup(pid, syscall.SIGKILL)
		}
		waitErr = cmd.Wait()
	}
	res.duration = r.cfg.Now().Sub(start)

	if ps := cmd.ProcessState; ps != nil {
		res.exitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.signal = ws.Signal().String()
		}
	}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.Is(waitErr, exec.ErrWaitDelay):
		res.pipesOpen = true
	case errors.As(waitErr, &exitErr):
	default:
		res.err = waitErr
	}
	return res
}

// pipeBuf is what a pipe holds without a reader on every Unix (PIPE_BUF).
const pipeBuf = 4096

// stdinFor returns the command's stdin: for a line that fits, a pipe
// already holding it (no copying goroutine, no extra wake-up); else a
// reader that os/exec copies into a pipe.
func stdinFor(line []byte) (io.Reader, error) {
	if len(line) > pipeBuf {
		return bytes.NewReader(line), nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, err = pw.Write(line)
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
// KillGrace if the leader has not exited by then; it returns once the
// leader exited, with what waitExited said.
func (r *Runner) terminate(pid int, exited <-chan error) error {
	signalGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(r.cfg.KillGrace)
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

// logRun logs the outcome of a run with its output.
func (w *worker) logRun(rec *events.Record, id string, res *runResult) {
	args := []any{keySeq, rec.Seq, keyEventID, id, keyDuration, res.duration}
	if res.started {
		args = append(args, keyExit, res.exitCode)
	}
	if res.signal != "" {
		args = append(args, keySignal, res.signal)
	}
	if len(res.stdout.buf) > 0 {
		args = append(args, keyStdout, string(res.stdout.buf))
	}
	if len(res.stderr.buf) > 0 {
		args = append(args, keyStderr, string(res.stderr.buf))
	}
	if d := res.stdout.dropped + res.stderr.dropped; d > 0 {
		args = append(args, keyDropped, d)
	}
	switch {
	case !res.started:
		args = append(args, keyCommand, w.spec.command[0], keyErr, res.err)
		w.log.Error("hook command did not start", args...)
	case res.timedOut:
		args = append(args, "timeout", w.spec.timeout)
		w.log.Warn("hook run killed at its timeout", args...)
	case res.err != nil:
		args = append(args, keyErr, res.err)
		w.log.Error("hook run could not be waited for", args...)
	case res.exitCode != 0:
		w.log.Warn("hook run failed", args...)
	default:
		w.log.Info("hook run", args...)
	}
	if res.pipesOpen {
		w.log.Warn("hook command left a background process holding its stdout or stderr; closed after "+pipeWait.String(),
			keySeq, rec.Seq)
	}
}
