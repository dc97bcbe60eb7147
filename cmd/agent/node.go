package main

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Node orders: freeze, thaw, forget",
		Long: `Freeze or thaw a node. A frozen node keeps running its service instances,
but the orchestrator starts, stops or fails over nothing there until it is
thawed; the freeze survives restarts. An order for another node is forwarded
to it, and the command returns once that node's data shows it.

Forget a dead node for good: every agent drops its data, stops reconnecting
to it and no longer counts it in the quorum's base.`,
		Example: `  agent node freeze
  agent node thaw
  agent node freeze --node NODE
  agent node thaw --node NODE --server http://HOST:1215 --token TOKEN
  agent node forget NODE`,
	}
	for _, action := range []string{"freeze", "thaw"} {
		cmd.AddCommand(newNodeOrderCmd(g, action))
	}
	cmd.AddCommand(newNodeForgetCmd(g))
	return cmd
}

func newNodeForgetCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "forget NODE",
		Short: "Remove a dead node from the cluster for good",
		Long: `Remove a dead node from the cluster: every agent drops its data, stops
reconnecting to it and no longer counts it in the quorum's base (the
high-water mark of the cluster's size, used when [cluster] nodes is not
set). Use it for a node that is gone for good: until then a partition's
minority can never count itself a majority.

NODE must be dead (exit 2 otherwise). While this node has no quorum the
order is refused, since lowering the base there could give a minority
quorum; --force overrides that, when you know the other side is gone.`,
		Example: "  agent node forget NODE\n  agent node forget NODE --force",
		Args:    exactArgs("NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			path := "/v1/nodes/" + url.PathEscape(args[0]) + "/forget"
			if force {
				path += "?force=1"
			}
			if _, err := c.do(cmd.Context(), "POST", path, nil); err != nil {
				return asExit(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s forgotten\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "forget even though this node has no quorum")
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
