package proc

import (
	"os/exec"
	"syscall"
	"unsafe"
)

// reapLater: waitExited only observes the exit, the caller reaps with
// cmd.Wait, so the process group can be signalled after the leader exited
// without risking a reused pid.
const reapLater = true

// waitid(2) arguments.
const (
	pPID    = 1         // P_PID
	wEXITED = 0x4       // WEXITED
	wNOWAIT = 0x1000000 // WNOWAIT
)

// waitExited blocks until cmd's process has exited, and leaves it a zombie
// for cmd.Wait to reap.
func waitExited(cmd *exec.Cmd) error {
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(cmd.Process.Pid),
			uintptr(unsafe.Pointer(&info[0])), wEXITED|wNOWAIT, 0, 0)
		switch e {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		default:
			return e
		}
	}
}
