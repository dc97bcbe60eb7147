package agent

import (
	"net"
	"syscall"

	"golang.org/x/net/netutil"
)

// fdReserve is how many open files the connection cap leaves for the
// rest of the agent (journal, heartbeat, local socket, commands), at most
// a quarter of the limit.
const fdReserve = 1024

// raiseFileLimit raises the open-file soft limit to the hard limit and
// returns the soft limit in force. (Go's runtime does the same at start;
// this makes it explicit and reports the figure.)
func raiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return rl.Cur, err
		}
		rl = raised
	}
	return rl.Cur, nil
}

// connCap returns the connection cap of the TCP listener: maxConns, or
// less when the open-file limit would be reached first (then the log says
// so). A listener that ran out of files would fail its accepts, and so
// would the unix socket and the heartbeat's TCP.
func (a *Agent) connCap(maxConns int) int {
	limit, err := raiseFileLimit()
	if err != nil {
		a.log.Warn("cannot raise the open-file limit", "err", err, "limit", limit)
	}
	if limit == 0 {
		return maxConns
	}
	reserve := min(uint64(fdReserve), limit/4)
	room := int(min(limit-reserve, 1<<30))
	if maxConns > room {
		a.log.Warn("[listener] max_conns exceeds what the open-file limit leaves: capped",
			"max_conns", maxConns, "open_file_limit", limit, "cap", room)
		return room
	}
	return maxConns
}

// limitListener serves at most n connections of ln at once; the next ones
// wait in the kernel's backlog, holding no file of the agent.
func limitListener(ln net.Listener, n int) net.Listener { return netutil.LimitListener(ln, n) }
