package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"agent/filter"
)

// addExtraCommands adds the command groups built on the core (services,
// history).
func addExtraCommands(root *cobra.Command, g *globals) {
	root.AddCommand(newSvcCmd(g), newHistoryCmd(g))
	root.AddCommand(newTriggerCmd(g))
}

func newSvcCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "svc",
		Short: "Services: list them, and give orders (start, stop, freeze, thaw)",
		Long: `Services are declared by svc/NAME.conf on the nodes. An order sets the
service's global expect; every agent converges to it (failover: one instance
up on the first eligible node of 'nodes'; flex: flex_target instances).`,
		Example: `  agent svc ls
  agent svc start NAME --wait --duration 2m
  agent svc stop NAME
  agent svc freeze NAME`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Short:   "Show services × nodes",
		Example: "  agent svc ls",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := g.fetchStatus(cmd.Context())
			if err != nil {
				return err
			}
			return printServices(cmd.OutOrStdout(), body)
		},
	})
	for _, action := range []string{"start", "stop", "freeze", "thaw"} {
		cmd.AddCommand(newSvcOrderCmd(g, action))
	}
	return cmd
}

// expectOf is the global expect each order sets.
var expectOf = map[string]string{"start": "started", "stop": "stopped", "freeze": "frozen", "thaw": "thawed"}

func newSvcOrderCmd(g *globals, action string) *cobra.Command {
	var wait bool
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   action + " NAME",
		Short: fmt.Sprintf("Set the global expect of service NAME to %s", expectOf[action]),
		Long: fmt.Sprintf(`Set the global expect of service NAME to %s. The order replicates to every
node and the latest order wins. With --wait, block until the orchestration is
done (monitor.services.NAME.done is true for this order), following the event
stream; with --duration, give up after that long (prints "timeout", exit 1).`, expectOf[action]),
		Example: fmt.Sprintf("  agent svc %s web\n  agent svc %s web --wait --duration 2m", action, action),
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := g.client()
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), "POST", "/v1/services/"+url.PathEscape(name)+"/"+action, nil); err != nil {
				return asExit(err)
			}
			if !wait {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: global expect %s\n", name, expectOf[action])
				return nil
			}
			// The summary's global_expect and done are computed together, so
			// a done of the previous order cannot satisfy this one.
			esc := strings.ReplaceAll(name, ".", `\.`)
			e, err := filter.Parse(fmt.Sprintf("monitor.services.%[1]s.global_expect=%[2]s and monitor.services.%[1]s.done=true", esc, expectOf[action]))
			if err != nil {
				return failf("%v", err)
			}
			ctx, cancel := withDuration(cmd.Context(), duration)
			defer cancel()
			err = waitFor(ctx, c, e)
			if errors.Is(err, errTimeout) {
				fmt.Fprintln(cmd.OutOrStdout(), "timeout")
				return &exitError{code: exitTimeout}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", name, expectOf[action])
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the orchestration is done")
	cmd.Flags().DurationVar(&duration, "duration", 0, "with --wait, give up after `DURATION`, like 2m")
	return cmd
}

// writeDemoServices writes the demo's sample failover service under root
// (DIR/nI of the demo's DIR): its commands keep a state file in the var
// directory of the node that runs them, found by the AGENT_NODENAME the
// agent gives every command, so that the file is the same on every node
// (nodes holding different configs of a service are reported as a
// disagreement).
func writeDemoServices(root string) error {
	state := filepath.Join(filepath.Dir(root), "$AGENT_NODENAME", "var", "web.up")
	text := fmt.Sprintf(`[service]
nodes = *
topology = failover
orchestrate = ha
check = /bin/sh -c "test -f %[1]s"
start = /bin/sh -c "touch %[1]s"
stop = /bin/sh -c "rm -f %[1]s"
check_interval = 2s
timeout = 10s
`, state)
	return os.WriteFile(filepath.Join(root, "etc", "svc", "web.conf"), []byte(text), 0o600)
}

// demoExtraHelp is more help text for the demo banner.
func demoExtraHelp(prog, root string) string {
	return fmt.Sprintf(`  %[1]s --root %[2]s svc stop web --wait --duration 30s
  %[1]s --root %[2]s svc start web --wait --duration 30s
`, prog, root)
}
