package history

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"agent/config"
	"agent/events"
	"agent/internal/testutil"
)

const wait = 30 * time.Second // bounds waits on conditions; not a speed check

// fakeSource feeds a sink from a channel and records Done.
type fakeSource struct {
	ch   chan *events.Record
	mu   sync.Mutex
	done uint64
}

func newFakeSource() *fakeSource { return &fakeSource{ch: make(chan *events.Record, 100000)} }

func (f *fakeSource) Next(ctx context.Context) (*events.Record, error) {
	select {
	case r := <-f.ch:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeSource) Done(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq < f.done {
		panic("Done went back")
	}
	f.done = seq
}

func (f *fakeSource) Pass(seq uint64) { f.Done(seq) }

func (f *fakeSource) Position() uint64 { return f.doneSeq() }

func (f *fakeSource) doneSeq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

// published collects the events a sink publishes.
type published struct {
	mu  sync.Mutex
	evs []string
}

func (p *published) add(data json.RawMessage) {
	p.mu.Lock()
	p.evs = append(p.evs, string(data))
	p.mu.Unlock()
}

func (p *published) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.evs {
		out = append(out, gjson.Get(e, "id").String())
	}
	return out
}

type sinkRig struct {
	t    *testing.T
	sink *Sink
	src  *fakeSource
	pub  *published
	db   *DB // a second connection, for checks
	stop func()
}

func startSink(t *testing.T, tg Target, sc config.Sink, tune func(*SinkConfig)) *sinkRig {
	t.Helper()
	check := testutil.CheckGoroutines(t)
	r := &sinkRig{t: t, src: newFakeSource(), pub: &published{}}
	cfg := SinkConfig{
		Sink:       sc,
		Resolve:    func() (Target, error) { return tg, nil },
		Origin:     Origin{Cluster: "c", Agent: "n1"},
		Source:     r.src,
		Publish:    r.pub.add,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	s, err := NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.sink = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		r.stop = func() {}
	}
	t.Cleanup(func() { r.stop(); check() })
	return r
}

// reader opens a connection of its own once the sink made the schema.
func (r *sinkRig) reader(tg Target) *DB {
	r.t.Helper()
	if r.db != nil {
		return r.db
	}
	testutil.Eventually(r.t, wait, func() bool { return r.sink.Stats().Up }, "sink never connected")
	db, err := OpenReader(tg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { db.Close() })
	r.db = db
	return db
}

func (r *sinkRig) count(tg Target) int {
	r.t.Helper()
	var n int
	if err := r.reader(tg).db.QueryRow(`SELECT count(*) FROM agent_records`).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

func sinkConf(mod func(*config.Sink)) config.Sink {
	s := config.DefaultSink("h")
	s.Kinds = []string{"event", "patch"}
	if mod != nil {
		mod(&s)
	}
	return s
}

func TestSinkBatches(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		r := startSink(t, tg, sinkConf(func(s *config.Sink) {
			s.Batch = 10
			s.Flush = time.Hour
			s.Priority = []string{"node_down"}
		}), nil)
		for i := 1; i <= 25; i++ {
			r.src.ch <- event(uint64(i), "e", t0.Add(time.Duration(i)*time.Millisecond), "n1", "node_up")
		}
		testutil.Eventually(t, wait, func() bool { return r.src.doneSeq() == 20 }, "two batches of 10 not done: %v", func() any { return r.src.doneSeq() })
		if n := r.count(tg); n != 20 {
			t.Fatalf("%d rows after two full batches, want 20 (5 wait for flush)", n)
		}
		// A priority event is written at once, with what waits before it.
		r.src.ch <- event(26, "e", t0.Add(time.Second), "n1", "node_down")
		testutil.Eventually(t, wait, func() bool { return r.src.doneSeq() == 26 }, "priority event not written")
		if n := r.count(tg); n != 26 {
			t.Fatalf("%d rows after the priority event, want 26", n)
		}
		st := r.sink.Stats()
		if st.Written != 26 || st.Batches != 3 || st.BatchRecords != 26 || st.Errors != 0 || !st.Up || st.LagSeconds != 0 {
			t.Fatalf("stats: %+v", st)
		}
	})
}

