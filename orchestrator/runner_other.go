//go:build !unix

package orchestrator

import "os/exec"

// setProcessGroup leaves the default: only the process itself is killed.
func setProcessGroup(cmd *exec.Cmd) {}
