package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"agent/agent"
	"agent/config"
	"agent/events"
	"agent/history"
	"agent/internal/testutil"
	"agent/monitor"
	"agent/stream"
)

// sinkRows reads every record of the agent's SQLite sink, by line.
func sinkRows(t *testing.T, path string) map[string]int {
	t.Helper()
	rows := map[string]int{}
	db, err := history.OpenReader(history.Target{Dialect: history.SQLite, Path: path, Name: "test"})
	if err != nil {
		return rows
	}
	defer db.Close()
	_, _ = db.Query(context.Background(), history.Query{}, func(r history.Row) error {
		rows[string(r.Raw)]++
		return nil
	})
	return rows
}

// TestHistorySinkEndToEnd: a SQLite sink of node.conf writes the agent's
// records (the journal's backlog first), GET /v1/history and /metrics
// show them, a live edit that removes the sink stops it and drops its
// cursor, and adding it back writes nothing twice.
func TestHistorySinkEndToEnd(t *testing.T) {
	leak := testutil.CheckGoroutines(t)
	root := shortTemp(t)
	db := filepath.Join(root, "var", "h.db")
	sink := "[sink#h]\nkinds = event,patch\nflush = 50ms\n"
	writeConf(t, root, nodeConf("n1", ""))
	func() {
		// A first run without the sink leaves records in the journal.
		a := startAgent(t, root)
		if _, _, err := a.Store().UpdateLocal("cli", func(d *monitor.NodeData) { d.Frozen = 1 }); err != nil {
			t.Fatal(err)
		}
		a.Stop()
	}()
	writeConf(t, root, nodeConf("n1", sink))
	a := startAgent(t, root)
	if _, _, err := a.Store().UpdateLocal("cli", func(d *monitor.NodeData) { d.Frozen = 0 }); err != nil {
		t.Fatal(err)
	}
	// Every record of the journal lands, the first run's included.
	journal := func() [][]byte {
		return bytes.Split(bytes.TrimSpace(eventsOfKinds(t, a.Bus())), []byte("\n"))
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		rows := sinkRows(t, db)
		for _, line := range journal() {
			if rows[string(line)] != 1 {
				return false
			}
		}
		return true
	}, "the sink never held every record of the journal")
	rows := sinkRows(t, db)
	if !hasLine(rows, `"id":"node_freeze"`) || !hasLine(rows, `"id":"node_thaw"`) {
		t.Fatalf("rows lack the freeze of the first run or the thaw: %d rows", len(rows))
	}

	c := stream.UnixHTTPClient(a.Paths().Socket)
	code, body := apiGet(t, c, "http://unix/v1/history?event=node_thaw")
	if code != 200 || !bytes.Contains(body, []byte(`"id":"node_thaw"`)) || bytes.Count(body, []byte("\n")) != 1 {
		t.Fatalf("GET /v1/history: %d %s", code, body)
	}
	code, body = apiGet(t, c, "http://unix/v1/history?filter=data.id%3D")
	if code != 400 || !bytes.Contains(body, []byte("column 9")) {
		t.Fatalf("GET /v1/history with a bad filter: %d %s", code, body)
	}
	code, body = apiGet(t, c, "http://unix/v1/history/timeline?since=1h")
	if code != 200 || !bytes.Contains(body, []byte(`"id":"node_thaw"`)) {
		t.Fatalf("GET /v1/history/timeline: %d %s", code, body)
	}
	code, body = apiGet(t, c, "http://unix/v1/journal?limit=2&kind=event")
	if code != 200 || bytes.Count(body, []byte("\n")) != 2 {
		t.Fatalf("GET /v1/journal: %d %s", code, body)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, body := apiGet(t, c, "http://unix/metrics")
		if code != 200 {
			return false
		}
		// Every family the sink reports: written, lag in records and
		// seconds, errors, batch size and duration.
		for _, want := range []string{
			`agent_sink_up{sink="h"} 1`,
			`agent_sink_written_total{sink="h"} `,
			`agent_sink_lag_records{sink="h"} 0`,
			`agent_sink_lag_seconds{sink="h"} 0`,
			`agent_sink_errors_total{sink="h"} 0`,
			`agent_sink_batch_records_sum{sink="h"} `,
			`agent_sink_batch_records_count{sink="h"} `,
			`agent_sink_batch_duration_seconds_sum{sink="h"} `,
			`agent_sink_batch_duration_seconds_count{sink="h"} `,
		} {
			if !bytes.Contains(body, []byte(want)) {
				return false
			}
		}
		return !bytes.Contains(body, []byte(`agent_sink_written_total{sink="h"} 0`+"\n")) &&
			!bytes.Contains(body, []byte(`agent_sink_batch_records_count{sink="h"} 0`+"\n"))
	}, "sink metrics missing or not moving: %s", func() any { _, body := apiGet(t, c, "http://unix/metrics"); return grepSink(body) })

	// Removed live: the sink stops and its cursor goes.
	cursor := filepath.Join(root, "var", "sinks", "h.cursor")
	if _, err := os.Stat(cursor); err != nil {
		t.Fatalf("no cursor file: %v", err)
	}
	writeConf(t, root, nodeConf("n1", ""))
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, err := os.Stat(cursor)
		return os.IsNotExist(err)
	}, "the removed sink's cursor stayed")
	if code, _ := apiGet(t, c, "http://unix/v1/history"); code != 404 {
		t.Fatalf("GET /v1/history without a sink: %d, want 404", code)
	}
	// Back again: a new sink, it writes the journal again, each record once.
	writeConf(t, root, nodeConf("n1", sink))
	testutil.Eventually(t, 30*time.Second, func() bool {
		rows := sinkRows(t, db)
		for _, line := range journal() {
			if rows[string(line)] != 1 {
				return false
			}
		}
		return len(rows) >= len(journal())
	}, "the sink added back never caught up")
	a.Stop()
	leak()
}

