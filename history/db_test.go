package history

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"agent/config"
	"agent/events"
	"agent/filter"
)

func TestMigrate(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		db, err := Open(tg)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Version(ctx(t)); !errors.Is(err, ErrNoSchema) {
			t.Fatalf("Version of an empty database: %v, want ErrNoSchema", err)
		}
		if from, err := db.Migrate(ctx(t), "n1"); err != nil || from != 0 {
			t.Fatalf("first Migrate: from %d, %v", from, err)
		}
		if from, err := db.Migrate(ctx(t), "n1"); err != nil || from != SchemaVersion {
			t.Fatalf("second Migrate: from %d, %v", from, err)
		}
		if v, err := db.Version(ctx(t)); err != nil || v != SchemaVersion {
			t.Fatalf("Version: %d %v", v, err)
		}
		// A newer agent was here: refused, and nothing changed.
		if _, err := db.db.Exec(`INSERT INTO agent_schema_version (version, applied_by) VALUES (99, 'future')`); err != nil {
			t.Fatal(err)
		}
		_, err = db.Migrate(ctx(t), "n1")
		if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "version 99") || !strings.Contains(err.Error(), "upgrade the agent") {
			t.Fatalf("Migrate over a newer schema: %v", err)
		}
		if _, err := db.Version(ctx(t)); !errors.Is(err, ErrNewerSchema) {
			t.Fatalf("Version of a newer schema: %v", err)
		}
		var n int
		if err := db.db.QueryRow(`SELECT count(*) FROM agent_schema_version`).Scan(&n); err != nil || n != 2 {
			t.Fatalf("version rows: %d %v, want 2", n, err)
		}
	})
}

// TestMigrateConcurrent starts several writers on one empty database at
// once, as agents of a fleet do: the lock makes one of them create the
// schema and the others find it.
func TestMigrateConcurrent(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		var wg sync.WaitGroup
		errs := make(chan error, 5)
		for i := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db, err := Open(tg)
				if err != nil {
					errs <- err
					return
				}
				defer db.Close()
				// SQLite answers "busy" past its timeout under this
				// contention: a sink retries, so does this test.
				for try := 0; ; try++ {
					_, err = db.Migrate(ctx(t), "n"+string(rune('1'+i)))
					if err == nil || try == 20 || tg.Dialect != SQLite {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		db := openMigrated(t, tg)
		var n int
		if err := db.db.QueryRow(`SELECT count(*) FROM agent_schema_version`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("version rows: %d %v, want 1", n, err)
		}
	})
}