func TestSinkFlushAndSelection(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		r := startSink(t, tg, sinkConf(func(s *config.Sink) {
			s.Kinds = []string{"event"}
			s.Events = []string{"instance_start", "node_up"}
			s.Filter = "not data.svcname=skip"
			s.Flush = 20 * time.Millisecond
		}), nil)
		r.src.ch <- event(1, "e", t0, "n1", "instance_start", "svcname", "web")
		r.src.ch <- patch(2, "e", t0, "n1")                                      // not a kind it writes
		r.src.ch <- event(3, "e", t0, "n1", "node_down")                         // not an id it writes
		r.src.ch <- event(4, "e", t0, "n1", "instance_start", "svcname", "skip") // filtered out
		r.src.ch <- event(5, "e", t0, "n1", "node_up")
		r.src.ch <- patch(6, "e", t0, "n1")
		testutil.Eventually(t, wait, func() bool { return r.src.doneSeq() == 6 }, "not done: %v", func() any { return r.src.doneSeq() })
		got := all(t, r.reader(tg), Query{})
		if len(got) != 2 || gjson.Get(got[0], "seq").Int() != 1 || gjson.Get(got[1], "seq").Int() != 5 {
			t.Fatalf("rows: %v", got)
		}
	})
}

// TestSinkRewrite is a restart after a crash: the cursor was behind what
// was committed, so records come again; each lands once.
func TestSinkRewrite(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		db := openMigrated(t, tg)
		var recs []*events.Record
		for i := 1; i <= 30; i++ {
			recs = append(recs, event(uint64(i), "e", t0, "n1", "node_up"))
		}
		if _, err := db.Insert(ctx(t), Origin{"c", "n1"}, recs[:20]); err != nil {
			t.Fatal(err)
		}
		r := startSink(t, tg, sinkConf(func(s *config.Sink) { s.Flush = 10 * time.Millisecond }), nil)
		for _, rec := range recs[10:] {
			r.src.ch <- rec
		}
		testutil.Eventually(t, wait, func() bool { return r.src.doneSeq() == 30 }, "not done")
		if n := r.count(tg); n != 30 {
			t.Fatalf("%d rows, want 30", n)
		}
		if st := r.sink.Stats(); st.Written != 10 || st.Duplicates != 10 {
			t.Fatalf("written %d duplicates %d, want 10 and 10", st.Written, st.Duplicates)
		}
	})
}

// TestSinkPostgresOutage stops the server under a writing sink: the sink
// reports the outage once, keeps the records, and writes them all once
// the server is back.
func TestSinkPostgresOutage(t *testing.T) {
	srv := sharedPG(t)
	tg := Target{Dialect: Postgres, DSN: srv.MustCreateDB(t), Name: "test postgres"}
	t.Cleanup(func() {
		if err := srv.Start(); err != nil {
			t.Error(err)
		}
	})
	r := startSink(t, tg, sinkConf(func(s *config.Sink) { s.Flush = 10 * time.Millisecond; s.Batch = 50 }), nil)
	seq := uint64(0)
	feed := func(n int) {
		for range n {
			seq++
			r.src.ch <- event(seq, "e", t0.Add(time.Duration(seq)*time.Millisecond), "n1", "node_up")
		}
	}
	feed(100)
	testutil.Eventually(t, wait, func() bool { return r.src.doneSeq() == 100 }, "first records not done")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	feed(300)
	testutil.Eventually(t, wait, func() bool { return r.sink.Stats().Errors >= 3 }, "no failed attempts while the server is down")
	if d := r.src.doneSeq(); d != 100 {
		t.Fatalf("done %d while the database is down, want 100", d)
	}
	if st := r.sink.Stats(); st.Up || st.LagSeconds <= 0 {
		t.Fatalf("stats during the outage: %+v", st)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, func() bool { return r.src.doneSeq() == 400 }, "records not written after the outage: done %v", func() any { return r.src.doneSeq() })
	if n := r.count(tg); n != 400 {
		t.Fatalf("%d rows, want 400", n)
	}
	ids := r.pub.ids()
	if strings.Join(ids, ",") != "sink_error,sink_recovered" {
		t.Fatalf("published %v, want one sink_error then one sink_recovered", ids)
	}
	if !strings.Contains(r.pub.evs[0], `"sink":"h"`) || gjson.Get(r.pub.evs[0], "error").String() == "" {
		t.Fatalf("sink_error: %s", r.pub.evs[0])
	}
	if strings.Contains(r.pub.evs[0], srv.Password) {
		t.Fatalf("sink_error shows the password: %s", r.pub.evs[0])
	}
}

