//go:build !race

// The simulation runs tens of memberlists in one process; under the race
// detector that is ten times slower and proves nothing more about the
// protocol, so CI runs this file in a separate invocation without -race.

package sim

import (
	"context"
	"testing"
	"time"

	"agent/internal/testutil"
)

// TestSmoke starts a 50-node cluster in real time, makes changes one at a
// time and under a steady rate, and checks that every change reached
// every node and that the counters the benchmark reports move. Times are
// logged, never asserted.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("50 in-process nodes: not in -short")
	}
	leak := testutil.CheckGoroutines(t)
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	c, err := Start(ctx, Config{Nodes: 50, Seed: 1, Progress: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("50 nodes converged in %v, %d goroutines", c.StartTime.Round(time.Millisecond), c.Goroutines)

	spreads, err := c.Spread(ctx, 5, 0, 20*time.Millisecond, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Two changes too large for a packet: TCP to each peer.
	large, err := c.Spread(ctx, 2, 2048, 20*time.Millisecond, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	spreads = append(spreads, large...)
	for _, s := range spreads {
		if s.Reached != 49 || s.T100 == 0 || s.T99 == 0 || s.T99 > s.T100 {
			t.Errorf("change on %s reached %d of 49 nodes (99 %% after %v, all after %v)", s.Owner, s.Reached, s.T99, s.T100)
		}
		t.Logf("change on %s: 99 %% %v, 100 %% %v", s.Owner, s.T99, s.T100)
	}

	tr, err := c.Traffic(ctx, 2*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Changes == 0 || tr.HB.DeltasSent < uint64(tr.Changes) || tr.Net.PacketsSent == 0 {
		t.Errorf("traffic under load: %d changes, %+v, %+v", tr.Changes, tr.HB, tr.Net)
	}
	t.Logf("%d changes in %v: %.0f B/node/s, resyncs %d, full requests %d",
		tr.Changes, tr.Window.Round(time.Millisecond), tr.BytesPerNodePerSec(50), tr.HB.Resyncs, tr.HB.FullRequests)
	if err := c.WaitConverged(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	leak()
}
