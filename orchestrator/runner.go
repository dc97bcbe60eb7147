package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"agent/config"
	"agent/proc"
)

// Command actions, as given to a CommandRunner.
const (
	ActionCheck = "check"
	ActionStart = "start"
	ActionStop  = "stop"
)

// Command is one check, start or stop command of a service.
type Command struct {
	// Service is the service name.
	Service string
	// Action is check, start or stop.
	Action string
	// Argv is the command and its arguments, run without a shell.
	Argv []string
	// Env are the service's own variables (its env key), then the agent's
	// AGENT_NODENAME, AGENT_SVCNAME and AGENT_ACTION (commandEnv),
	// KEY=VALUE, added to the clean environment every command gets.
	Env []string
	// Timeout bounds the run; at its end the command is stopped.
	Timeout time.Duration
}

// commandEnv is what a command of service svc gets on top of the clean
// environment: the service's own variables, then this node's name, the
// service's and the action's (names a service file cannot set: AGENT_ is
// the agent's prefix), so that one service file can serve every node.
func commandEnv(own []string, node, svc, action string) []string {
	env := make([]string, 0, len(own)+3)
	env = append(env, own...)
	return append(env, "AGENT_NODENAME="+node, "AGENT_SVCNAME="+svc, "AGENT_ACTION="+action)
}

// CommandRunner runs the commands of services. Run returns the exit code
// of the command, or an error when it could not be run, was killed at its
// timeout or ctx ended. It must return promptly once ctx ends. It is called
// from several goroutines at once.
type CommandRunner interface {
	Run(ctx context.Context, c Command) (exitCode int, err error)
}

// ErrTimeout is returned by ExecRunner when a command ran past its timeout.
var ErrTimeout = errors.New("command timed out")

// maxLoggedOutput bounds how much of a command's stdout and of its stderr
// is logged.
const maxLoggedOutput = 4096

// ExecRunner runs commands as processes with package proc: no shell, its
// own process group (sent SIGTERM, then SIGKILL after KillGrace, at the
// timeout or when the context ends), a clean environment plus the
// service's Env, stdout and stderr logged at debug level, or at warn level
// when the command fails.
type ExecRunner struct {
	// Logger receives the output; default slog.Default().
	Logger *slog.Logger
	// KillGrace is the time between SIGTERM and SIGKILL; 0 means
	// proc.DefaultKillGrace.
	KillGrace time.Duration
}

var _ CommandRunner = (*ExecRunner)(nil)

// Run runs c.Argv and waits for it.
func (r *ExecRunner) Run(ctx context.Context, c Command) (int, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return -1, fmt.Errorf("%s %s: %w", c.Service, c.Action, proc.ErrNoCommand)
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	// The program passes the permission rules at each run: the config
	// watcher checked it when it read the service file, but it may have
	// been loosened or replaced since.
	if err := config.CheckProgram(c.Argv[0]); err != nil {
		log.Warn("command refused", logKeyService, c.Service, logKeyAction, c.Action, logKeyErr, err)
		return -1, fmt.Errorf("%s %s: %w", c.Service, c.Action, err)
	}
	res := proc.Run(ctx, proc.Command{
		Argv:        c.Argv,
		Env:         c.Env,
		Timeout:     c.Timeout,
		KillGrace:   r.KillGrace,
		OutputLimit: maxLoggedOutput,
	})
	attrs := []any{logKeyService, c.Service, logKeyAction, c.Action, logKeyExit, res.ExitCode,
		logKeyOutput, string(res.Stdout.Data), logKeyStderr, string(res.Stderr.Data)}
	if res.PipesHeld {
		log.Warn("command left a background process holding its stdout or stderr; closed after "+proc.PipeWait.String(),
			logKeyService, c.Service, logKeyAction, c.Action)
	}
	switch {
	case res.TimedOut:
		log.Warn("command timed out", append(attrs, logKeyTimeout, c.Timeout)...)
		return -1, fmt.Errorf("%s %s: %w after %s", c.Service, c.Action, ErrTimeout, c.Timeout)
	case res.Canceled:
		return -1, fmt.Errorf("%s %s: %w", c.Service, c.Action, ctx.Err())
	case !res.Started:
		log.Warn("command could not run", append(attrs, logKeyErr, res.Err)...)
		return -1, fmt.Errorf("%s %s: %w", c.Service, c.Action, res.Err)
	case res.Signal != "":
		log.Warn("command killed by a signal", append(attrs, logKeySignal, res.Signal)...)
		return -1, fmt.Errorf("%s %s: killed by signal %s", c.Service, c.Action, res.Signal)
	case res.Err != nil:
		log.Warn("command could not be waited for", append(attrs, logKeyErr, res.Err)...)
		return -1, fmt.Errorf("%s %s: %w", c.Service, c.Action, res.Err)
	}
	if res.ExitCode != 0 && c.Action != ActionCheck {
		log.Warn("command failed", attrs...)
	} else {
		log.Debug("command done", attrs...)
	}
	return res.ExitCode, nil
}
