package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"agent/events"
	"agent/filter"
	"agent/stream"
)

// errTimeout: the awaited condition did not hold within --duration.
var errTimeout = errors.New("timeout")

func newWaitCmd(g *globals) *cobra.Command {
	var expr string
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Block until a filter expression holds on the cluster data",
		Long: `Exit 0 as soon as EXPR holds on the cluster data (at once if it already
does). It follows the agent's stream (a snapshot, then every patch): it does
not poll. When --duration passes first it prints "timeout" and exits 1; a bad
filter or no agent exits 2.`,
		Example: `  agent wait --filter "monitor.nodes.n2.frozen!=0" --duration 30s
  agent wait --filter 'cluster.nodes.n3.state=dead'
  agent wait --filter 'monitor.services.web.avail=up and not monitor.nodes.n1.frozen'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if expr == "" {
				return failf("--filter is required (see agent wait --help)")
			}
			e, err := filter.Parse(expr)
			if err != nil {
				return failf("%v", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := withDuration(cmd.Context(), duration)
			defer cancel()
			err = waitFor(ctx, c, e)
			if errors.Is(err, errTimeout) {
				fmt.Fprintln(cmd.OutOrStdout(), "timeout")
				return &exitError{code: exitTimeout}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&expr, "filter", "", "filter `EXPR` over the cluster data (SPEC section 6)")
	cmd.Flags().DurationVar(&duration, "duration", 0, "give up after this long (default: wait forever)")
	return cmd
}

// waitFor mirrors the cluster data from the stream and returns nil as soon
// as e holds, errTimeout when ctx ends first. A mirror that loses its
// footing (reset, failed patch) subscribes again with a new snapshot.
func waitFor(ctx context.Context, c *client, e *filter.Expr) error {
	for {
		err := waitOnce(ctx, c, e)
		if err == nil || ctx.Err() != nil {
			if err != nil {
				return errTimeout
			}
			return nil
		}
		if !errors.Is(err, stream.ErrNeedFull) && !errors.Is(err, stream.ErrGap) {
			return err
		}
	}
}

func waitOnce(ctx context.Context, c *client, e *filter.Expr) error {
	opts := c.dialOptions()
	opts.Snapshot = true
	opts.Kinds = []string{events.KindPatch}
	// One record per frame: batching would hold each patch back for the
	// batch window, and wait is about reacting at once.
	opts.Batch = false
	st, err := stream.Dial(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.As(err, new(*stream.HTTPError)) {
			return asExit(err)
		}
		return c.connError(err)
	}
	defer st.Close()
	m := &stream.Mirror{SkipEvents: true}
	for {
		rec, err := st.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return failf("events stream ended: %v", err)
		}
		if err := m.Apply(rec); err != nil {
			return err
		}
		if m.Ready() && e.Match(m.Doc()) {
			return nil
		}
	}
}
