package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"agent/triggers"
)

func newTriggerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trigger",
		Short: "Triggers: patterns of events over time, and their open streams",
		Long: `Triggers are declared by [trigger#NAME] sections of node.conf. Each splits
the matching event records into streams by its distinct values; a stream fires
when it holds count events (and, with fire_when, when such an event arrives),
or expires window after its first event, and runs its command then.`,
		Example: `  agent trigger ls
  agent trigger ls -o json`,
	}
	var out string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "Show each trigger with its open streams (key, count, age, expires in)",
		Long: `Show each configured trigger, in node.conf order, with its figures since the
agent started and its open streams: the distinct values (key), the events
collected (count), the time since the first event (age) and the time left
before the stream expires (expires in). -o json prints the same as a JSON
array, times in RFC 3339 and durations in seconds.`,
		Example: `  agent trigger ls
  agent trigger ls -o json | jq '.[] | {name, open: (.open | length)}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out != "text" && out != "json" {
				return failf("-o %q: want text or json", out)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var list []triggers.Listed
			body, err := c.do(cmd.Context(), "GET", "/v1/triggers", &list)
			if err != nil {
				return asExit(err)
			}
			if out == "json" {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), strings.TrimSpace(string(body)))
				return err
			}
			return printTriggers(cmd.OutOrStdout(), list)
		},
	}
	ls.Flags().StringVarP(&out, "output", "o", "text", "output `FORMAT`: text or json")
	cmd.AddCommand(ls)
	return cmd
}

// printTriggers prints one block per trigger: a summary line, then its
// open streams.
func printTriggers(w io.Writer, list []triggers.Listed) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no trigger")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRIGGER\tOPEN\tPENDING\tFIRES\tEXPIRIES\tFAILED\tCOUNT\tWINDOW\tDISTINCT")
	for _, t := range list {
		distinct := strings.Join(t.Distinct, " ")
		if distinct == "" {
			distinct = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", t.Name, len(t.Open), t.Pending, t.Fires, t.Expiries, t.Failed,
			t.Count, seconds(t.WindowSeconds), distinct)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range list {
		if len(t.Open) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s: %d open\n", t.Name, len(t.Open))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  KEY\tCOUNT\tAGE\tEXPIRES IN\tSEQS")
		for _, s := range t.Open {
			key := s.Key
			if key == "" {
				key = "(all)"
			}
			note := ""
			if s.Dropped > 0 {
				note += fmt.Sprintf(" (%d oldest dropped)", s.Dropped)
			}
			if s.Lost {
				note += " (records lost while open)"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%d-%d%s\n", key, s.Count, seconds(s.AgeSeconds), seconds(s.ExpiresInSeconds), s.FirstSeq, s.LastSeq, note)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// seconds prints a duration in seconds the way an operator reads it: 1m2s,
// 1.5s, 0s for a window already over.
func seconds(s float64) string {
	if s <= 0 || math.IsNaN(s) {
		return "0s"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= time.Minute:
		d = d.Round(time.Second)
	case d >= time.Second:
		d = d.Round(100 * time.Millisecond)
	default:
		d = d.Round(time.Millisecond)
	}
	return d.String()
}
