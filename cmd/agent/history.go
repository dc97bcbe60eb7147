package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"agent/config"
	"agent/events"
	"agent/history"
)

type historyFlags struct {
	sink     string
	clusters []string
	agents   []string
	nodes    []string
	events   []string
	kinds    []string
	since    string
	until    string
	filters  []string
	limit    int
	output   string
	timing   bool
}

func newHistoryCmd(g *globals) *cobra.Command {
	f := &historyFlags{}
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Search the records kept in a history database ([sink#NAME] of node.conf)",
		Long: `Search the records the agents wrote to a history sink's database: SQLite
(this node's records) or PostgreSQL (every node writing to it: cluster- and
fleet-wide). The database is read directly, so this works with the agent
stopped, for a user who can read node.conf and the DSN; with --server it asks
that agent's GET /v1/history instead.

Records come oldest first. --node matches the record's nodename, --agent the
node whose journal it came from. Time, node, agent, event id and kind are
matched by the database; --filter (the language of agent events, repeatable,
OR'ed) is applied to each record after. --limit N keeps the newest N.
-o json prints each record byte for byte as agent events -o json printed it.`,
		Example: `  agent history --since 1h
  agent history --event node_down --event node_up --since 7d -o json
  agent history --node n2 --since "2026-11-22 10:00" --until "2026-11-22 11:00"
  agent history --filter 'data.svcname=web' --limit 20
  agent history --sink fleet --agent n3 --kind event,patch --since 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runHistory(cmd.Context(), g, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.sink, "sink", "", "the sink `NAME` of node.conf to read (default: the first [sink#NAME])")
	fl.StringArrayVar(&f.clusters, "cluster", nil, "only records of cluster `NAME` (repeatable)")
	fl.StringArrayVar(&f.agents, "agent", nil, "only records from the journal of `NODE` (repeatable)")
	fl.StringArrayVar(&f.nodes, "node", nil, "only records whose nodename is `NODE` (repeatable)")
	fl.StringArrayVar(&f.events, "event", nil, "only event records whose data.id is `ID` (repeatable)")
	fl.StringSliceVar(&f.kinds, "kind", nil, "record `KINDS`: event, patch (comma separated)")
	fl.StringVar(&f.since, "since", "", "from `DUR` ago (10m, 2h, 7d) or a TIME (2026-11-22T10:00:00Z, \"2026-11-22 10:00\")")
	fl.StringVar(&f.until, "until", "", "up to `TIME` (exclusive), same forms as --since")
	fl.StringArrayVar(&f.filters, "filter", nil, "filter `EXPR` on the record (repeatable, OR'ed)")
	fl.IntVar(&f.limit, "limit", 0, "keep the newest `N` records (0: all)")
	fl.StringVarP(&f.output, "output", "o", "text", "output `FORMAT`: text or json (one record per line)")
	fl.BoolVar(&f.timing, "timing", false, "print the number of records and the time taken to stderr")
	return cmd
}

// values turns the flags into the parameters GET /v1/history takes, so
// that both read them the same way.
func (f *historyFlags) values() url.Values {
	v := url.Values{}
	add := func(name string, list []string) {
		for _, s := range list {
			v.Add(name, s)
		}
	}
	if f.sink != "" {
		v.Set(history.ParamSink, f.sink)
	}
	add(history.ParamCluster, f.clusters)
	add(history.ParamAgent, f.agents)
	add(history.ParamNode, f.nodes)
	add(history.ParamEvent, f.events)
	add(history.ParamKind, f.kinds)
	add(history.ParamFilter, f.filters)
	if f.since != "" {
		v.Set(history.ParamSince, f.since)
	}
	if f.until != "" {
		v.Set(history.ParamUntil, f.until)
	}
	if f.limit != 0 {
		v.Set(history.ParamLimit, strconv.Itoa(f.limit))
	}
	return v
}

func runHistory(ctx context.Context, g *globals, f *historyFlags, stdout, stderr io.Writer) error {
	start := time.Now()
	if f.output != "text" && f.output != "json" {
		return failf("-o %q: want text or json", f.output)
	}
	params := f.values()
	req, err := history.ParseRequest(params, start)
	if err != nil {
		var pe *history.ParamError
		if errors.As(err, &pe) {
			return failf("--%s: %v", pe.Param, pe.Err)
		}
		return failf("%v", err)
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	n := 0
	print := func(raw []byte) error {
		n++
		if f.output == "json" {
			_, _ = w.Write(raw)
			return w.WriteByte('\n')
		}
		rec, err := events.ParseRecord(raw)
		if err != nil {
			_, err = fmt.Fprintf(w, "unreadable record: %s\n", raw)
			return err
		}
		_, err = fmt.Fprintln(w, textRecord(rec))
		return err
	}
	var st history.QueryStats
	var connect time.Duration
	if g.server != "" {
		err = historyRemote(ctx, g, params, print)
	} else {
		st, connect, err = historyLocal(ctx, g, req, f.timing, print)
	}
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = failf("write: %v", ferr)
	}
	if f.timing {
		took := time.Since(start)
		if g.server == "" {
			fmt.Fprintf(stderr, "agent: %d records in %.1f ms (connection %.1f ms; %d rows read, %d statements)\n",
				n, msOf(took), msOf(connect), st.Scanned, st.Statements)
		} else {
			fmt.Fprintf(stderr, "agent: %d records in %.1f ms (through %s)\n", n, msOf(took), g.server)
		}
	}
	return err
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// historyLocal reads the database of the sink named in node.conf. With
// timing it connects first, to say how long that took.
func historyLocal(ctx context.Context, g *globals, req history.Request, timing bool, print func([]byte) error) (history.QueryStats, time.Duration, error) {
	var st history.QueryStats
	var connect time.Duration
	paths := g.paths()
	host, _ := os.Hostname()
	node, err := config.LoadNode(paths.NodeConf, host)
	if err != nil {
		return st, connect, failf("%v", err)
	}
	if node.Source == "" {
		return st, connect, failf("no %s: no history database is configured (--root or AGENT_ROOT may point elsewhere)", paths.NodeConf)
	}
	sink, err := node.FindSink(req.Sink)
	if err != nil {
		return st, connect, failf("%v", err)
	}
	target, err := history.TargetOf(sink, paths.VarDir, paths.NodeConf)
	if err != nil {
		return st, connect, failf("%v", err)
	}
	db, err := history.OpenReader(target)
	if err != nil {
		if errors.Is(err, history.ErrNoDatabase) {
			return st, connect, failf("%v: an agent running with [sink#%s] creates it", err, sink.Name)
		}
		return st, connect, failf("%v", err)
	}
	defer db.Close()
	if timing {
		t0 := time.Now()
		if err := db.Ping(ctx); err != nil {
			return st, connect, failf("%v", err)
		}
		connect = time.Since(t0)
	}
	st, err = db.Query(ctx, req.Query, func(r history.Row) error { return print(r.Raw) })
	if err != nil {
		return st, connect, failf("%v", err)
	}
	return st, connect, nil
}

// historyRemote asks the agent --server names.
func historyRemote(ctx context.Context, g *globals, params url.Values, print func([]byte) error) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/history?"+params.Encode(), nil)
	if err != nil {
		return failf("%v", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return failf("%s", e.Error)
		}
		return failf("%s answered %s", c.where, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if strings.HasPrefix(string(line), `{"error":`) {
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(line, &e) == nil {
				return failf("%s", e.Error)
			}
		}
		if err := print(line); err != nil {
			return failf("write: %v", err)
		}
	}
	if err := sc.Err(); err != nil {
		return failf("read answer of %s: %v", c.where, err)
	}
	return nil
}
