package main

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Node orders: freeze, thaw",
		Long: `Freeze or thaw a node. A frozen node keeps running its service instances,
but the orchestrator starts, stops or fails over nothing there until it is
thawed; the freeze survives restarts. An order for another node is forwarded
to it, and the command returns once that node's data shows it.`,
		Example: `  agent node freeze
  agent node thaw
  agent node freeze --node NODE
  agent node thaw --node NODE --server http://HOST:1215 --token TOKEN`,
	}
	for _, action := range []string{"freeze", "thaw"} {
		cmd.AddCommand(newNodeOrderCmd(g, action))
	}
	return cmd
}

func newNodeOrderCmd(g *globals, action string) *cobra.Command {
	var node string
	short := map[string]string{
		"freeze": "Freeze this node (or --node N): the orchestrator leaves it alone; survives restarts",
		"thaw":   "Thaw this node (or --node N)",
	}[action]
	cmd := &cobra.Command{
		Use:     action,
		Short:   short,
		Example: fmt.Sprintf("  agent node %[1]s\n  agent node %[1]s --node NODE\n  agent --root /srv/agents/n1 node %[1]s --node n2", action),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			target := node
			if target == "" {
				var self struct {
					Node string `json:"node"`
				}
				if _, err := c.do(cmd.Context(), "GET", "/v1/whoami", &self); err != nil {
					return asExit(err)
				}
				target = self.Node
			}
			var out struct {
				Node   string `json:"node"`
				Frozen int64  `json:"frozen"`
			}
			if _, err := c.do(cmd.Context(), "POST", "/v1/nodes/"+url.PathEscape(target)+"/"+action, &out); err != nil {
				return asExit(err)
			}
			state := "thawed"
			if out.Frozen != 0 {
				state = "frozen"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", out.Node, state)
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "the `NODE` to order (default: the agent's own node)")
	return cmd
}