func hasLine(rows map[string]int, s string) bool {
	for l := range rows {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// eventsOfKinds reads every retained patch and event record of bus.
func eventsOfKinds(t *testing.T, bus *events.Bus) []byte {
	t.Helper()
	sub, err := bus.Subscribe(events.SubscribeOptions{Resume: true, Since: bus.Oldest() - 1, Epoch: epochOf(bus)})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	head, _ := bus.Position()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		rec, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(rec.JSON())
		out.WriteByte('\n')
		if rec.Seq >= head {
			return out.Bytes()
		}
	}
}

func epochOf(bus *events.Bus) string {
	_, e := bus.Position()
	return e
}

// logBuffer is a slog destination tests read while the agent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHistorySinkBadDSNAtStart: an agent whose PostgreSQL sinks cannot
// connect (nothing listens at the address; a DSN that does not parse)
// starts and keeps running, logs one clear ERROR line per sink without
// the password, publishes one sink_error each, and keeps retrying.
func TestHistorySinkBadDSNAtStart(t *testing.T) {
	leak := testutil.CheckGoroutines(t)
	root := shortTemp(t)
	port := testutil.FreePort(t) // free: nothing listens there
	writeConf(t, root, nodeConf("n1", fmt.Sprintf(
		"[sink#down]\ntype = postgres\ndsn = postgres://agent:pw9x7secret@127.0.0.1:%d/history?connect_timeout=2\n"+
			"[sink#wrong]\ntype = postgres\ndsn = postgres://agent:pw9x7secret@127.0.0.1:notaport/history\n", port)))
	var logs logBuffer
	a, err := agent.New(agent.Options{
		Paths:         config.ResolvePaths(root, os.Geteuid(), ""),
		Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
		StatsInterval: -1,
		TuneHeartbeat: testutil.FastTimings,
		LeaveTimeout:  500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("the agent refused to start with an unreachable sink: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent run: %v", err)
			}
			_ = a.Close()
		})
	}
	t.Cleanup(stop)
	c := stream.UnixHTTPClient(a.Paths().Socket)
	errorsOf := func(body []byte, sink string) int {
		for _, l := range strings.Split(string(body), "\n") {
			var n int
			if _, err := fmt.Sscanf(l, `agent_sink_errors_total{sink="`+sink+`"} %d`, &n); err == nil {
				return n
			}
		}
		return 0
	}
	// Both sinks retry (three failed attempts each) while the agent runs.
	testutil.Eventually(t, 60*time.Second, func() bool {
		resp, err := c.Get("http://unix/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return errorsOf(body, "down") >= 3 && errorsOf(body, "wrong") >= 3
	}, "the sinks did not keep retrying")
	if _, _, d := a.Store().Local(); d.Status != monitor.StatusIdle {
		t.Fatalf("agent status %q, want idle", d.Status)
	}
	// One sink_error per sink, whatever the number of attempts.
	evs := string(eventsOf(t, a))
	sinkErrors := map[string]int{}
	for _, l := range strings.Split(evs, "\n") {
		var r struct {
			Data struct {
				ID   string `json:"id"`
				Sink string `json:"sink"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(l), &r) == nil && r.Data.ID == "sink_error" {
			sinkErrors[r.Data.Sink]++
		}
	}
	if sinkErrors["down"] != 1 || sinkErrors["wrong"] != 1 {
		t.Errorf("sink_error events by sink %v, want one each:\n%s", sinkErrors, evs)
	}
	stop()
	out := logs.String()
	if strings.Contains(out, "pw9x7secret") || strings.Contains(evs, "pw9x7secret") {
		t.Errorf("the password leaked into the log or the events:\n%s\n%s", out, evs)
	}
	for _, sink := range []string{"down", "wrong"} {
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "level=ERROR") && strings.Contains(l, "sink="+sink) {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "history sink cannot write to its database") {
			t.Errorf("sink %s: %d ERROR lines, want one clear line:\n%s", sink, len(lines), strings.Join(lines, "\n"))
		} else {
			t.Logf("%s: %s", sink, lines[0])
		}
	}
	leak()
}

// grepSink returns the agent_sink_ lines of a /metrics body.
func grepSink(body []byte) string {
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "agent_sink_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
