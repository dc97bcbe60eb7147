package history

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"agent/events"
	"agent/internal/pgtest"
)

// One PostgreSQL server for the package's tests, started by the first test
// that needs it; each test gets a database of its own.
var (
	pgOnce sync.Once
	pgSrv  *pgtest.Server
	pgErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pgSrv != nil {
		if err := pgSrv.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
		}
	}
	os.Exit(code)
}

// sharedPG returns the package's server, or skips (fails when required).
func sharedPG(t testing.TB) *pgtest.Server {
	t.Helper()
	if err := pgtest.Available(); err != nil {
		pgtest.Unavailable(t, err.Error())
	}
	pgOnce.Do(func() { pgSrv, pgErr = pgtest.New(pgtest.Options{}) })
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}
	return pgSrv
}

func pgTarget(t testing.TB) Target {
	t.Helper()
	return Target{Dialect: Postgres, DSN: sharedPG(t).MustCreateDB(t), Name: "test postgres"}
}

func sqliteTarget(t testing.TB) Target {
	t.Helper()
	return Target{Dialect: SQLite, Path: filepath.Join(t.TempDir(), "h.db"), Name: "test sqlite"}
}

// eachDialect runs f against a fresh database of each engine.
func eachDialect(t *testing.T, f func(t *testing.T, tg Target)) {
	t.Run("sqlite", func(t *testing.T) { f(t, sqliteTarget(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, pgTarget(t)) })
}

// openMigrated opens tg for writing with the schema in place.
func openMigrated(t testing.TB, tg Target) *DB {
	t.Helper()
	db, err := Open(tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx(t), "test"); err != nil {
		t.Fatal(err)
	}
	return db
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// event makes an event record.
func event(seq uint64, epoch string, at time.Time, node, id string, fields ...any) *events.Record {
	m := map[string]any{"id": id}
	for i := 0; i+1 < len(fields); i += 2 {
		m[fields[i].(string)] = fields[i+1]
	}
	b, _ := json.Marshal(m)
	return events.NewRecord(seq, epoch, at, node, events.KindEvent, b)
}

// patch makes a patch record.
func patch(seq uint64, epoch string, at time.Time, node string) *events.Record {
	return events.NewRecord(seq, epoch, at, node, events.KindPatch,
		json.RawMessage(`[{"op":"replace","path":"/monitor/nodes/`+node+`/gen","value":`+fmt.Sprint(seq)+`}]`))
}

// all runs q and returns the raw lines.
func all(t testing.TB, db *DB, q Query) []string {
	t.Helper()
	var out []string
	if _, err := db.Query(ctx(t), q, func(r Row) error {
		out = append(out, string(r.Raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func lines(recs ...*events.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.JSON())
	}
	return out
}
