// Package sdnotify speaks systemd's notify protocol (sd_notify(3)): a
// service started with Type=notify sends "READY=1" on the datagram socket
// named by NOTIFY_SOCKET when it is up, "WATCHDOG=1" within WatchdogSec
// while it is healthy, "STOPPING=1" when it stops, and "STATUS=..." lines
// that systemctl status shows. Outside systemd (no NOTIFY_SOCKET) every
// call is a no-op, so the daemon needs no special case.
package sdnotify

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Notify messages.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notifier sends notifications to one socket. The zero value, and a nil
// *Notifier, send nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns the notifier for the socket named by notifySocket (the
// NOTIFY_SOCKET variable): a path, or an abstract socket written with a
// leading "@". An empty name gives a notifier that sends nothing.
func New(notifySocket string) (*Notifier, error) {
	if notifySocket == "" {
		return &Notifier{}, nil
	}
	if notifySocket[0] != '/' && notifySocket[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: want an absolute path or @abstract name", notifySocket)
	}
	name := notifySocket
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Send sends one notification (several lines are allowed: "READY=1\nSTATUS=up").
func (n *Notifier) Send(state string) error {
	if !n.Enabled() {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}

// Status sends a STATUS= line, shown by systemctl status.
func (n *Notifier) Status(format string, args ...any) error {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	return n.Send("STATUS=" + msg)
}

// WatchdogInterval reads WATCHDOG_USEC and WATCHDOG_PID (the values of
// those variables) for the process pid: the interval within which systemd
// expects a WATCHDOG=1, or 0 when the watchdog is off or meant for another
// process. Send pings at half of it.
func WatchdogInterval(usec, wpid string, pid int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if wpid != "" {
		p, err := strconv.Atoi(wpid)
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID %q: not a pid", wpid)
		}
		if p != pid {
			return 0, nil
		}
	}
	u, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || u <= 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC %q: not a positive number", usec)
	}
	return time.Duration(u) * time.Microsecond, nil
}
