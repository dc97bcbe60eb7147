package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is the file in var/ that `daemon run` holds an exclusive flock
// on for as long as it runs. It holds the pid of the holder, for the error
// a second agent gives.
const lockFile = "agent.lock"

// ErrAlreadyRunning is returned by New when another agent holds the lock
// on the same var directory.
var ErrAlreadyRunning = errors.New("agent already running")

// varLock is the held lock on the var directory.
type varLock struct {
	f *os.File
}

// lockVar creates dir (0700) if needed and takes the exclusive lock in it
// without waiting. It is the first thing an agent does in var/: a second
// agent on the same root stops here, having touched nothing but the lock
// file. root names the root in the error.
func lockVar(dir, root string) (*varLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create var directory: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	// No O_TRUNC: the running agent's pid stays readable until the lock
	// is ours.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := flock(f); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w on %s, pid %s", ErrAlreadyRunning, root, holderPid(path))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid is for people and for the error above; a crash leaves a
	// stale pid in the file, but the kernel drops the lock itself.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &varLock{f: f}, nil
}

// holderPid reads the pid the lock holder wrote, or says it is unknown
// (the holder may not have written it yet).
func holderPid(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	pid := strings.TrimSpace(string(b))
	if _, err := strconv.Atoi(pid); err != nil {
		return "unknown"
	}
	return pid
}

// release drops the lock (closing the file is enough) and leaves the file:
// removing it would let a third agent lock a new file while a second one
// still holds the old one.
func (l *varLock) release() {
	if l != nil && l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}
