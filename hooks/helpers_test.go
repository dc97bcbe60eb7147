package hooks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"agent/config"
	"agent/durable"
	"agent/events"
	"agent/internal/testutil"
)

// waitLong bounds waits that would otherwise hang a broken test; it is
// never a timing assertion.
const waitLong = 3 * time.Minute

// testLogger discards logs unless HOOKS_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("HOOKS_TEST_LOG") != "" {
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

func newRunner(t testing.TB, cfg Config) *Runner {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.Nodename == "" {
		cfg.Nodename = "n1"
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("hooks.New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// script writes an executable /bin/sh script and returns its path.
func script(t testing.TB, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// hook is a config.Hook for all events running the command.
func hook(name string, command ...string) config.Hook {
	return config.Hook{Name: name, Events: []string{"all"}, Command: command, Timeout: waitLong}
}

func update(t testing.TB, r *Runner, hooks ...config.Hook) {
	t.Helper()
	if err := r.Update(hooks); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// publishEvent publishes an event record with data.id and the extra fields.
func publishEvent(b *events.Bus, id string, extra map[string]any) *events.Record {
	d := map[string]any{"id": id, "reason": "test"}
	for k, v := range extra {
		d[k] = v
	}
	data, _ := json.Marshal(d)
	return b.Publish("n2", events.KindEvent, data)
}

func publishPatch(b *events.Bus, i int) *events.Record {
	return b.Publish("n2", events.KindPatch, json.RawMessage(fmt.Sprintf(`[{"op":"replace","path":"/x","value":%d}]`, i)))
}

// statsOf returns the stats of the named hook; ok is false when the
// runner has no such hook.
func statsOf(r *Runner, name string) (HookStats, bool) {
	for _, h := range r.Stats().Hooks {
		if h.Name == name {
			return h, true
		}
	}
	return HookStats{}, false
}

// waitDone waits until the hook is done with every record up to seq.
func waitDone(t testing.TB, r *Runner, name string, seq uint64) {
	t.Helper()
	testutil.Eventually(t, waitLong, func() bool {
		h, ok := statsOf(r, name)
		return ok && h.Seq >= seq && !h.Running
	}, "hook %s done with seq %d (stats %+v)", name, seq, func() any { return r.Stats() })
}

// readLines returns the lines of a file, none when it does not exist.
func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// waitLines waits until the file has at least n lines and returns them.
func waitLines(t testing.TB, path string, n int) []string {
	t.Helper()
	var lines []string
	testutil.Eventually(t, waitLong, func() bool {
		lines = readLines(t, path)
		return len(lines) >= n
	}, "%d lines in %s", n, path)
	return lines
}

// recordSeqs parses record JSON lines and returns their seqs.
func recordSeqs(t testing.TB, lines []string) []uint64 {
	t.Helper()
	out := make([]uint64, 0, len(lines))
	for _, l := range lines {
		r, err := events.ParseRecord([]byte(l))
		if err != nil {
			t.Fatalf("hook got a line that is not a record: %q: %v", l, err)
		}
		out = append(out, r.Seq)
	}
	return out
}

// eventIDs parses record JSON lines and returns their data.id.
func eventIDs(t testing.TB, lines []string) []string {
	t.Helper()
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		var r struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("bad record line %q: %v", l, err)
		}
		out = append(out, r.Data.ID)
	}
	return out
}

// findEvent reads sub until an event record with data.id = id comes, and
// returns its data.
func findEvent(t testing.TB, sub *events.Subscription, id string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for {
		rec, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for a %s event: %v", id, err)
		}
		if rec.Kind != events.KindEvent {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(rec.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d["id"] == id {
			return d
		}
	}
}

// cursor, readCursor and writeCursor let the tests set and read a hook's
// cursor file.
type cursor = durable.Cursor

func readCursor(path string) (cursor, error) { return durable.ReadCursor(path) }

func writeCursor(path string, c cursor) error { return durable.WriteCursor(path, c) }
