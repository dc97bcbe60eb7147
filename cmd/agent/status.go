package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"agent/monitor"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show nodes and services × nodes as a table",
		Example: `  agent status
  agent status --server http://10.0.0.1:1215 --token "$(cat /etc/agent/token)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := g.fetchStatus(cmd.Context())
			if err != nil {
				return err
			}
			return printStatusTable(cmd.OutOrStdout(), body)
		},
	}
}

// statusDoc is the part of the cluster data the table shows.
type statusDoc struct {
	Cluster struct {
		Name  string                    `json:"name"`
		Nodes map[string]monitor.Member `json:"nodes"`
	} `json:"cluster"`
	Monitor struct {
		Nodes    map[string]monitor.NodeData `json:"nodes"`
		Services map[string]struct {
			Avail     string   `json:"avail"`
			Overall   string   `json:"overall"`
			Frozen    string   `json:"frozen"`
			Placement string   `json:"placement"`
			Up        []string `json:"up"`
		} `json:"services"`
	} `json:"monitor"`
}

// printStatusTable prints the nodes table and, when there are services,
// the services × nodes matrix.
func printStatusTable(w io.Writer, body []byte) error {
	var d statusDoc
	if err := json.Unmarshal(body, &d); err != nil {
		return failf("cluster data is not what this client expects: %v", err)
	}
	nodes := sortedNodes(d)

	fmt.Fprintf(w, "cluster %s\n\n", d.Cluster.Name)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tSTATUS\tFROZEN\tGEN\tLOAD15\tMEM%\tLABELS")
	for _, n := range nodes {
		m, hasM := d.Cluster.Nodes[n]
		nd, hasD := d.Monitor.Nodes[n]
		state := "-"
		if hasM {
			state = m.State
		}
		status, frozen, gen, load, mem, labels := "-", "-", "-", "-", "-", "-"
		if hasD {
			status = nd.Status
			frozen = "no"
			if nd.Frozen != 0 {
				frozen = time.Unix(nd.Frozen, 0).UTC().Format("2006-01-02T15:04:05Z")
			}
			gen = fmt.Sprint(nd.Gen)
			load = fmt.Sprintf("%.1f", nd.Stats.Load15m)
			mem = fmt.Sprint(nd.Stats.MemAvailPct)
			labels = formatLabels(nd.Labels)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, state, status, frozen, gen, load, mem, labels)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(d.Monitor.Services) == 0 && !hasInstances(d) {
		return nil
	}
	fmt.Fprintln(w)
	return writeServices(w, d, nodes)
}

func hasInstances(d statusDoc) bool {
	for _, nd := range d.Monitor.Nodes {
		if len(nd.Services) > 0 {
			return true
		}
	}
	return false
}

// printServices prints the services × nodes matrix alone (agent svc ls).
func printServices(w io.Writer, body []byte) error {
	var d statusDoc
	if err := json.Unmarshal(body, &d); err != nil {
		return failf("cluster data is not what this client expects: %v", err)
	}
	if len(d.Monitor.Services) == 0 && !hasInstances(d) {
		fmt.Fprintln(w, "no service")
		return nil
	}
	return writeServices(w, d, sortedNodes(d))
}

// writeServices writes the matrix: one row per service, one column per node.
func writeServices(w io.Writer, d statusDoc, nodes []string) error {
	svcs := map[string]bool{}
	for s := range d.Monitor.Services {
		svcs[s] = true
	}
	for _, nd := range d.Monitor.Nodes {
		for s := range nd.Services {
			svcs[s] = true
		}
	}
	list := slices.Sorted(maps.Keys(svcs))
	stale := false
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SERVICE\tAVAIL\tFROZEN\tPLACEMENT\t%s\n", strings.Join(nodes, "\t"))
	for _, s := range list {
		sum := d.Monitor.Services[s]
		row := []string{s, dash(sum.Avail), dash(sum.Frozen), dash(sum.Placement)}
		for _, n := range nodes {
			inst, ok := d.Monitor.Nodes[n].Services[s]
			if !ok {
				row = append(row, "-")
				continue
			}
			if !present(d, n) {
				// A dead or departed node's instance is history, as
				// monitor.services.NAME.up says: never shown as up.
				last := dash(inst.Avail)
				if st := inst.Monitor.Status; st != "" && st != "idle" {
					last += ", " + st // starting: it may well be up now
				}
				row = append(row, "unknown~ (last "+last+")")
				stale = true
				continue
			}
			cell := inst.Avail
			if inst.Monitor.Placement == "leader" {
				cell += "^"
			}
			if inst.Frozen != 0 {
				cell += "*"
			}
			if st := inst.Monitor.Status; st != "" && st != "idle" {
				cell += " (" + st + ")"
			}
			row = append(row, cell)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprint(w, "\n^ leader  * frozen")
	if stale {
		fmt.Fprint(w, "  ~ stale: the node is dead or left, its last report is not current")
	}
	fmt.Fprintln(w)
	for _, s := range list {
		for _, n := range leftRunning(d, s) {
			fmt.Fprintf(w, "%s: %s left with it running; not placed elsewhere until %s is back, forgotten (agent node forget %s) or %s is ordered again\n", s, n, n, n, s)
		}
	}
	return nil
}

// leftRunning lists the nodes that present nodes report as having left
// gracefully with their instance of svc running (monitor.left_running):
// the reason the service is not placed elsewhere.
func leftRunning(d statusDoc, svc string) []string {
	set := map[string]bool{}
	for n, nd := range d.Monitor.Nodes {
		if !present(d, n) {
			continue
		}
		for x := range nd.Services[svc].Monitor.LeftRunning {
			if !present(d, x) {
				set[x] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// present reports whether node n's data describes what runs now: its
// membership state, as the agent sees it, is alive or suspect.
func present(d statusDoc, n string) bool {
	st := d.Cluster.Nodes[n].State
	return st == monitor.StateAlive || st == monitor.StateSuspect
}

// sortedNodes lists every node of the membership view and the data.
func sortedNodes(d statusDoc) []string {
	names := map[string]bool{}
	for n := range d.Cluster.Nodes {
		names[n] = true
	}
	for n := range d.Monitor.Nodes {
		names[n] = true
	}
	nodes := slices.Sorted(maps.Keys(names))
	return nodes
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, " ")
}
