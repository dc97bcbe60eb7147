package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"agent/events"
	"agent/history"
	"agent/internal/pgtest"
)

// The history section measures the sinks and the history query:
//
//   - the sink alone: records published on a bus (kinds event and patch,
//     as the agent makes them), read by the sink's durable consumer and
//     written with batch = 1000, into PostgreSQL and SQLite: rows/s;
//   - a priority event published → its row visible to another connection;
//   - `agent history --event X --since 1h --limit 100` over 1,000,000
//     rows, timed inside the command (--timing: from the command's start,
//     process start-up excluded) and through GET /v1/history of a running
//     agent.
//
// PostgreSQL is a throwaway server (internal/pgtest: Debian's postgresql,
// initdb as the postgres user, fsync on); without root the PostgreSQL rows
// say why they were not measured.

// queryRows is the size of the table the query is timed over.
const queryRows = 1_000_000

func (b *bench) historyRows(dir string) {
	var srv *pgtest.Server
	pgErr := pgtest.Available()
	if pgErr == nil {
		b.logf("history: starting PostgreSQL")
		srv, pgErr = pgtest.New(pgtest.Options{Durable: true})
	}
	if srv != nil {
		defer srv.Close()
	}
	pgTarget := func() (history.Target, error) {
		if pgErr != nil {
			return history.Target{}, pgErr
		}
		dsn, err := srv.CreateDB()
		return history.Target{Dialect: history.Postgres, DSN: dsn, Name: "bench postgres"}, err
	}
	sqliteTarget := func(name string) func() (history.Target, error) {
		return func() (history.Target, error) {
			return history.Target{Dialect: history.SQLite, Path: filepath.Join(dir, name), Name: "bench sqlite"}, nil
		}
	}
	b.sinkThroughputRow("PostgreSQL", pgTarget, true)
	b.sinkThroughputRow("SQLite", sqliteTarget("throughput.db"), false)
	b.priorityRow("PostgreSQL", pgTarget, true)
	b.priorityRow("SQLite", sqliteTarget("priority.db"), false)
	b.queryRow(dir, "PostgreSQL", pgTarget)
	b.queryRow(dir, "SQLite", sqliteTarget("query.db"))
}

// beginRow begins the history row what, of goal: it returns the row's
// target and fail, which adds the row as not measured with err as the
// reason. Where there is no target it has failed the row already, and
// ready is false.
func (b *bench) beginRow(what, goal string, target func() (history.Target, error)) (t history.Target, fail func(err error), ready bool) {
	fail = func(err error) { b.add(what, "not measured: "+err.Error(), goal, nil) }
	t, err := target()
	if err != nil {
		fail(err)
		return t, fail, false
	}
	return t, fail, true
}

