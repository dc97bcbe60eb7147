package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"agent/internal/sdnotify"
)

// supervised is what systemd is told about: an *agent.Agent.
type supervised interface {
	Name() string
	Ready() <-chan struct{}
	Alive(ctx context.Context) error
}

// systemdFromEnv reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, and
// removes them from the environment so that no command the agent runs
// inherits them. Outside systemd it returns a notifier that sends nothing.
func systemdFromEnv(log *slog.Logger) (*sdnotify.Notifier, time.Duration) {
	n, err := sdnotify.New(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		log.Warn("systemd notification disabled", "err", err)
		n = &sdnotify.Notifier{}
	}
	wd, err := sdnotify.WatchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	if err != nil {
		log.Warn("systemd watchdog disabled", "err", err)
		wd = 0
	}
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		_ = os.Unsetenv(k)
	}
	return n, wd
}

// superviseSystemd keeps systemd informed until ctx ends: READY=1 once the
// agent is ready (joined, or alone after the rejoin wait), WATCHDOG=1 every
// half watchdog interval but only while the agent's core loops answer
// (a.Alive), and STOPPING=1 at the end. A watchdog that stops being pinged
// makes systemd kill and restart the agent: an agent crash, which leaves
// the services it started running (KillMode=process).
func superviseSystemd(ctx context.Context, a supervised, n *sdnotify.Notifier, watchdog time.Duration, log *slog.Logger) {
	if !n.Enabled() {
		return
	}
	send := func(state string) {
		if err := n.Send(state); err != nil {
			log.Warn("systemd notification failed", "state", state, "err", err)
		}
	}
	send("STATUS=rejoining the cluster")
	var tick <-chan time.Time
	if watchdog > 0 {
		t := time.NewTicker(watchdog / 2)
		defer t.Stop()
		tick = t.C
	}
	ready := a.Ready()
	failing := false
	for {
		select {
		case <-ctx.Done():
			send(sdnotify.Stopping + "\nSTATUS=leaving the cluster")
			return
		case <-ready:
			ready = nil
			send(sdnotify.Ready + "\nSTATUS=node " + a.Name() + " running")
			log.Info("told systemd the agent is ready")
		case <-tick:
			// The probe must answer well within the interval left before
			// systemd's deadline.
			pctx, cancel := context.WithTimeout(ctx, watchdog/4)
			err := a.Alive(pctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					continue
				}
				if !failing {
					log.Error("core loop does not answer: watchdog not pinged, systemd will restart the agent", "err", err)
				}
				failing = true
				continue
			}
			if failing {
				log.Warn("core loops answer again, watchdog pinged")
				failing = false
			}
			send(sdnotify.Watchdog)
		}
	}
}
