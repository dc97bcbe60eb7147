package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"agent/events"
	"agent/filter"
	"agent/stream"
)

type eventsFlags struct {
	kinds    []string
	filters  []string
	output   string
	since    string
	duration time.Duration
	limit    int
	snapshot bool
}

func newEventsCmd(g *globals) *cobra.Command {
	f := &eventsFlags{}
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Tail the agent's stream of patch and event records",
		Long: `Tail the local agent's stream: every patch (each change of its cluster data,
local or applied from a peer) and every event. The tail reconnects and resumes
by itself when the connection drops; if records were lost meanwhile (history
gone), a reset line says so: never a silent gap.

--since SEQ starts after record SEQ; --since 10m starts 10 minutes ago.`,
		Example: `  agent events
  agent events -o json --kind event
  agent events --filter 'kind=event and data.id~^node_' --filter 'data.node=n2'
  agent events --since 2h --limit 100
  agent events --snapshot --duration 5s -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEvents(cmd.Context(), g, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringSliceVar(&f.kinds, "kind", nil, "record `KINDS` to show: event, patch, or event,patch")
	cmd.Flags().StringArrayVar(&f.filters, "filter", nil, "filter `EXPR` on the record (repeatable, OR'ed)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output `FORMAT`: text or json (one record per line)")
	cmd.Flags().StringVar(&f.since, "since", "", "start after record `SEQ`, or this long ago (10m, 2h)")
	cmd.Flags().DurationVar(&f.duration, "duration", 0, "stop after `DURATION`, like 30s or 5m (default: follow forever)")
	cmd.Flags().IntVar(&f.limit, "limit", 0, "stop after `N` patch and event records")
	cmd.Flags().BoolVar(&f.snapshot, "snapshot", false, "print the cluster data first (a full record)")
	return cmd
}

// runEvents tails the stream to w. A reset (history lost, or records lost
// before where the tail starts) is printed as a record and also noted on
// errw, so that a script reading w as JSON lines cannot miss it silently
// and a person sees it even with -o json.
func runEvents(ctx context.Context, g *globals, f *eventsFlags, w, errw io.Writer) error {
	if f.output != "text" && f.output != "json" {
		return failf("-o %q: want text or json", f.output)
	}
	for _, k := range f.kinds {
		if k != events.KindEvent && k != events.KindPatch {
			return failf("--kind %q: want event or patch", k)
		}
	}
	for _, expr := range f.filters {
		if _, err := filter.Parse(expr); err != nil {
			return failf("%v", err)
		}
	}
	if f.limit < 0 {
		return failf("--limit %d: must not be negative", f.limit)
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	opts := c.dialOptions()
	opts.Kinds, opts.Filters, opts.Snapshot = f.kinds, f.filters, f.snapshot
	if err := parseSince(f.since, time.Now(), &opts); err != nil {
		return err
	}
	ctx, cancel := withDuration(ctx, f.duration)
	defer cancel()
	st, err := stream.Dial(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.As(err, new(*stream.HTTPError)) {
			return asExit(err)
		}
		return c.connError(err)
	}
	defer st.Close()
	shown := 0
	for {
		rec, err := st.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return failf("events stream ended: %v", err)
		}
		if rec.Kind == events.KindProgress {
			continue
		}
		if rec.Kind == events.KindReset {
			fmt.Fprintf(errw, "agent: note: %s\n", resetReason(rec))
		}
		if err := printRecord(w, rec, f.output); err != nil {
			return err
		}
		if rec.Kind == events.KindPatch || rec.Kind == events.KindEvent {
			shown++
			if f.limit > 0 && shown >= f.limit {
				return nil
			}
		}
	}
}

// parseSince reads --since: a sequence number or a duration ago.
func parseSince(s string, now time.Time, o *stream.DialOptions) error {
	if s == "" {
		return nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			// After record 0: everything retained.
			o.SinceTime = time.Unix(0, 1)
			return nil
		}
		o.Since = n
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return failf("--since %q: want a sequence number (1200) or a duration (10m, 2h)", s)
	}
	if d <= 0 {
		return failf("--since %q: a duration ago must be positive", s)
	}
	o.SinceTime = now.Add(-d)
	return nil
}

// printRecord prints one record as JSON (exactly as the agent sent it) or
// as one readable line.
func printRecord(w io.Writer, rec *events.Record, output string) error {
	if output == "json" {
		_, err := fmt.Fprintf(w, "%s\n", rec.JSON())
		return err
	}
	_, err := fmt.Fprintln(w, textRecord(rec))
	return err
}

// textRecord is the readable form: time, node, kind, then the event id and
// its fields, or each patch op as path=value.
func textRecord(rec *events.Record) string {
	ts := rec.Time.Local().Format("15:04:05.000")
	head := fmt.Sprintf("%s %6d %-8s %-5s", ts, rec.Seq, rec.Nodename, rec.Kind)
	switch rec.Kind {
	case events.KindEvent:
		var d map[string]any
		if json.Unmarshal(rec.Data, &d) != nil {
			return head + " " + string(rec.Data)
		}
		id, _ := d["id"].(string)
		delete(d, "id")
		parts := []string{id}
		if r, ok := d["reason"]; ok {
			parts = append(parts, fmt.Sprintf("reason=%v", r))
			delete(d, "reason")
		}
		// The instance snapshot's avail is the gist of an instance event.
		if inst, ok := d["instance"].(map[string]any); ok {
			if av, ok := inst["avail"].(string); ok {
				d["avail"] = av
			}
		}
		keys := make([]string, 0, len(d))
		for k := range d {
			// The instance, service and node snapshots of orchestration
			// events are for -o json; the text line stays readable.
			if k != "instance" && k != "service" && k != "monitor" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, k+"="+compact(d[k]))
		}
		return head + " " + strings.Join(parts, " ")
	case events.KindPatch:
		var ops []struct {
			Op    string          `json:"op"`
			Path  string          `json:"path"`
			From  string          `json:"from"`
			Value json.RawMessage `json:"value"`
		}
		if json.Unmarshal(rec.Data, &ops) != nil {
			return head + " " + string(rec.Data)
		}
		parts := make([]string, 0, len(ops))
		for _, op := range ops {
			switch op.Op {
			case "remove":
				parts = append(parts, "-"+op.Path)
			case "move", "copy":
				parts = append(parts, op.Op+" "+op.From+"->"+op.Path)
			default:
				parts = append(parts, op.Path+"="+shorten(string(op.Value), 120))
			}
		}
		return head + " " + strings.Join(parts, " ")
	case events.KindReset:
		return head + " history lost, resuming from here: " + string(rec.Data)
	case events.KindFull:
		return head + " cluster data " + string(rec.Data)
	}
	return head + " " + string(rec.Data)
}

// resetReason is the reason a reset record gives.
func resetReason(rec *events.Record) string {
	var d struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(rec.Data, &d) != nil || d.Reason == "" {
		return "history lost: " + string(rec.Data)
	}
	return d.Reason
}

func compact(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return shorten(string(b), 120)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
