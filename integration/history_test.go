package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the test holds an agent's database locked

	"agent/internal/pgtest"
)

// historyTimeout bounds the wait for sinks to catch up.
const historyTimeout = 90 * time.Second

// sinkConf is the [sink#NAME] section of the history tests: both kinds,
// small batches so that many transactions happen, node_down at once.
func sinkConf(name, typ, where string) string {
	s := fmt.Sprintf("[sink#%s]\ntype = %s\nkinds = event,patch\nbatch = 50\nflush = 100ms\npriority = node_down\n", name, typ)
	if typ == "postgres" {
		return s + "dsn_file = " + where + "\n"
	}
	return s + "path = " + where + "\n"
}

// journalLines returns the patch and event lines of n's journal, by
// epoch, as agent events -o json prints them.
func (n *node) journalLines(extra ...string) map[string][]string {
	n.c.t.Helper()
	args := append([]string{"events", "--since", "0", "-o", "json", "--duration", "3s"}, extra...)
	out := n.mustCLI(args...)
	byEpoch := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		var r struct {
			Kind  string `json:"kind"`
			Epoch string `json:"epoch"`
		}
		if line == "" || json.Unmarshal([]byte(line), &r) != nil || (r.Kind != "event" && r.Kind != "patch") {
			continue
		}
		byEpoch[r.Epoch] = append(byEpoch[r.Epoch], line)
	}
	return byEpoch
}

// historyLines runs agent history on n and returns its lines by epoch.
func (n *node) historyLines(args ...string) (map[string][]string, error) {
	out, errs, code, err := n.run(append([]string{"history", "-o", "json"}, args...)...)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("agent history %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(errs))
	}
	byEpoch := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		var r struct {
			Epoch string `json:"epoch"`
		}
		if line == "" || json.Unmarshal([]byte(line), &r) != nil {
			continue
		}
		byEpoch[r.Epoch] = append(byEpoch[r.Epoch], line)
	}
	return byEpoch, nil
}

// activity freezes and thaws the nodes in turn until the function it
// returns is called (at the latest in t.Cleanup): events and patches on
// every node.
func activity(t *testing.T, c *cluster) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			n := c.nodes[i%len(c.nodes)]
			if !n.running() {
				continue
			}
			action := "freeze"
			if (i/len(c.nodes))%2 == 1 {
				action = "thaw"
			}
			// Errors are expected while a node is killed: not checked.
			_, _, _, _ = n.run("node", action)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// checkHistory waits until, for every node, the history holds exactly the
