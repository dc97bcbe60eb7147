package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// finishTree makes every command group of the tree strict, once every
// command (cobra's completion included) is in place: a group given an
// unknown subcommand or none at all exits 2 with one line, instead of
// printing its help and exiting 0 as if the work were done.
func finishTree(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" && c.Example == "" {
			c.Example = `  agent completion bash > /etc/bash_completion.d/agent
  agent completion zsh > "${fpath[1]}/_agent"
  agent completion fish > ~/.config/fish/completions/agent.fish`
		}
	}
	walk(root, func(c *cobra.Command) {
		if !c.HasSubCommands() || c.Runnable() {
			return
		}
		c.Args = cobra.ArbitraryArgs
		c.RunE = groupRun
		c.SuggestionsMinimumDistance = 2
	})
}

// walk calls fn on c and every command below it.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// groupRun runs a command group itself: "agent" alone shows the help; a
// group alone or with a word that is none of its subcommands is a usage
// error.
func groupRun(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		if !c.HasParent() {
			return c.Help()
		}
		return failf("missing command for %s (%s); see %s --help", c.CommandPath(), strings.Join(subNames(c), ", "), c.CommandPath())
	}
	hint := ""
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return failf("unknown command %q for %s%s; see %s --help", args[0], c.CommandPath(), hint, c.CommandPath())
}

// subNames lists the visible subcommands of c.
func subNames(c *cobra.Command) []string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return names
}

// exactArgs accepts exactly the positional arguments names (like "NAME"),
// with a one-line error naming what is missing or extra.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return failf("missing %s for %s; see %s --help", strings.Join(names[len(args):], " "), c.CommandPath(), c.CommandPath())
		case len(args) > len(names):
			return failf("unexpected argument %q for %s; see %s --help", args[len(names)], c.CommandPath(), c.CommandPath())
		}
		return nil
	}
}
