package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	"agent/config"
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
	// Timeout bounds the run; at its end the command is killed.
	Timeout time.Duration
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

// maxLoggedOutput bounds how much of a command's output is logged.
const maxLoggedOutput = 4096

// ExecRunner runs commands as processes: no shell, its own process group
// (killed whole at the timeout or when the context ends), stdout and stderr
// logged at debug level, or at warn level when the command fails.
type ExecRunner struct {
	// Logger receives the output; default slog.Default().
	Logger *slog.Logger
}

var _ CommandRunner = (*ExecRunner)(nil)

// Run runs c.Argv and waits for it.
func (r *ExecRunner) Run(ctx context.Context, c Command) (int, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return -1, fmt.Errorf("%s %s: no command", c.Service, c.Action)
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	// Checked again at each run: the config watcher checked it when it read
	// the service file, but the program may have been replaced since.
	if err := config.CheckProgram(c.Argv[0]); err != nil {
		log.Warn("command refused", logKeyService, c.Service, logKeyAction, c.Action, logKeyErr, err)
		return -1, fmt.Errorf("%s %s: %w", c.Service, c.Action, err)
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	setProcessGroup(cmd)
	// Wait no longer than this for the pipes once the group is killed: a
	// grandchild that escaped the group must not hold the orchestrator.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	attrs := []any{logKeyService, c.Service, logKeyAction, c.Action, logKeyExit, code, logKeyOutput, out.String()}
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		log.Warn("command timed out", append(attrs, logKeyTimeout, c.Timeout)...)
		return -1, fmt.Errorf("%s %s: %w after %s", c.Service, c.Action, ErrTimeout, c.Timeout)
	case ctx.Err() != nil:
		return -1, fmt.Errorf("%s %s: %w", c.Service, c.Action, ctx.Err())
	case code >= 0:
		if code != 0 && c.Action != ActionCheck {
			log.Warn("command failed", attrs...)
		} else {
			log.Debug("command done", attrs...)
		}
		return code, nil
	default:
		log.Warn("command could not run", append(attrs, logKeyErr, err)...)
		return -1, fmt.Errorf("%s %s: %w", c.Service, c.Action, err)
	}
}

// limitedBuffer keeps the first maxLoggedOutput bytes written to it.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxLoggedOutput - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return l.b.String() }