// records of its journal (same lines, per epoch), and gives the same
// records as agent events for a filter. query runs agent history for
// node n's records. Both sides are read again until they agree: the
// journal is read for a bounded time (a loaded machine may cut it short)
// and the sinks may still be writing the last records.
func checkHistory(t *testing.T, c *cluster, query func(n *node, args ...string) (map[string][]string, error)) {
	t.Helper()
	const f = "data.id=node_freeze or data.id~^sink_"
	for _, n := range c.nodes {
		for _, extra := range [][]string{nil, {"--filter", f}} {
			deadline := time.Now().Add(historyTimeout)
			for {
				want := n.journalLines(extra...)
				got, err := query(n, append([]string{"--agent", n.name, "--kind", "event,patch"}, extra...)...)
				why := fmt.Sprint(err)
				if err == nil {
					if why = sameEpochs(got, want); why == "" {
						if extra == nil {
							t.Logf("%s: %d records in the history, as in its journal", n.name, count(want))
						}
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: agent history %v never matched agent events: %s", n.name, extra, why)
				}
				time.Sleep(300 * time.Millisecond)
			}
		}
	}
}

func count(m map[string][]string) int {
	n := 0
	for _, l := range m {
		n += len(l)
	}
	return n
}

// sameEpochs says how got differs from want ("" when equal): for each epoch
// of the journal the history holds the same lines in the same order (the
// history may hold older epochs the journal has dropped).
func sameEpochs(got, want map[string][]string) string {
	for e, w := range want {
		g := got[e]
		if slices.Equal(g, w) {
			continue
		}
		missing, extra := 0, 0
		gs := map[string]bool{}
		for _, l := range g {
			gs[l] = true
		}
		ws := map[string]bool{}
		for _, l := range w {
			ws[l] = true
			if !gs[l] {
				missing++
			}
		}
		for _, l := range g {
			if !ws[l] {
				extra++
			}
		}
		return fmt.Sprintf("epoch %s: journal %d records, history %d (%d missing, %d not in the journal)", e, len(w), len(g), missing, extra)
	}
	return ""
}

// sinkEvents counts the sink_error and sink_recovered events of n's
// journal for sink.
func sinkEvents(n *node, sink string) (errs, recovered int) {
	for _, lines := range n.journalLines("--kind", "event", "--filter", "data.id~^sink_ and data.sink="+sink) {
		for _, l := range lines {
			switch {
			case strings.Contains(l, `"id":"sink_error"`):
				errs++
			case strings.Contains(l, `"id":"sink_recovered"`):
				recovered++
			}
		}
	}
	return errs, recovered
}

// waitOneOutage waits until every node's journal holds one sink_error and
// one sink_recovered of sink: one outage, reported once.
func waitOneOutage(t *testing.T, c *cluster, sink string) {
	t.Helper()
	for _, n := range c.nodes {
		deadline := time.Now().Add(historyTimeout)
		for {
			e, r := sinkEvents(n, sink)
			if e == 1 && r == 1 {
				break
			}
			if e > 1 || r > 1 || time.Now().After(deadline) {
				t.Fatalf("%s: %d sink_error and %d sink_recovered events, want 1 and 1 for one outage", n.name, e, r)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// TestHistoryPostgresExactlyOnce runs three agents writing to one
// PostgreSQL while the server is stopped for a few seconds and one agent is
// killed (SIGKILL) and restarted: afterwards every record of every journal
// is in the table once, byte for byte, and agent history answers what
// agent events does.
func TestHistoryPostgresExactlyOnce(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t, pgtest.Options{})
	dsn, err := srv.CreateDB()
	if err != nil {
		t.Fatal(err)
	}
	// The DSN file sits apart from the agents' roots and PostgreSQL's files.
	dsnFile := filepath.Join(t.TempDir(), "pg.dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, clusterOpts{Nodes: 3, Extra: func(*node) string { return sinkConf("pg", "postgres", dsnFile) }})
	c.waitConverged()

	stopActivity := activity(t, c)
	time.Sleep(2 * time.Second)

	// An outage of a few seconds under load.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitOneOutage(t, c, "pg")

	// A kill -9 under load, and a restart.
	time.Sleep(time.Second)
	n3 := c.node(3)
	n3.signal(syscall.SIGKILL)
	n3.wait()
	time.Sleep(time.Second)
	n3.restart()
	time.Sleep(2 * time.Second)
	stopActivity()

	// Every node reads the shared table.
	checkHistory(t, c, func(n *node, args ...string) (map[string][]string, error) {
		return c.node(1).historyLines(args...)
	})
	rows, err := srv.Psql(dbName(dsn), "SELECT count(*) FROM agent_records")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s rows in agent_records", rows)
}

// dbName is the database of a pgtest DSN.
func dbName(dsn string) string {
	rest := dsn[strings.LastIndexByte(dsn, '/')+1:]
	name, _, _ := strings.Cut(rest, "?")
	return name
}

// TestHistorySQLiteExactlyOnce is the same with each agent's own SQLite
// database, held locked by another process for a few seconds (an outage to
// the sink), and one agent killed and restarted.
func TestHistorySQLiteExactlyOnce(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 3, Extra: func(*node) string { return sinkConf("h", "sqlite", "history.db") }})
	c.waitConverged()
	stopActivity := activity(t, c)
	time.Sleep(2 * time.Second)

	// Lock every database past the sinks' busy timeout.
	var conns []*sql.Conn
	for _, n := range c.nodes {
		path := filepath.Join(n.root, "var", "history.db")
		db, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=10000")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
			t.Fatalf("%s: lock %s: %v", n.name, path, err)
		}
		conns = append(conns, conn)
	}
	time.Sleep(4 * time.Second)
	for _, conn := range conns {
		if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	waitOneOutage(t, c, "h")

	time.Sleep(time.Second)
	n2 := c.node(2)
	n2.signal(syscall.SIGKILL)
	n2.wait()
	time.Sleep(time.Second)
	n2.restart()
	time.Sleep(2 * time.Second)
	stopActivity()

	// Each node's own database, read while its agent runs (and once with
	// n1 stopped: agent history needs no agent).
	checkHistory(t, c, func(n *node, args ...string) (map[string][]string, error) { return n.historyLines(args...) })
	n1 := c.node(1)
	want, err := n1.historyLines("--kind", "event,patch")
	if err != nil {
		t.Fatal(err)
	}
	n1.stop()
	got, err := n1.historyLines("--kind", "event,patch")
	if err != nil {
		t.Fatalf("agent history with the agent stopped: %v", err)
	}
	// The stop itself wrote a few more records (status shutting down).
	for e, w := range want {
		if g := got[e]; len(g) < len(w) || !slices.Equal(g[:len(w)], w) {
			t.Fatalf("agent history with the agent stopped: epoch %s has %d records, not the %d seen before the stop", e, len(g), len(w))
		}
	}
}