func TestInsertIdempotent(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		db := openMigrated(t, tg)
		o := Origin{Cluster: "c", Agent: "n1"}
		recs := []*events.Record{
			event(1, "e1", t0, "n1", "node_up", "node", "n2"),
			patch(2, "e1", t0.Add(time.Millisecond), "n1"),
			event(3, "e1", t0.Add(2*time.Millisecond), "n2", "instance_start", "svcname", "web"),
		}
		if n, err := db.Insert(ctx(t), o, recs); err != nil || n != 3 {
			t.Fatalf("Insert: %d %v, want 3", n, err)
		}
		// Again, plus one new: only the new one lands.
		more := append(recs, event(4, "e1", t0.Add(3*time.Millisecond), "n1", "node_down"))
		if n, err := db.Insert(ctx(t), o, more); err != nil || n != 1 {
			t.Fatalf("second Insert: %d %v, want 1", n, err)
		}
		// The same seqs from another agent or epoch are other records.
		if n, err := db.Insert(ctx(t), Origin{Cluster: "c", Agent: "n2"}, recs[:1]); err != nil || n != 1 {
			t.Fatalf("Insert from n2: %d %v", n, err)
		}
		if n, err := db.Insert(ctx(t), o, []*events.Record{event(1, "e2", t0.Add(time.Hour), "n1", "node_up")}); err != nil || n != 1 {
			t.Fatalf("Insert of epoch e2: %d %v", n, err)
		}
		got := all(t, db, Query{Agents: []string{"n1"}, Until: t0.Add(time.Minute)})
		if want := lines(more...); !reflect.DeepEqual(got, want) {
			t.Fatalf("rows:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// Columns for SQL users.
		var id, kind, node string
		var data string
		q := `SELECT event_id, kind, nodename, data FROM agent_records WHERE agent = 'n1' AND seq = 3 AND epoch = 'e1'`
		if tg.Dialect == Postgres {
			q = `SELECT event_id, kind, nodename, data->>'svcname' FROM agent_records WHERE agent = 'n1' AND seq = 3 AND epoch = 'e1'`
		}
		if err := db.db.QueryRow(q).Scan(&id, &kind, &node, &data); err != nil {
			t.Fatal(err)
		}
		if id != "instance_start" || kind != "event" || node != "n2" || !strings.Contains(data, "web") {
			t.Fatalf("columns: %q %q %q %q", id, kind, node, data)
		}
		var nullID int
		if err := db.db.QueryRow(`SELECT count(*) FROM agent_records WHERE kind = 'patch' AND event_id IS NULL`).Scan(&nullID); err != nil || nullID != 1 {
			t.Fatalf("patch rows with a NULL event_id: %d %v", nullID, err)
		}
	})
}

// TestInsertOddData keeps records whose data jsonb cannot hold as they
// are in raw: a NUL escape, invalid UTF-8, a number too big for numeric.
func TestInsertOddData(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		db := openMigrated(t, tg)
		recs := []*events.Record{
			events.NewRecord(1, "e", t0, "n1", "event", []byte(`{"id":"x","s":"a\u0000b","t":"\\u0000"}`)),
			events.NewRecord(2, "e", t0, "n1", "event", []byte("{\"id\":\"y\",\"s\":\"\xff\xfe\"}")),
			events.NewRecord(3, "e", t0, "n1", "event", []byte(`{"id":"z","n":1e1000000}`)),
			events.NewRecord(4, "e", t0, "n1", "event", []byte(`{"id":"ok"}`)),
		}
		if n, err := db.Insert(ctx(t), Origin{"c", "n1"}, recs); err != nil || n != 4 {
			t.Fatalf("Insert: %d %v", n, err)
		}
		got := all(t, db, Query{})
		if want := lines(recs...); !reflect.DeepEqual(got, want) {
			t.Fatalf("raw changed:\n%q\nwant\n%q", got, want)
		}
	})
}

