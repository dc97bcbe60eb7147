package durable

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"agent/events"
)

// waitLong bounds waits that would otherwise hang a broken test; it is
// never a timing assertion.
const waitLong = time.Minute

// testLogger discards logs unless DURABLE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("DURABLE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func openBus(t testing.TB, cfg events.Config) *events.Bus {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	b, err := events.Open(cfg)
	if err != nil {
		t.Fatalf("events.Open: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// publish publishes n event records and returns their seqs.
func publish(b *events.Bus, n int) []uint64 {
	out := make([]uint64, 0, n)
	for i := range n {
		data := json.RawMessage(fmt.Sprintf(`{"id":"e","i":%d}`, i))
		out = append(out, b.Publish("n1", events.KindEvent, data).Seq)
	}
	return out
}

// losses collects the losses a consumer reports.
type losses struct {
	mu   sync.Mutex
	list []Loss
}

func (l *losses) add(x Loss) {
	l.mu.Lock()
	l.list = append(l.list, x)
	l.mu.Unlock()
}

func (l *losses) get() []Loss {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Loss(nil), l.list...)
}

// open opens a consumer with the test logger and the losses collector.
func open(t testing.TB, cfg Config, ls *losses) *Consumer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if ls != nil {
		cfg.OnLoss = ls.add
	}
	c, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// next reads one record, failing the test if none comes.
func next(t testing.TB, c *Consumer) *events.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	rec, err := c.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return rec
}

// readN reads n records and returns their seqs.
func readN(t testing.TB, c *Consumer, n int) []uint64 {
	t.Helper()
	out := make([]uint64, 0, n)
	for range n {
		out = append(out, next(t, c).Seq)
	}
	return out
}

// noneWaiting checks that no record is available without waiting.
func noneWaiting(t testing.TB, c *Consumer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rec, err := c.Next(ctx); err == nil {
		t.Fatalf("unexpected record %d", rec.Seq)
	}
}

// cursorOf reads the cursor kept at path, failing the test on an error.
func cursorOf(t testing.TB, path string) Cursor {
	t.Helper()
	c, err := ReadCursor(path)
	if err != nil {
		t.Fatalf("ReadCursor: %v", err)
	}
	return c
}

// durableCursor reads only the fsynced file of a cursor.
func durableCursor(t testing.TB, path string) Cursor {
	t.Helper()
	c, err := readCursorFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return c
}

// countSyncs counts the fsyncs of cursor files until the test ends.
func countSyncs(t testing.TB) func() int {
	var mu sync.Mutex
	n := 0
	syncHook = func(string) {
		mu.Lock()
		n++
		mu.Unlock()
	}
	t.Cleanup(func() { syncHook = nil })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}
