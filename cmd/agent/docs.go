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
	cmd.AddCommand(&cobra.Command{
		Use:   "man DIR",
		Short: "Write a man page (section 1) per command into DIR",
		Example: `  agent docs man /usr/share/man/man1
  agent docs man ./man && man ./man/agent-wait.1`,
		Args: exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := docsDir(args[0])
			if err != nil {
				return err
			}
			root := cmd.Root()
			header := &doc.GenManHeader{Title: "AGENT", Section: "1", Source: "agent " + readVersion().Version, Manual: "agent manual"}
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, header, dir); err != nil {
				return failf("write man pages to %s: %v", dir, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "man pages written to %s\n", dir)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "markdown DIR",
		Short:   "Write a Markdown page per command into DIR",
		Example: `  agent docs markdown docs/cli`,
		Args:    exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := docsDir(args[0])
			if err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			if err := doc.GenMarkdownTree(root, dir); err != nil {
				return failf("write markdown pages to %s: %v", dir, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "markdown pages written to %s\n", dir)
			return nil
		},
	})
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

// docsDir creates dir (mode 0755: documentation is public) if needed.
func docsDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", failf("create %s: %v", dir, err)
	}
	return dir, nil
}
