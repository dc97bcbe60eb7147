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
		Example: fmt.Sprintf("  agent node %s\n  agent node %s --node n2", action, action),
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
	cmd.Flags().StringVar(&node, "node", "", "the node to order (default: the agent's own node)")
	return cmd
}
