package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"agent/agent"
	"agent/filter"
)

func newDaemonCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the agent, or show its cluster data",
		Example: `  agent daemon run
  agent daemon run --root /srv/agents/n1
  agent daemon status -o json
  agent daemon status --filter monitor.nodes.NODE.frozen`,
	}
	cmd.AddCommand(newDaemonRunCmd(g), newDaemonStatusCmd(g))
	return cmd
}

func logger(g *globals) *slog.Logger {
	level := slog.LevelInfo
	if g.debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newDaemonRunCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the agent in the foreground (SIGTERM leaves the cluster gracefully, SIGHUP reloads)",
		Long: `Run the agent in the foreground, as systemd or a terminal expects. Without
node.conf it runs a one-node cluster named after the host, heartbeat on
127.0.0.1. A node.conf that does not parse, or that others could change, stops
it with exit code 2 and the reason.

Signals: SIGTERM or SIGINT sets the node status to "shutting down", leaves
the cluster gracefully and exits 0; a second one exits at once. SIGHUP reads
node.conf and the service files again (permissions of the directories above
them and of the programs they name included), applies what changed and logs
that it did. A closed stdout or stderr (SIGPIPE) does not stop it.

Under systemd (Type=notify) it reports READY=1 once it has joined its
cluster, or found itself alone after the rejoin wait, and pings the
watchdog (WatchdogSec) only while its heartbeat and store answer.`,
		Example: `  agent daemon run
  agent daemon run --root /srv/agents/n1 --debug
  kill -HUP "$(pidof agent)"   # reload the config files`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sig := newSignals()
			defer sig.stop()
			log := logger(g)
			a, err := agent.New(agent.Options{Paths: g.paths(), Logger: log, AdaptiveProcs: os.Getenv("GOMAXPROCS") == ""})
			if err != nil {
				return failf("%v", err)
			}
			defer a.Close()
			ctx := sig.serve(a)
			notifier, watchdog := systemdFromEnv(log)
			supCtx, stopSup := context.WithCancel(ctx)
			supDone := make(chan struct{})
			go func() { defer close(supDone); superviseSystemd(supCtx, a, notifier, watchdog, log) }()
			err = a.Run(ctx)
			stopSup()
			<-supDone
			if err != nil {
				return failf("%v", err)
			}
			return nil
		},
	}
}

// signals is the daemon's signal handling; one goroutine owns the channel.
type signals struct {
	ch     chan os.Signal
	pipe   chan os.Signal // SIGPIPE, never read: caught and dropped
	done   chan struct{}
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// newSignals starts catching signals at once: SIGPIPE before anything is
// written to a stderr that may be a closed pipe, so that a write fails
// with EPIPE instead of killing the daemon (caught, not ignored: an
// ignored SIGPIPE would be inherited by hooks and service commands).
func newSignals() *signals {
	s := &signals{ch: make(chan os.Signal, 4), pipe: make(chan os.Signal, 1), done: make(chan struct{})}
	// A channel of its own: a burst of SIGPIPEs must not fill the one
	// that brings SIGTERM.
	signal.Notify(s.pipe, syscall.SIGPIPE)
	signal.Notify(s.ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	return s
}

// serve handles the signals for a until stop, and returns the context that
// ends at the first SIGINT or SIGTERM; a second one exits at once.
// SIGHUPs are coalesced: one reload at a time, one more queued at most.
func (s *signals) serve(a *agent.Agent) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	reload := make(chan struct{}, 1)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-reload:
				_ = a.Reload(ctx) // logs what it did, or why not
			case <-s.done:
				return
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		stopping := false
		for {
			select {
			case sig := <-s.ch:
				switch sig {
				case syscall.SIGHUP:
					select {
					case reload <- struct{}{}:
					default:
					}
				default:
					if stopping {
						fmt.Fprintln(os.Stderr, "agent: second signal, exiting now")
						os.Exit(exitUsage)
					}
					stopping = true
					cancel()
				}
			case <-s.done:
				return
			}
		}
	}()
	return ctx
}

// stop stops the handling; signals then act as they would by default,
// except SIGPIPE, which stays caught until the process exits.
func (s *signals) stop() {
	signal.Reset(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	if s.cancel != nil {
		s.cancel() // ends a reload in flight
	}
	close(s.done)
	s.wg.Wait()
}

// signalContext ends at the first SIGINT or SIGTERM; a second one exits
// the process at once (the demo's handling; the daemon's is signals).
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			cancel()
		case <-done:
			return
		}
		select {
		case <-ch:
			fmt.Fprintln(os.Stderr, "agent: second signal, exiting now")
			os.Exit(exitUsage)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}

func newDaemonStatusCmd(g *globals) *cobra.Command {
	var out, path string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the cluster data, or the value at one path",
		Example: `  agent daemon status -o json
  agent daemon status --filter monitor.nodes.n2.frozen
  agent daemon status --filter 'cluster.nodes.n3.state'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out != "json" && out != "text" {
				return failf("-o %q: want json or text", out)
			}
			body, err := g.fetchStatus(cmd.Context())
			if err != nil {
				return err
			}
			if path != "" {
				raw, ok := filter.Get(body, path)
				if !ok {
					return failf("no value at %s", path)
				}
				fmt.Fprintln(cmd.OutOrStdout(), raw)
				return nil
			}
			if out == "text" {
				return printStatusTable(cmd.OutOrStdout(), body)
			}
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				return failf("cluster data is not JSON: %v", err)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "json", "output `FORMAT`: json or text")
	cmd.Flags().StringVar(&path, "filter", "", "print only the value at `PATH` (a path in the cluster data, like monitor.nodes.n1.frozen), raw")
	return cmd
}
