// Command agent is the cluster node agent and its command line client.
//
// Run `agent --help` for the commands; docs/commands.md describes them.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes of SPEC section 5.
const (
	exitOK      = 0
	exitTimeout = 1
	exitUsage   = 2
)

// exitError ends the command with code after printing msg (if any) to
// stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// failf is a usage, parse or connection error: exit 2.
func failf(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// globals are the flags every client command shares.
type globals struct {
	root   string
	server string
	token  string
	debug  bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "agent:", ee.msg)
		}
		return ee.code
	}
	// cobra's own errors: unknown command or flag, bad arguments.
	fmt.Fprintln(stderr, "agent:", err)
	return exitUsage
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "agent",
		Short: "Cluster-aware node agent: replicated cluster data, orchestration, hooks, event streams",
		Long: `agent runs on every node of a cluster (agent daemon run) and answers the
commands below by talking to the local agent's unix socket, or to the agent
named by --server.`,
		Example: `  go run ./cmd/agent demo                 # a live 3-node cluster on loopback
  agent daemon run --root /srv/n1          # run an agent in the foreground
  agent status                             # nodes and services at a glance
  agent events -o json --kind event        # tail the event stream
  agent wait --filter "monitor.nodes.n2.frozen!=0" --duration 30s
  agent node freeze --node n2`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.root, "root", os.Getenv("AGENT_ROOT"), "put every file of the agent under `DIR` (env AGENT_ROOT)")
	root.PersistentFlags().StringVar(&g.server, "server", os.Getenv("AGENT_SERVER"), "agent to talk to, as a `URL`: unix:///path, http://host:port, https://host:port (env AGENT_SERVER; default: the local socket)")
	root.PersistentFlags().StringVar(&g.token, "token", os.Getenv("AGENT_TOKEN"), "bearer `TOKEN` for the TCP listener of --server (env AGENT_TOKEN)")
	root.PersistentFlags().BoolVar(&g.debug, "debug", false, "log at debug level")
	// The values above come from the environment; the help must not show
	// them as defaults (a token would be printed, and generated man pages
	// would carry the builder's settings).
	for _, name := range []string{"root", "server", "token"} {
		root.PersistentFlags().Lookup(name).DefValue = ""
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return failf("%v (see %s --help)", err, c.CommandPath())
	})
	root.AddCommand(newDaemonCmd(g), newStatusCmd(g), newEventsCmd(g), newWaitCmd(g),
		newNodeCmd(g), newDemoCmd(g), newVersionCmd(), newDocsCmd())
	addExtraCommands(root, g)
	root.Version = readVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	finishTree(root)
	return root
}
