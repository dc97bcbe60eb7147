package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"agent/agent"
	"agent/config"
)

type demoFlags struct {
	dir      string
	nodes    int
	hbPort   int
	apiPort  int
	duration time.Duration
	quiet    bool
}

func newDemoCmd(g *globals) *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a live local cluster on loopback and tail its events",
		Long: `Start a cluster of agents in this process, node N on 127.0.0.N, each with
its own --root under DIR, a TCP listener (web page, API, metrics) without
authentication, and a sample failover service, web, whose commands only
touch a file. The events of n1 are tailed here; Ctrl-C stops every agent
cleanly (they leave the cluster gracefully).

While it runs, talk to any node from another terminal; the demo prints the
commands to try, for instance:
  agent --server http://127.0.0.2:1215 status
  agent --root DIR/n1 node freeze --node n2`,
		Example: `  go run ./cmd/agent demo
  agent demo --nodes 5 --dir /tmp/demo
  agent demo --duration 10s --quiet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			ctx, cancel := withDuration(ctx, f.duration)
			defer cancel()
			return runDemo(ctx, g, f, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&f.dir, "dir", "", "keep the agents' files under `DIR` (default: a temporary directory, removed at exit)")
	cmd.Flags().IntVar(&f.nodes, "nodes", 3, "start `N` agents (1 to 9)")
	cmd.Flags().IntVar(&f.hbPort, "hb-port", 17946, "heartbeat `PORT` of every node (each on its own 127.0.0.N)")
	cmd.Flags().IntVar(&f.apiPort, "api-port", 1215, "TCP listener `PORT` of every node (each on its own 127.0.0.N)")
	cmd.Flags().DurationVar(&f.duration, "duration", 0, "stop after `DURATION`, like 30s (default: until Ctrl-C)")
	cmd.Flags().BoolVar(&f.quiet, "quiet", false, "do not tail the events")
	return cmd
}

func runDemo(ctx context.Context, g *globals, f *demoFlags, w io.Writer) error {
	if f.nodes < 1 || f.nodes > 9 {
		return failf("--nodes %d: want 1 to 9", f.nodes)
	}
	dir := f.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "agent-demo-")
		if err != nil {
			return failf("create demo directory: %v", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return failf("%v", err)
	}
	logPath := filepath.Join(dir, "demo.log")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return failf("create %s: %v", dir, err)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return failf("open demo log: %v", err)
	}
	defer logFile.Close()
	level := slog.LevelInfo
	if g.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: level}))

	var seeds []string
	for i := 1; i <= f.nodes; i++ {
		seeds = append(seeds, fmt.Sprintf("127.0.0.%d:%d", i, f.hbPort))
	}
	var nodes []string
	for i := 1; i <= f.nodes; i++ {
		nodes = append(nodes, fmt.Sprintf("n%d", i))
	}
	agents := make([]*agent.Agent, 0, f.nodes)
	defer func() {
		for _, a := range agents {
			_ = a.Close()
		}
	}()
	for i := 1; i <= f.nodes; i++ {
		root := filepath.Join(dir, fmt.Sprintf("n%d", i))
		if err := writeDemoConfig(root, i, f, seeds, nodes); err != nil {
			return failf("write demo config: %v", err)
		}
		home, _ := os.UserHomeDir()
		a, err := agent.New(agent.Options{
			Paths:         config.ResolvePaths(root, os.Geteuid(), home),
			Logger:        log.With("demo_node", i),
			StatsInterval: 5 * time.Second,
		})
		if err != nil {
			return failf("start n%d: %v (is another demo running? try --hb-port and --api-port)", i, err)
		}
		agents = append(agents, a)
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(agents))
	runCtx, stopAgents := context.WithCancel(context.Background())
	defer stopAgents()
	for _, a := range agents {
		wg.Add(1)
		go func(a *agent.Agent) {
			defer wg.Done()
			if err := a.Run(runCtx); err != nil {
				errs <- fmt.Errorf("%s: %w", a.Name(), err)
			}
		}(a)
	}

	fmt.Fprintf(w, "demo cluster of %d agents, files under %s, logs in %s\n\n", len(agents), dir, logPath)
	for i, a := range agents {
		fmt.Fprintf(w, "  %s  web http://%s/   heartbeat %s   root %s\n", a.Name(), a.ListenAddr(), seeds[i], a.Paths().Root)
	}
	fmt.Fprint(w, demoHints(progName(), agents[0].ListenAddr(), agents[0].Paths().Root, agents[len(agents)-1].Name()))

	if !f.quiet {
		tail := &globals{root: agents[0].Paths().Root}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ef := &eventsFlags{output: "text", kinds: []string{"event"}}
			if err := runEvents(ctx, tail, ef, w, os.Stderr); err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintln(os.Stderr, "agent: demo tail:", err)
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	fmt.Fprintln(w, "\nstopping the demo cluster...")
	stopAgents()
	wg.Wait()
	if runErr != nil {
		return failf("%v", runErr)
	}
	return nil
}

// demoHints are the commands the demo suggests: each one ends by itself
// and shows something on a quiet cluster. target is the node they freeze.
func demoHints(prog, listen, root, target string) string {
	return fmt.Sprintf(`
Try, in another terminal:
  %[1]s --server http://%[2]s status
  %[1]s --root %[3]s node freeze --node %[4]s
  %[1]s --root %[3]s wait --filter 'monitor.nodes.%[4]s.frozen!=0' --duration 10s
  %[1]s --root %[3]s node thaw --node %[4]s
  %[1]s --root %[3]s events --kind event --since 0 --duration 5s
%[5]s
Ctrl-C stops the demo.

`, prog, listen, root, target, demoExtraHelp(prog, root))
}

// progName is how the user runs this binary, for the commands the demo
// suggests: "go run ./cmd/agent" when go run built it in a temporary
// directory, else the name it was started with.
func progName() string {
	exe := os.Args[0]
	if strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "go run ./cmd/agent"
	}
	return exe
}

// writeDemoConfig writes node i's node.conf (and sample services) under
// root, keeping an existing one so that a --dir demo can be restarted.
func writeDemoConfig(root string, i int, f *demoFlags, seeds, nodes []string) error {
	etc := filepath.Join(root, "etc")
	if err := os.MkdirAll(filepath.Join(etc, "svc"), 0o700); err != nil {
		return err
	}
	conf := filepath.Join(etc, "node.conf")
	if _, err := os.Stat(conf); err == nil {
		return nil
	}
	zone := string(rune('a' + (i-1)%2))
	text := fmt.Sprintf(`[node]
name = n%[1]d
labels = zone=%[2]s demo=yes

[cluster]
name = demo
seeds = %[3]s
nodes = %[4]s

[hb]
addr = 127.0.0.%[1]d
port = %[5]d
profile = local

[listener]
addr = 127.0.0.%[1]d:%[6]d
auth = none
`, i, zone, strings.Join(seeds, " "), strings.Join(nodes, " "), f.hbPort, f.apiPort)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return err
	}
	return writeDemoServices(root)
}
