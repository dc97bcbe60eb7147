package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"modernc.org/sqlite"               // the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"agent/config"
)

// Dialect names a database engine.
type Dialect string

// Dialects.
const (
	SQLite   Dialect = config.SinkSQLite
	Postgres Dialect = config.SinkPostgres
)

// Sentinel errors callers test with errors.Is.
var (
	// ErrNoSchema: the database exists but holds no agent_records schema.
	ErrNoSchema = errors.New("no agent history schema")
	// ErrNewerSchema: the schema was made by a newer agent.
	ErrNewerSchema = errors.New("history schema is newer than this agent knows")
	// ErrNoDatabase: the SQLite file does not exist.
	ErrNoDatabase = errors.New("no history database")
)

// Target says which database to open.
type Target struct {
	// Dialect is SQLite or Postgres.
	Dialect Dialect
	// Path is the SQLite file (absolute, or relative to the working
	// directory).
	Path string
	// DSN is the PostgreSQL connection string.
	DSN string
	// Name describes the database without secrets, for errors and logs.
	Name string
}

// TargetOf resolves a sink of node.conf into a Target: the SQLite path
// under varDir, or the DSN, read from dsn_file when the sink names one.
// Secret files are checked as SPEC section 10 asks: a dsn_file, or a
// node.conf (confPath) holding dsn, readable by group or others is refused.
func TargetOf(s config.Sink, varDir, confPath string) (Target, error) {
	t := Target{Dialect: Dialect(s.Type), Name: fmt.Sprintf("[sink#%s] %s", s.Name, s)}
	switch t.Dialect {
	case SQLite:
		t.Path = s.DBPath(varDir)
		t.Name = fmt.Sprintf("[sink#%s] sqlite %s", s.Name, t.Path)
	case Postgres:
		if s.DSNFile != "" {
			if err := config.CheckSecretFile(s.DSNFile); err != nil {
				return t, fmt.Errorf("[sink#%s] dsn_file: %w", s.Name, err)
			}
			b, err := os.ReadFile(s.DSNFile)
			if err != nil {
				return t, fmt.Errorf("[sink#%s] dsn_file: %w", s.Name, err)
			}
			t.DSN = strings.TrimSpace(string(b))
			if t.DSN == "" {
				return t, fmt.Errorf("[sink#%s] dsn_file %s is empty", s.Name, s.DSNFile)
			}
		} else {
			if confPath != "" {
				if err := config.CheckSecretFile(confPath); err != nil {
					return t, fmt.Errorf("[sink#%s] dsn: %w", s.Name, err)
				}
			}
			t.DSN = s.DSN
		}
	default:
		return t, fmt.Errorf("[sink#%s]: unknown type %q", s.Name, s.Type)
	}
	return t, nil
}

// DB is an open history database: the schema, batched inserts, queries
// and retention. It is safe for concurrent use.
type DB struct {
	target  Target
	dialect Dialect
	db      *sql.DB
}

// Open opens the database for writing: it creates the SQLite file (and
// its directory) when missing. It does not touch the schema: call Migrate.
// A PostgreSQL server that does not answer is not an error here: the first
// statement fails, and is retried by its caller.
func Open(t Target) (*DB, error) {
	return open(t, false)
}

// OpenReader opens the database for queries only. A missing SQLite file is
// ErrNoDatabase; nothing is created or locked.
func OpenReader(t Target) (*DB, error) {
	return open(t, true)
}

func open(t Target, readOnly bool) (*DB, error) {
	d := &DB{target: t, dialect: t.Dialect}
	var err error
	switch t.Dialect {
	case SQLite:
		d.db, err = openSQLite(t.Path, readOnly)
	case Postgres:
		d.db, err = openPostgres(t.DSN, readOnly)
	default:
		err = fmt.Errorf("unknown database type %q", t.Dialect)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", t.Name, err)
	}
	return d, nil
}

func openSQLite(path string, readOnly bool) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if readOnly {
		if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist: %w", abs, ErrNoDatabase)
		}
		q.Set("mode", "ro")
		q.Set("_busy_timeout", "5000")
		q.Set("_query_only", "1")
	} else {
		if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
			return nil, err
		}
		// A short busy timeout: the sink retries with backoff and reports
		// a database held locked too long as an outage.
		q.Set("_busy_timeout", "1000")
		q.Set("_journal_mode", "WAL")
		// A committed batch moves the cursor: it must survive a power loss.
		q.Set("_synchronous", "FULL")
		// Write transactions take the write lock when they begin, so two
		// writers never deadlock upgrading their locks.
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, err
	}
	if !readOnly {
		// One writer connection: SQLite has one writer at a time anyway.
		db.SetMaxOpenConns(1)
		if err := pingSQLite(db); err != nil {
			db.Close()
			return nil, err
		}
		// The file holds every record the agent wrote: not for others.
		_ = os.Chmod(abs, 0o600)
	}
	return db, nil
}

// pingSQLite opens the first connection, which sets WAL mode. Connections
// opening a new database file at the same moment can get "database is
// locked" at once there, without SQLite's busy timeout being applied: it
// is retried for about as long as that timeout.
func pingSQLite(db *sql.DB) error {
	var err error
	for try := 0; try < 20; try++ {
		if err = db.Ping(); err == nil || !sqliteBusy(err) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// sqliteBusy reports whether err is SQLite's SQLITE_BUSY (5), also in its
// extended forms (the low byte is the primary code).
func sqliteBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

func openPostgres(dsn string, readOnly bool) (*sql.DB, error) {
	if dsn == "" {
		return nil, errors.New("empty dsn")
	}
	// Parse now so that a malformed DSN is a clear error at once, not a
	// retried outage. The error of pgconn quotes the DSN: keep it out.
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return nil, errors.New("the dsn does not parse (see the PostgreSQL connection string syntax)")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	if readOnly {
		db.SetMaxOpenConns(4)
	} else {
		db.SetMaxOpenConns(2)
	}
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// Dialect is the database engine.
func (d *DB) Dialect() Dialect { return d.dialect }

// Name describes the database without secrets.
func (d *DB) Name() string { return d.target.Name }

// Close releases the connections.
func (d *DB) Close() error { return d.db.Close() }

// Ping checks that the database answers (and opens a connection).
func (d *DB) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return &oneLineError{msg: fmt.Sprintf("connect to %s: %s", d.Name(), oneLine(err.Error())), err: err}
	}
	return nil
}

// ph returns the placeholder of the n-th (1-based) argument.
func (d *DB) ph(n int) string {
	if d.dialect == Postgres {
		return fmt.Sprintf("$%d", n)
	}
	return fmt.Sprintf("?%d", n)
}