// populate fills db with n rows of ten agents over the last 24 hours: half
// patch records, half events of twenty ids, one in twenty of them X.
func populate(ctx context.Context, db *history.DB, n int, x string, log func(string, ...any)) error {
	const agents = 10
	ids := []string{x, "instance_status_change", "instance_start", "instance_stop", "node_up", "node_freeze", "node_thaw",
		"placement_change", "service_config_change", "global_expect_change", "instance_freeze", "instance_thaw",
		"node_join", "node_leave", "peer_resync", "forget_peer", "node_config_change", "instance_start_failed",
		"quorum_lost", "quorum_regained"}
	now := time.Now().UTC()
	span := 24 * time.Hour
	per := n / agents
	batch := make([]*events.Record, 0, 10000)
	for a := range agents {
		o := history.Origin{Cluster: "bench", Agent: fmt.Sprintf("a%02d", a+1)}
		for i := range per {
			at := now.Add(-span + time.Duration(float64(span)*float64(i)/float64(per)) + time.Duration(a)*time.Millisecond)
			seq := uint64(i + 1)
			var r *events.Record
			if i%2 == 0 {
				r = events.NewRecord(seq, "bench", at, o.Agent, events.KindPatch,
					json.RawMessage(fmt.Sprintf(`[{"op":"replace","path":"/monitor/nodes/%s/stats/load_15m","value":%d.%02d},{"op":"replace","path":"/monitor/nodes/%s/gen","value":%d}]`, o.Agent, i%7, i%100, o.Agent, i)))
			} else {
				id := ids[(i/2)%len(ids)]
				r = events.NewRecord(seq, "bench", at, o.Agent, events.KindEvent,
					json.RawMessage(fmt.Sprintf(`{"id":%q,"reason":"bench","svcname":"svc%d","node":"a%02d"}`, id, i%50, (i/3)%agents+1)))
			}
			batch = append(batch, r)
			if len(batch) == cap(batch) {
				if _, err := db.Insert(ctx, o, batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			if _, err := db.Insert(ctx, o, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		log("history: %d of %d rows", (a+1)*per, n)
	}
	return nil
}

var timingRe = regexp.MustCompile(`(\d+) records in ([0-9.]+) ms \(connection ([0-9.]+) ms`)

// queryRow times the query through the command and the API of a real
// agent whose sink is the populated database.
func (b *bench) queryRow(dir, engine string, target func() (history.Target, error)) {
	what := fmt.Sprintf("`agent history --event X --since 1h --limit 100` over 1M rows, %s", engine)
	const goal = "≤ 100 ms"
	t, fail, ready := b.beginRow(what, goal, target)
	if !ready {
		return
	}
	ctx := context.Background()
	db, err := history.Open(t)
	if err != nil {
		fail(err)
		return
	}
	defer db.Close()
	if _, err := db.Migrate(ctx, "bench"); err != nil {
		fail(err)
		return
	}
	b.logf("history: %s: inserting %d rows", engine, queryRows)
	start := time.Now()
	if err := populate(ctx, db, queryRows, "node_down", b.logf); err != nil {
		fail(err)
		return
	}
	b.logf("history: %s: %d rows in %v", engine, queryRows, time.Since(start).Round(time.Second))

	root := filepath.Join(dir, "query-"+strings.ToLower(engine))
	a, err := startHistoryAgent(b.agent, root, t)
	if err != nil {
		fail(err)
		return
	}
	defer a.stop()
	samples := 30
	if b.quick {
		samples = 10
	}
	var inCmd, conn, api []time.Duration
	for range samples {
		cmd := exec.Command(b.agent, "--root", root, "history", "--event", "node_down", "--since", "1h", "--limit", "100", "-o", "json", "--timing")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			fail(fmt.Errorf("agent history: %v: %s", err, strings.TrimSpace(errb.String())))
			return
		}
		m := timingRe.FindStringSubmatch(errb.String())
		if m == nil || m[1] != "100" || bytes.Count(out.Bytes(), []byte("\n")) != 100 {
			fail(fmt.Errorf("agent history: unexpected answer: %q", errb.String()))
			return
		}
		f, _ := strconv.ParseFloat(m[2], 64)
		inCmd = append(inCmd, time.Duration(f*float64(time.Millisecond)))
		f, _ = strconv.ParseFloat(m[3], 64)
		conn = append(conn, time.Duration(f*float64(time.Millisecond)))

		t0 := time.Now()
		n, err := a.get("/v1/history?event=node_down&since=1h&limit=100")
		if err != nil || n != 100 {
			fail(fmt.Errorf("GET /v1/history: %d records, %v", n, err))
			return
		}
		api = append(api, time.Since(t0))
	}
	p50, p95 := quantile(inCmd, 0.5), quantile(inCmd, 0.95)
	b.add(what+", timed inside the command", fmt.Sprintf("p50 %s, p95 %s, max %s (%d runs; opening the connection: p50 %s)",
		ms(p50), ms(p95), ms(quantile(inCmd, 1)), len(inCmd), ms(quantile(conn, 0.5))),
		goal, ptr(p95 <= 100*time.Millisecond))
	p50, p95 = quantile(api, 0.5), quantile(api, 0.95)
	b.add(fmt.Sprintf("GET /v1/history?event=X&since=1h&limit=100 over 1M rows, %s", engine),
		fmt.Sprintf("p50 %s, p95 %s, max %s (%d requests)", ms(p50), ms(p95), ms(quantile(api, 1)), len(api)),
		goal, ptr(p95 <= 100*time.Millisecond))
}

// historyAgent is an `agent daemon run` process whose sink is a bench
// database, with a TCP listener.
type historyAgent struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

func startHistoryAgent(bin, root string, t history.Target) (*historyAgent, error) {
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o700); err != nil {
		return nil, err
	}
	sink := "[sink#h]\ntype = sqlite\npath = " + t.Path + "\n"
	if t.Dialect == history.Postgres {
		dsnFile := filepath.Join(root, "etc", "pg.dsn")
		if err := os.WriteFile(dsnFile, []byte(t.DSN+"\n"), 0o600); err != nil {
			return nil, err
		}
		sink = "[sink#h]\ntype = postgres\ndsn_file = " + dsnFile + "\n"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	conf := fmt.Sprintf("[node]\nname = bench\n[cluster]\nname = bench\n[hb]\naddr = 127.0.0.1\nport = 0\nprofile = local\n[listener]\naddr = %s\nauth = none\n%s", addr, sink)
	if err := os.WriteFile(filepath.Join(root, "etc", "node.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	a := &historyAgent{cmd: exec.Command(bin, "daemon", "run", "--root", root), addr: addr, done: make(chan error, 1)}
	logf, err := os.Create(filepath.Join(root, "agent.log"))
	if err != nil {
		return nil, err
	}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { a.done <- a.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v1/whoami")
		if err == nil {
			resp.Body.Close()
			return a, nil
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("agent not answering on %s (see %s/agent.log)", addr, root)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get fetches a history URL and counts its lines.
func (a *historyAgent) get(path string) (int, error) {
	resp, err := http.Get("http://" + a.addr + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("%s: %s", resp.Status, b)
	}
	n := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

func (a *historyAgent) stop() {
	_ = a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}