func TestQuery(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		db := openMigrated(t, tg)
		// Two agents, records a second apart, interleaved in time.
		var n1, n2 []*events.Record
		for i := range 50 {
			at := t0.Add(time.Duration(i) * time.Second)
			id := []string{"node_up", "node_down", "instance_start"}[i%3]
			if i%2 == 0 {
				r := event(uint64(len(n1)+1), "a", at, "n1", id, "node", "n"+string(rune('0'+i%5)))
				if i%10 == 0 {
					r = patch(uint64(len(n1)+1), "a", at, "n1")
				}
				n1 = append(n1, r)
			} else {
				n2 = append(n2, event(uint64(len(n2)+1), "b", at, "n2", id, "node", "n"+string(rune('0'+i%5))))
			}
		}
		if _, err := db.Insert(ctx(t), Origin{"c", "n1"}, n1); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Insert(ctx(t), Origin{"c", "n2"}, n2); err != nil {
			t.Fatal(err)
		}
		every := mergeByTime(n1, n2)
		pick := func(keep func(r *events.Record) bool) []string {
			var out []string
			for _, r := range every {
				if keep(r) {
					out = append(out, string(r.JSON()))
				}
			}
			return out
		}
		f, err := filter.Parse("data.node=n3")
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			q    Query
			want []string
		}{
			{"all", Query{}, pick(func(*events.Record) bool { return true })},
			{"agent", Query{Agents: []string{"n2"}}, lines(n2...)},
			{"node", Query{Nodes: []string{"n1"}}, lines(n1...)},
			{"kind patch", Query{Kinds: []string{"patch"}}, pick(func(r *events.Record) bool { return r.Kind == "patch" })},
			{"event", Query{Events: []string{"node_down", "node_up"}}, pick(func(r *events.Record) bool {
				id := eventID(r)
				return id == "node_down" || id == "node_up"
			})},
			{"time range", Query{Since: t0.Add(10 * time.Second), Until: t0.Add(20 * time.Second)}, pick(func(r *events.Record) bool {
				return !r.Time.Before(t0.Add(10*time.Second)) && r.Time.Before(t0.Add(20*time.Second))
			})},
			{"filter", Query{Filter: filter.Any{f}}, pick(func(r *events.Record) bool { return strings.Contains(string(r.Data), `"node":"n3"`) })},
			{"limit keeps the newest", Query{Limit: 5}, pick(func(*events.Record) bool { return true })[45:]},
			{"limit with filter", Query{Limit: 3, Filter: filter.Any{f}}, lastN(pick(func(r *events.Record) bool {
				return strings.Contains(string(r.Data), `"node":"n3"`)
			}), 3)},
			{"limit beyond", Query{Limit: 500, Agents: []string{"n1"}}, lines(n1...)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := all(t, db, tt.q)
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %d records:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n"), len(tt.want), strings.Join(tt.want, "\n"))
				}
			})
		}
		// Paging: pages of 7, newest page first, cover everything once.
		var pages []string
		var before *Key
		for range 20 {
			var page []Row
			if _, err := db.Query(ctx(t), Query{Limit: 7, Before: before}, func(r Row) error {
				page = append(page, r)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			var raws []string
			for _, r := range page {
				raws = append(raws, string(r.Raw))
			}
			pages = append(raws, pages...)
			k, err := ParseKey(page[0].Key.String())
			if err != nil || k != page[0].Key {
				t.Fatalf("key round trip: %+v %v, want %+v", k, err, page[0].Key)
			}
			before = &k
		}
		if want := pick(func(*events.Record) bool { return true }); !reflect.DeepEqual(pages, want) {
			t.Fatalf("pages:\n%s\nwant\n%s", strings.Join(pages, "\n"), strings.Join(want, "\n"))
		}
	})
}

func lastN(s []string, n int) []string { return s[max(0, len(s)-n):] }

// mergeByTime orders records as queries do: time, then agent (n1 < n2).
func mergeByTime(a, b []*events.Record) []*events.Record {
	var out []*events.Record
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && !b[0].Time.Before(a[0].Time)) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

