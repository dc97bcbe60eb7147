package hooks

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrInsecureConfig is wrapped by CheckPerms's error when the file could be
// changed by someone else than its owner or root.
var ErrInsecureConfig = errors.New("insecure config file")

// CheckPerms refuses, as sshd does, a node.conf that lets others choose the
// commands the agent runs: a file writable by its group or by others, or
// owned by another user than root or the agent's own. The agent runs no
// hook when it fails. The error names the file and its mode.
func CheckPerms(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("check permissions of %s: %w", path, err)
	}
	mode := fi.Mode()
	if mode.Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o): hooks are disabled until `chmod go-w %s`: %w",
			path, mode.Perm(), path, ErrInsecureConfig)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid := os.Geteuid()
		if st.Uid != 0 && int(st.Uid) != uid {
			return fmt.Errorf("%s is owned by uid %d, neither root nor the agent's uid %d (mode %04o): hooks are disabled: %w",
				path, st.Uid, uid, mode.Perm(), ErrInsecureConfig)
		}
	}
	return nil
}
