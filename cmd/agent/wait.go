package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"agent/events"
	"agent/filter"
	"agent/stream"
)

// errTimeout: the awaited condition did not hold within --duration.
var errTimeout = errors.New("timeout")

func newWaitCmd(g *globals) *cobra.Command {
	var exprs []string
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Block until a filter expression holds on the cluster data",
		Long: `Exit 0 as soon as EXPR holds on the cluster data (at once if it already
does). With several --filter flags, all of them must hold at the same time
(they are ANDed). It follows the agent's stream (a snapshot, then every
patch): it does not poll. When --duration passes first it prints "timeout"
and exits 1; a bad filter exits 2.

With --duration, an agent that does not answer yet (just started) is
retried until the duration ends, and then the connection error exits 2;
without it, no agent exits 2 at once. The filter language is described in
docs/filters.md.`,
		Example: `  agent wait --filter "monitor.nodes.n2.frozen!=0" --duration 30s
  agent wait --filter 'cluster.nodes.n3.state=dead'
  agent wait --filter 'monitor.services.web.avail=up' --filter 'not monitor.nodes.n1.frozen' --duration 1m
  agent --root /srv/agents/n1 wait --filter 'monitor.nodes.n1.status=idle' --duration 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := parseAll(exprs)
			if err != nil {
				return err
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
	cmd.Flags().StringArrayVar(&exprs, "filter", nil, "filter `EXPR` over the cluster data; repeatable: all must hold (AND)")
	cmd.Flags().DurationVar(&duration, "duration", 0, "give up after `DURATION`, like 30s or 5m (default: wait forever)")
	return cmd
}

// parseAll parses each filter (so that an error points at its own
// column), then their conjunction.
func parseAll(exprs []string) (*filter.Expr, error) {
	if len(exprs) == 0 {
		return nil, failf("--filter is required (see agent wait --help)")
	}
	parts := make([]string, len(exprs))
	for i, x := range exprs {
		if _, err := filter.Parse(x); err != nil {
			if len(exprs) > 1 {
				return nil, failf("--filter #%d: %v", i+1, err)
			}
			return nil, failf("%v", err)
		}
		parts[i] = "(" + x + ")"
	}
	e, err := filter.Parse(strings.Join(parts, " and "))
	if err != nil {
		return nil, failf("%v", err)
	}
	return e, nil
}

// waitFor mirrors the cluster data from the stream and returns nil as soon
// as e holds, errTimeout when ctx ends first. A mirror that loses its
// footing (reset, failed patch) subscribes again with a new snapshot.
func waitFor(ctx context.Context, c *client, e *filter.Expr) error {
	for {
		err := waitOnce(ctx, c, e)
		var nc *notConnected
		if errors.As(err, &nc) {
			return nc.err
		}
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
	st, err := dialRetry(ctx, c, opts)
	if err != nil {
		return err
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

// notConnected is a connection error that lasted until the wait's
// deadline: it exits 2 like any connection error, not 1 like a timeout.
type notConnected struct{ err error }

func (e *notConnected) Error() string { return e.err.Error() }

// dialRetry subscribes. When ctx has a deadline (--duration), an agent
// that does not answer is retried until then, so that a script can start
// an agent and wait on it at once; without one, it fails at once.
func dialRetry(ctx context.Context, c *client, opts stream.DialOptions) (*stream.Stream, error) {
	_, bounded := ctx.Deadline()
	backoff := 50 * time.Millisecond
	var connErr error // the last failure, when every try failed to connect
	for {
		st, err := stream.Dial(ctx, opts)
		if err == nil {
			return st, nil
		}
		if errors.As(err, new(*stream.HTTPError)) {
			return nil, asExit(err)
		}
		if ctx.Err() != nil {
			if connErr != nil {
				return nil, &notConnected{err: connErr}
			}
			return nil, ctx.Err()
		}
		connErr = c.connError(err)
		if !bounded {
			return nil, connErr
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, &notConnected{err: connErr}
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}
