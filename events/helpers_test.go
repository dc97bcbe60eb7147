package events

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// testLogger discards logs unless EVENTS_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("EVENTS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fakeClock is a clock that tests move by hand.

func openBus(t testing.TB, cfg Config) *Bus {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	b, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func publishN(b *Bus, n int) []*Record {
	out := make([]*Record, 0, n)
	for i := range n {
		kind := KindPatch
		if i%3 == 2 {
			kind = KindEvent
		}
		data := json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
		out = append(out, b.Publish("n1", kind, data))
	}
	return out
}

func subscribe(t testing.TB, b *Bus, opts SubscribeOptions) *Subscription {
	t.Helper()
	s, err := b.Subscribe(opts)
	if err != nil {
		t.Fatalf("Subscribe(%+v): %v", opts, err)
	}
	t.Cleanup(s.Close)
	return s
}

// collect reads n records, failing the test if they do not come within a
// generous deadline (a hang, not a timing assertion).
func collect(t testing.TB, s *Subscription, n int) []*Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make([]*Record, 0, n)
	for len(out) < n {
		r, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, r)
	}
	return out
}

// checkSeqs fails unless recs are exactly seqs from..from+len-1.
func checkSeqs(t testing.TB, recs []*Record, from uint64) {
	t.Helper()
	for i, r := range recs {
		if want := from + uint64(i); r.Seq != want {
			t.Fatalf("record %d has seq %d, want %d", i, r.Seq, want)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// noWait is a context already done: Next returns only what is available.
func noWait() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// crash stops b as a killed process would: no final write, no fsync, no
// clean mark; what was written stays (the OS has it).
func crash(t testing.TB, b *Bus) {
	t.Helper()
	b.mu.Lock()
	b.closed = true
	b.closing.Store(true)
	close(b.done)
	b.mu.Unlock()
	close(b.stop)
	b.wg.Wait()
	if j := b.j; j != nil {
		j.mu.Lock()
		j.closed = true
		if j.f != nil {
			j.f.Close()
		}
		for _, f := range j.rotated {
			f.Close()
		}
		j.mu.Unlock()
		if j.mark != nil {
			j.mark.close()
		}
	}
}
