package hooks

import (
	"strconv"

	"agent/config"
	"agent/events"
	"agent/proc"
)

// Environment variables a command gets besides the clean environment of
// package proc (PATH, HOME, LANG, TZ).
const (
	EnvEventID  = "AGENT_EVENT_ID"
	EnvNodename = "AGENT_NODENAME"
	EnvSeq      = "AGENT_SEQ"
	EnvHook     = "AGENT_HOOK"
)

// runCommand runs the hook's command for rec with package proc and waits
// for it: until it exits, its timeout passes, or the runner closes (the
// result is then Canceled). Duration is measured with the runner's clock.
func (r *Runner) runCommand(s *spec, rec *events.Record, id string) *proc.Result {
	raw := rec.JSON()
	line := make([]byte, len(raw)+1)
	copy(line, raw)
	line[len(raw)] = '\n'
	// The program passes the permission rules at each run: the config
	// watcher checked it when it read node.conf, but it may have been
	// loosened or replaced since. A refused one does not start.
	if err := config.CheckProgram(s.command[0]); err != nil {
		return &proc.Result{ExitCode: -1, Err: err}
	}
	start := r.cfg.Now()
	res := proc.Run(r.closing, proc.Command{
		Argv: s.command,
		Env: []string{
			EnvEventID + "=" + id,
			EnvNodename + "=" + rec.Nodename,
			EnvSeq + "=" + strconv.FormatUint(rec.Seq, 10),
			EnvHook + "=" + s.name,
		},
		Stdin:       line,
		Timeout:     s.timeout,
		KillGrace:   r.cfg.KillGrace,
		OutputLimit: r.cfg.OutputLimit,
	})
	if res.Started {
		res.Duration = r.cfg.Now().Sub(start)
	}
	return res
}

// logRun logs the outcome of a run with its output.
func (w *worker) logRun(rec *events.Record, id string, res *proc.Result) {
	args := append([]any{keySeq, rec.Seq, keyEventID, id, keyDuration, res.Duration}, res.LogArgs()...)
	switch {
	case !res.Started:
		args = append(args, keyCommand, w.spec.command[0], keyErr, res.Err)
		w.log.Error("hook command did not start", args...)
	case res.TimedOut:
		args = append(args, "timeout", w.spec.timeout)
		w.log.Warn("hook run killed at its timeout", args...)
	case res.Err != nil:
		args = append(args, keyErr, res.Err)
		w.log.Error("hook run could not be waited for", args...)
	case res.ExitCode != 0:
		w.log.Warn("hook run failed", args...)
	default:
		w.log.Info("hook run", args...)
	}
	if res.PipesHeld {
		w.log.Warn("hook command left a background process holding its stdout or stderr; closed after "+proc.PipeWait.String(),
			keySeq, rec.Seq)
	}
}
