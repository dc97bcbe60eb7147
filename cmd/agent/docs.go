package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"agent/config"
)

func newDocsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "docs",
		Short: "Write the documentation generated from this binary: man pages, command pages, config reference",
		Long: `Write documentation generated from the binary itself, so that it always
matches it: a man page per command, a Markdown page per command, or the
configuration reference (every key of node.conf and svc files).`,
		Example: `  agent docs man /usr/share/man/man1
  agent docs markdown docs/cli
  agent docs config > docs/configuration.md`,
	}
	cmd.AddCommand(newDocsTreeCmd("man", "Write a man page (section 1) per command into DIR",
		"  agent docs man /usr/share/man/man1\n  agent docs man ./man && man ./man/agent-wait.1",
		func(root *cobra.Command, dir string) error {
			header := &doc.GenManHeader{Title: "AGENT", Section: "1", Source: "agent " + readVersion().Version, Manual: "agent manual"}
			return doc.GenManTree(root, header, dir)
		}))
	cmd.AddCommand(newDocsTreeCmd("markdown", "Write a Markdown page per command into DIR",
		"  agent docs markdown docs/cli", doc.GenMarkdownTree))
	cmd.AddCommand(&cobra.Command{
		Use:   "config",
		Short: "Print the configuration reference (Markdown) on stdout",
		Long: `Print the configuration reference: every section and key of node.conf and
svc/NAME.conf with its default, whether an edit applies live, and how the
value is checked. The repository's docs/configuration.md is this output.`,
		Example: `  agent docs config > docs/configuration.md`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return config.WriteReference(cmd.OutOrStdout())
		},
	})
	return cmd
}

// newDocsTreeCmd is `agent docs KIND DIR`: gen writes one page per command
// of the tree into DIR.
func newDocsTreeCmd(kind, short, example string, gen func(root *cobra.Command, dir string) error) *cobra.Command {
	return &cobra.Command{
		Use:     kind + " DIR",
		Short:   short,
		Example: example,
		Args:    exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			// Documentation is public: 0755.
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return failf("create %s: %v", dir, err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // no date: the pages stay reproducible
			if err := gen(root, dir); err != nil {
				return failf("write %s pages to %s: %v", kind, dir, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s pages written to %s\n", kind, dir)
			return nil
		},
	}
}
