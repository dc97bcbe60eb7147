package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sink types of [sink#NAME] type.
const (
	SinkSQLite   = "sqlite"
	SinkPostgres = "postgres"
)

// Defaults of [sink#NAME].
const (
	// DefaultSinkBatch is the most records one transaction writes.
	DefaultSinkBatch = 1000
	// DefaultSinkFlush is the longest a record waits for its batch.
	DefaultSinkFlush = time.Second
	// MaxSinkBatch bounds batch: a PostgreSQL statement takes at most 65535
	// parameters, and a bigger transaction only delays the cursor.
	MaxSinkBatch = 10000
)

// Sink is one [sink#NAME] section: a history database the agent writes
// its records to (SPEC section 11).
type Sink struct {
	// Name is NAME from the section header.
	Name string
	// Type is sqlite (the default) or postgres.
	Type string
	// Path is the SQLite database file (key path), relative to the var
	// directory unless absolute; default NAME.db.
	Path string
	// DSN is the PostgreSQL connection string given inline (key dsn); a
	// node.conf holding one must not be readable by group or others.
	DSN string `json:"-"`
	// DSNFile is a file holding the PostgreSQL connection string (key
	// dsn_file); it must not be readable by group or others.
	DSNFile string
	// Kinds are the record kinds written: event (the default), patch, or
	// both.
	Kinds []string
	// Events are the event ids written, or the single word "all" (the
	// default). Patch records are not selected by it.
	Events []string
	// Filter is an optional filter expression (SPEC section 6) on the
	// record, compiled by the history package.
	Filter string
	// Batch is the most records per transaction, default 1000.
	Batch int
	// Flush is the longest a record waits before its batch is written,
	// default 1s.
	Flush time.Duration
	// Priority are event ids written at once, without waiting for Flush.
	Priority []string
	// Retention, when positive, makes the agent delete the rows it wrote
	// that are older than this.
	Retention time.Duration
}

// DefaultSink is a sink section with only its name given.
func DefaultSink(name string) Sink {
	return Sink{
		Name:   name,
		Type:   SinkSQLite,
		Path:   name + ".db",
		Kinds:  []string{"event"},
		Events: []string{"all"},
		Batch:  DefaultSinkBatch,
		Flush:  DefaultSinkFlush,
	}
}

// DBPath is the SQLite file of s for an agent whose var directory is
// varDir.
func (s Sink) DBPath(varDir string) string {
	if filepath.IsAbs(s.Path) {
		return s.Path
	}
	return filepath.Join(varDir, s.Path)
}

// String describes the sink's database without its secrets, for logs and
// errors: "sqlite /var/lib/agent/history.db", "postgres (dsn_file
// /etc/agent/pg.dsn)".
func (s Sink) String() string {
	switch {
	case s.Type != SinkPostgres:
		return s.Type + " " + s.Path
	case s.DSNFile != "":
		return "postgres (dsn_file " + s.DSNFile + ")"
	default:
		return "postgres (dsn in node.conf)"
	}
}

func (s *Sink) set(key, v string) error {
	v = strings.TrimSpace(v)
	switch key {
	case "type":
		if v = unquote(v); v != "" {
			s.Type = v
		}
	case "path":
		if v = unquote(v); v != "" {
			s.Path = v
		}
	case "dsn":
		s.DSN = unquote(v)
	case "dsn_file":
		s.DSNFile = unquote(v)
	case "kinds":
		if k := splitList(v); k != nil {
			s.Kinds = k
		}
	case "events":
		if ev := splitList(v); ev != nil {
			s.Events = ev
		}
	case "filter":
		s.Filter = unquote(v)
	case "batch":
		if v = unquote(v); v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a number of records", v)
		}
		s.Batch = n
	case "flush":
		if v = unquote(v); v == "" {
			return nil
		}
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		s.Flush = d
	case "priority":
		s.Priority = splitList(v)
	case "retention":
		if v = unquote(v); v == "" {
			s.Retention = 0
			return nil
		}
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		s.Retention = d
	default:
		return errUnknownKey
	}
	return nil
}

// validate checks one sink; bad reports an error at a key of its section.
func (s Sink) validate(bad func(section, key, format string, args ...any) error) error {
	sec := "sink#" + s.Name
	if !ValidName(s.Name) {
		return bad(sec, "", "%q is not a valid sink name (letters, digits, - _ .)", s.Name)
	}
	switch s.Type {
	case SinkSQLite:
		if s.DSN != "" || s.DSNFile != "" {
			return bad(sec, "type", "dsn and dsn_file are for type = postgres; sqlite takes path")
		}
		if s.Path == "" {
			return bad(sec, "path", "must not be empty")
		}
	case SinkPostgres:
		if (s.DSN == "") == (s.DSNFile == "") {
			return bad(sec, "dsn", "type = postgres needs one of dsn or dsn_file")
		}
		if s.DSNFile != "" && !filepath.IsAbs(s.DSNFile) {
			return bad(sec, "dsn_file", "%q must be an absolute path", s.DSNFile)
		}
	default:
		return bad(sec, "type", "%q is not one of sqlite, postgres", s.Type)
	}
	if len(s.Kinds) == 0 {
		return bad(sec, "kinds", "no kinds: use event, patch or event,patch")
	}
	seen := map[string]bool{}
	for _, k := range s.Kinds {
		if k != "event" && k != "patch" {
			return bad(sec, "kinds", "%q is not one of event, patch", k)
		}
		if seen[k] {
			return bad(sec, "kinds", "%q is given twice", k)
		}
		seen[k] = true
	}
	if len(s.Events) == 0 {
		return bad(sec, "events", "no events: use all or event ids")
	}
	for _, ev := range s.Events {
		if ev == "all" && len(s.Events) > 1 {
			return bad(sec, "events", `"all" must stand alone`)
		}
		if ev != "all" && !eventIDRe.MatchString(ev) {
			return bad(sec, "events", "%q is not an event id", ev)
		}
	}
	for _, ev := range s.Priority {
		if !eventIDRe.MatchString(ev) {
			return bad(sec, "priority", "%q is not an event id", ev)
		}
	}
	if s.Batch < 1 || s.Batch > MaxSinkBatch {
		return bad(sec, "batch", "%d: want 1 to %d records", s.Batch, MaxSinkBatch)
	}
	if s.Flush <= 0 {
		return bad(sec, "flush", "must be positive")
	}
	if s.Retention < 0 {
		return bad(sec, "retention", "must be positive")
	}
	return nil
}

// FindSink returns the sink named name, or the first sink when name is
// empty. The error says which sinks there are.
func (n Node) FindSink(name string) (Sink, error) {
	where := n.Source
	if where == "" {
		where = "node.conf"
	}
	if len(n.Sinks) == 0 {
		return Sink{}, fmt.Errorf("%s has no [sink#NAME] section: no history database is configured", where)
	}
	if name == "" {
		return n.Sinks[0], nil
	}
	names := make([]string, len(n.Sinks))
	for i, s := range n.Sinks {
		if s.Name == name {
			return s, nil
		}
		names[i] = s.Name
	}
	return Sink{}, fmt.Errorf("%s has no [sink#%s] (sinks: %s)", where, name, strings.Join(names, ", "))
}
