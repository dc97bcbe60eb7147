package agent_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		return code == 200 && bytes.Contains(body, []byte(`agent_sink_up{sink="h"} 1`)) &&
			bytes.Contains(body, []byte(`agent_sink_written_total{sink="h"}`)) &&
			bytes.Contains(body, []byte(`agent_sink_lag_records{sink="h"} 0`))
	}, "sink metrics missing")

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
