//go:build !linux

package proc

import "os/exec"

// reapLater: elsewhere than Linux the exit is observed by reaping, so a
// group member that outlives the leader after a timeout may survive.
const reapLater = false

// waitExited waits for cmd and reaps it.
func waitExited(cmd *exec.Cmd) error { return cmd.Wait() }
