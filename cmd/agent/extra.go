package main

import "github.com/spf13/cobra"

// addExtraCommands adds the command groups built on the core (services).
func addExtraCommands(root *cobra.Command, g *globals) {}

// writeDemoServices writes the demo's sample services under root.
func writeDemoServices(root string, i int) error { return nil }

// demoExtraHelp is more help text for the demo banner.
func demoExtraHelp(root string) string { return "" }
