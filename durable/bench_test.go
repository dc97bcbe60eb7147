package durable

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"agent/events"
)

// drain reads n records, marking each with mark.
func drain(b *testing.B, c *Consumer, n int, mark func(uint64)) {
	ctx := context.Background()
	for range n {
		rec, err := c.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		mark(rec.Seq)
	}
}

// BenchmarkNextPass measures records read and passed over per second from
// the ring (a consumer keeping up).
func BenchmarkNextPass(b *testing.B) {
	bus := openBus(b, events.Config{RingSize: 1 << 16})
	c := open(b, Config{CursorPath: filepath.Join(b.TempDir(), "c.cursor"), Bus: bus}, nil)
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(b.N-done, 1<<15)
		publish(bus, n)
		drain(b, c, n, c.Pass)
		done += n
	}
}

// BenchmarkNextDone measures a Done per record: the cursor renamed into
// place each time, fsynced at most every SyncInterval (a hook's cost per
// run, besides the run itself); "fsync-never" leaves the fsyncs to Close,
// to show what the batched fsyncs cost.
func BenchmarkNextDone(b *testing.B) {
	for _, bc := range []struct {
		name     string
		interval time.Duration
	}{{"fsync-50ms", DefaultSyncInterval}, {"fsync-never", time.Hour}} {
		b.Run(bc.name, func(b *testing.B) {
			bus := openBus(b, events.Config{RingSize: 1 << 16})
			c := open(b, Config{CursorPath: filepath.Join(b.TempDir(), "c.cursor"), Bus: bus, SyncInterval: bc.interval}, nil)
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(b.N-done, 1<<15)
				publish(bus, n)
				drain(b, c, n, c.Done)
				done += n
			}
		})
	}
}
