package history

import (
	"context"
	"database/sql"
	"fmt"
)

// SchemaVersion is the version of the schema this agent creates, writes and
// reads. docs/history.md documents it.
const SchemaVersion = 1

// advisoryLockKey is the PostgreSQL advisory lock that serialises schema
// changes among every agent writing to one database ("agent" in ASCII).
const advisoryLockKey = 0x6167656e74

// migration brings the schema from version-1 to version.
type migration struct {
	version  int
	sqlite   []string
	postgres []string
}

// migrations, oldest first. A new version appends one; released ones never
// change.
var migrations = []migration{
	{
		version: 1,
		postgres: []string{
			`CREATE TABLE agent_records (
	cluster  text        NOT NULL,
	agent    text        NOT NULL,
	epoch    text        NOT NULL,
	seq      bigint      NOT NULL,
	time     timestamptz NOT NULL,
	nodename text        NOT NULL,
	kind     text        NOT NULL,
	event_id text,
	data     jsonb       NOT NULL,
	raw      bytea       NOT NULL,
	PRIMARY KEY (cluster, agent, epoch, seq)
)`,
			`CREATE INDEX agent_records_time_idx ON agent_records (time)`,
			`CREATE INDEX agent_records_event_id_time_idx ON agent_records (event_id, time)`,
			`CREATE INDEX agent_records_nodename_time_idx ON agent_records (nodename, time)`,
			`COMMENT ON TABLE agent_records IS 'Records of the agents'' streams, written by their history sinks: one row per record, exactly once.'`,
			`COMMENT ON COLUMN agent_records.agent IS 'The node whose journal the record comes from (the writing agent).'`,
			`COMMENT ON COLUMN agent_records.nodename IS 'The record''s own nodename field.'`,
			`COMMENT ON COLUMN agent_records.event_id IS 'data.id of an event record; NULL for a patch record.'`,
			`COMMENT ON COLUMN agent_records.raw IS 'The record line byte for byte, as agent events -o json prints it (UTF-8 JSON).'`,
		},
		sqlite: []string{
			`CREATE TABLE agent_records (
	cluster  TEXT    NOT NULL,
	agent    TEXT    NOT NULL,
	epoch    TEXT    NOT NULL,
	seq      INTEGER NOT NULL,
	time     TEXT    NOT NULL, -- UTC with microseconds, 2026-11-22T10:00:01.123456Z: sorts as time
	nodename TEXT    NOT NULL,
	kind     TEXT    NOT NULL,
	event_id TEXT,             -- data.id of an event record; NULL for a patch record
	data     TEXT    NOT NULL, -- JSON
	raw      TEXT    NOT NULL, -- the record line byte for byte
	PRIMARY KEY (cluster, agent, epoch, seq)
)`,
			`CREATE INDEX agent_records_time_idx ON agent_records (time)`,
			`CREATE INDEX agent_records_event_id_time_idx ON agent_records (event_id, time)`,
			`CREATE INDEX agent_records_nodename_time_idx ON agent_records (nodename, time)`,
		},
	},
}

func versionTableDDL(d Dialect) string {
	ts := "timestamptz NOT NULL DEFAULT now()"
	if d == SQLite {
		ts = "TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
	}
	return `CREATE TABLE IF NOT EXISTS agent_schema_version (
	version    integer PRIMARY KEY,
	applied_at ` + ts + `,
	applied_by text NOT NULL
)`
}

// Migrate creates or upgrades the schema to SchemaVersion, under an
// advisory lock (PostgreSQL) or the write lock (SQLite) so that agents
// starting together do it once. by names the agent, recorded in the
// version table. A schema newer than SchemaVersion is ErrNewerSchema and
// left alone. It returns the version found before.
func (d *DB) Migrate(ctx context.Context, by string) (from int, err error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("migrate the history schema of %s: %w", d.Name(), err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if d.dialect == Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(advisoryLockKey)); err != nil {
			return 0, fmt.Errorf("lock the history schema of %s: %w", d.Name(), err)
		}
	}
	if _, err := tx.ExecContext(ctx, versionTableDDL(d.dialect)); err != nil {
		return 0, fmt.Errorf("create the schema version table in %s: %w", d.Name(), err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM agent_schema_version`).Scan(&from); err != nil {
		return 0, fmt.Errorf("read the history schema version of %s: %w", d.Name(), err)
	}
	if from > SchemaVersion {
		return from, d.newerError(from)
	}
	for _, m := range migrations {
		if m.version <= from {
			continue
		}
		stmts := m.postgres
		if d.dialect == SQLite {
			stmts = m.sqlite
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return from, fmt.Errorf("migrate the history schema of %s to version %d: %w", d.Name(), m.version, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO agent_schema_version (version, applied_by) VALUES (`+d.ph(1)+`, `+d.ph(2)+`)`,
			m.version, by); err != nil {
			return from, fmt.Errorf("record history schema version %d in %s: %w", m.version, d.Name(), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return from, fmt.Errorf("migrate the history schema of %s: %w", d.Name(), err)
	}
	return from, nil
}

func (d *DB) newerError(v int) error {
	return fmt.Errorf("%s has history schema version %d; this agent knows versions up to %d: upgrade the agent (nothing was changed): %w",
		d.Name(), v, SchemaVersion, ErrNewerSchema)
}

// Version reads the schema version without changing anything. A database
// without the schema is ErrNoSchema; one newer than this agent knows is
// ErrNewerSchema.
func (d *DB) Version(ctx context.Context) (int, error) {
	var exists bool
	var err error
	switch d.dialect {
	case Postgres:
		var name sql.NullString
		err = d.db.QueryRowContext(ctx, `SELECT to_regclass('agent_schema_version')::text`).Scan(&name)
		exists = name.Valid
	default:
		var n int
		err = d.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'agent_schema_version'`).Scan(&n)
		exists = n > 0
	}
	if err != nil {
		return 0, fmt.Errorf("read the history schema of %s: %w", d.Name(), err)
	}
	if !exists {
		return 0, d.noSchemaError()
	}
	var v int
	if err := d.db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM agent_schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the history schema version of %s: %w", d.Name(), err)
	}
	if v == 0 {
		return 0, d.noSchemaError()
	}
	if v > SchemaVersion {
		return v, d.newerError(v)
	}
	return v, nil
}

func (d *DB) noSchemaError() error {
	return fmt.Errorf("%s has no agent history schema yet: an agent running with this sink creates it: %w", d.Name(), ErrNoSchema)
}