// TestSinkSQLiteLocked holds the SQLite database locked by another writer
// past the sink's busy timeout: an outage to the sink, like a server down.
func TestSinkSQLiteLocked(t *testing.T) {
	tg := sqliteTarget(t)
	r := startSink(t, tg, sinkConf(func(s *config.Sink) { s.Flush = 10 * time.Millisecond }), nil)
	r.src.ch <- event(1, "e", t0, "n1", "node_up")
	testutil.Eventually(t, wait, func() bool { return r.src.doneSeq() == 1 }, "first record not done")
	other, err := sql.Open("sqlite", "file:"+tg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	for i := uint64(2); i <= 50; i++ {
		r.src.ch <- event(i, "e", t0, "n1", "node_up")
	}
	testutil.Eventually(t, wait, func() bool { return r.sink.Stats().Errors >= 1 }, "the lock caused no failure")
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, func() bool { return r.src.doneSeq() == 50 }, "records not written after the lock")
	if n := r.count(tg); n != 50 {
		t.Fatalf("%d rows, want 50", n)
	}
	if ids := strings.Join(r.pub.ids(), ","); ids != "sink_error,sink_recovered" {
		t.Fatalf("published %s", ids)
	}
}

// TestSinkUnreachableAtStart starts against a server that is not there:
// one error event, the records wait, and nothing is lost once it is.
func TestSinkUnreachableAtStart(t *testing.T) {
	tg := sqliteTarget(t)
	var mu sync.Mutex
	broken := true
	r := startSink(t, tg, sinkConf(func(s *config.Sink) { s.Flush = 10 * time.Millisecond }), func(c *SinkConfig) {
		c.Resolve = func() (Target, error) {
			mu.Lock()
			defer mu.Unlock()
			if broken {
				return Target{}, errors.New("dsn_file /etc/agent/pg.dsn: permission denied")
			}
			return tg, nil
		}
	})
	for i := uint64(1); i <= 5; i++ {
		r.src.ch <- event(i, "e", t0, "n1", "node_up")
	}
	testutil.Eventually(t, wait, func() bool { return r.sink.Stats().Errors >= 3 }, "no retries")
	mu.Lock()
	broken = false
	mu.Unlock()
	testutil.Eventually(t, wait, func() bool { return r.src.doneSeq() == 5 }, "records not written once the database is there")
	if ids := strings.Join(r.pub.ids(), ","); ids != "sink_error,sink_recovered" {
		t.Fatalf("published %s", ids)
	}
}

func TestSinkNewerSchema(t *testing.T) {
	tg := sqliteTarget(t)
	db := openMigrated(t, tg)
	if _, err := db.db.Exec(`INSERT INTO agent_schema_version (version, applied_by) VALUES (7, 'future')`); err != nil {
		t.Fatal(err)
	}
	r := startSink(t, tg, sinkConf(nil), nil)
	testutil.Eventually(t, wait, func() bool { return len(r.pub.ids()) == 1 }, "no sink_error")
	if e := r.pub.evs[0]; !strings.Contains(e, "version 7") || !strings.Contains(e, "upgrade the agent") {
		t.Fatalf("sink_error: %s", e)
	}
}

func TestSinkReportLoss(t *testing.T) {
	r := startSink(t, sqliteTarget(t), sinkConf(nil), nil)
	r.sink.ReportLoss("retention", 42, true, "")
	if r.sink.Stats().Skipped != 42 {
		t.Fatal("loss not counted")
	}
	if e := r.pub.evs[0]; e != `{"count":42,"id":"sink_skipped","reason":"retention","sink":"h"}` {
		t.Fatalf("sink_skipped: %s", e)
	}
}

func TestSinkRetention(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		db := openMigrated(t, tg)
		now := time.Now().UTC()
		old := now.Add(-100 * 24 * time.Hour)
		var mine []*events.Record
		for i := 1; i <= 30; i++ {
			mine = append(mine, event(uint64(i), "e", old, "n1", "node_up"))
		}
		mine = append(mine, event(31, "e", now, "n1", "node_up"))
		if _, err := db.Insert(ctx(t), Origin{"c", "n1"}, mine); err != nil {
			t.Fatal(err)
		}
		// Another agent's old rows, and this node's name in another cluster.
		if _, err := db.Insert(ctx(t), Origin{"c", "n2"}, mine[:5]); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Insert(ctx(t), Origin{"other", "n1"}, mine[:5]); err != nil {
			t.Fatal(err)
		}
		r := startSink(t, tg, sinkConf(func(s *config.Sink) { s.Retention = 90 * 24 * time.Hour }), func(c *SinkConfig) {
			c.RetentionEvery = 10 * time.Millisecond
		})
		testutil.Eventually(t, wait, func() bool { return r.sink.Stats().Deleted == 30 }, "old rows not deleted: %v", func() any { return r.sink.Stats().Deleted })
		if n := r.count(tg); n != 11 {
			t.Fatalf("%d rows left, want 11 (1 recent + 10 of others)", n)
		}
	})
}