func TestTimeline(t *testing.T) {
	eachDialect(t, func(t *testing.T, tg Target) {
		db := openMigrated(t, tg)
		var recs []*events.Record
		for i := range 10 {
			at := t0.Add(time.Duration(i) * 20 * time.Second) // 3 per minute
			id := "node_up"
			if i%2 == 1 {
				id = "node_down"
			}
			recs = append(recs, event(uint64(i+1), "e", at, "n1", id, "i", i))
		}
		recs = append(recs, patch(11, "e", t0.Add(5*time.Second), "n1"))
		if _, err := db.Insert(ctx(t), Origin{"c", "n1"}, recs); err != nil {
			t.Fatal(err)
		}
		got, trunc, err := db.Timeline(ctx(t), Query{Since: t0, Until: t0.Add(time.Hour)}, time.Minute)
		if err != nil || trunc {
			t.Fatal(err, trunc)
		}
		want := []Bucket{
			{t0, "node_down", 1}, {t0, "node_up", 2}, {t0, "patch", 1},
			{t0.Add(time.Minute), "node_down", 2}, {t0.Add(time.Minute), "node_up", 1},
			{t0.Add(2 * time.Minute), "node_down", 1}, {t0.Add(2 * time.Minute), "node_up", 2},
			{t0.Add(3 * time.Minute), "node_down", 1},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("timeline:\n%v\nwant\n%v", got, want)
		}
		f, _ := filter.Parse("data.i>=6")
		got, _, err = db.Timeline(ctx(t), Query{Since: t0, Until: t0.Add(time.Hour), Filter: filter.Any{f}}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		want = []Bucket{{t0.Add(2 * time.Minute), "node_down", 1}, {t0.Add(2 * time.Minute), "node_up", 2}, {t0.Add(3 * time.Minute), "node_down", 1}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("filtered timeline:\n%v\nwant\n%v", got, want)
		}
	})
}

func TestOpenReader(t *testing.T) {
	dir := t.TempDir()
	tg := Target{Dialect: SQLite, Path: filepath.Join(dir, "none.db"), Name: "x"}
	if _, err := OpenReader(tg); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("OpenReader of a missing file: %v", err)
	}
	if _, err := os.Stat(tg.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("OpenReader created the file")
	}
	w := openMigrated(t, tg)
	if _, err := w.Insert(ctx(t), Origin{"c", "n1"}, []*events.Record{event(1, "e", t0, "n1", "x")}); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(tg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := all(t, r, Query{}); len(got) != 1 {
		t.Fatalf("reader sees %d rows", len(got))
	}
	if _, err := r.Insert(ctx(t), Origin{"c", "n1"}, []*events.Record{event(2, "e", t0, "n1", "x")}); err == nil {
		t.Fatal("a reader wrote")
	}
	// A database file without the schema says so.
	empty := Target{Dialect: SQLite, Path: filepath.Join(dir, "empty.db"), Name: "[sink#h] sqlite empty.db"}
	e, err := Open(empty)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	er, err := OpenReader(empty)
	if err != nil {
		t.Fatal(err)
	}
	defer er.Close()
	_, err = er.Query(ctx(t), Query{}, func(Row) error { return nil })
	if !errors.Is(err, ErrNoSchema) || !strings.Contains(err.Error(), "an agent running with this sink creates it") {
		t.Fatalf("query without schema: %v", err)
	}
}

func TestTargetOfSecrets(t *testing.T) {
	dir := t.TempDir()
	dsn := filepath.Join(dir, "pg.dsn")
	if err := os.WriteFile(dsn, []byte("postgres://u:p@127.0.0.1/db\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	s := config.Sink{Name: "pg", Type: "postgres", DSNFile: dsn}
	if _, err := TargetOf(s, dir, ""); err == nil || !strings.Contains(err.Error(), "mode 0640") || !strings.Contains(err.Error(), "chmod go-r") {
		t.Fatalf("loose dsn_file: %v", err)
	}
	if err := os.Chmod(dsn, 0o600); err != nil {
		t.Fatal(err)
	}
	tg, err := TargetOf(s, dir, "")
	if err != nil || tg.DSN != "postgres://u:p@127.0.0.1/db" || strings.Contains(tg.Name, "p@") {
		t.Fatalf("TargetOf: %+v %v", tg, err)
	}
	conf := filepath.Join(dir, "node.conf")
	if err := os.WriteFile(conf, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	inline := config.Sink{Name: "pg", Type: "postgres", DSN: "postgres://u:p@h/db"}
	if _, err := TargetOf(inline, dir, conf); err == nil || !strings.Contains(err.Error(), conf) {
		t.Fatalf("dsn in a readable node.conf: %v", err)
	}
	sq := config.Sink{Name: "h", Type: "sqlite", Path: "h.db"}
	if tg, err := TargetOf(sq, dir, conf); err != nil || tg.Path != filepath.Join(dir, "h.db") {
		t.Fatalf("sqlite target: %+v %v", tg, err)
	}
}
