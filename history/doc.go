// Package history keeps the agent's records in a database for long-term,
// indexed, fleet-wide search (SPEC section 11): the [sink#NAME] sinks that
// write them, in SQLite (embedded, modernc.org/sqlite, no cgo) or
// PostgreSQL (jackc/pgx), and the queries of `agent history`,
// GET /v1/history and the web page's History view.
//
// # Schema
//
// One table, agent_records(cluster, agent, epoch, seq, time, nodename,
// kind, event_id, data, raw), primary key (cluster, agent, epoch, seq),
// indexes on time, (event_id, time) and (nodename, time); a version table,
// agent_schema_version. Migrate creates or upgrades it inside one
// transaction holding an advisory lock (PostgreSQL) or the write lock
// (SQLite), so agents starting together do it once; a version newer than
// SchemaVersion is ErrNewerSchema and is left untouched. docs/history.md
// documents the columns for SQL users.
//
// # Exactly once
//
// A Sink reads its records from a Source, the durable consumer of the
// journal that keeps its cursor. It reads ahead, holds at most batch
// records, and commits them in one transaction when the batch is full,
// when flush has passed since the first of them, or at once when a
// priority event arrives. Only after the commit does it mark them done
// (Source.Done), so a crash, a restart or a lost commit answer makes it
// write them again; the insert ignores rows whose key is there already
// (ON CONFLICT DO NOTHING), so each record is stored once. This relies on
// the journal's guarantee that, within an epoch, a seq names one record.
// Records the sink does not write are passed over (Source.Pass) only while
// nothing is pending, so the cursor never moves past an uncommitted record.
//
// # Outages
//
// While the database fails (down, unreachable, locked, refusing), the sink
// stops reading: records wait in the journal. It retries with a backoff
// doubling from MinBackoff to MaxBackoff, jittered by ±50%. The first
// failure of an outage is logged once at Error level and published as a
// sink_error event; the first success after it as sink_recovered. Records
// the journal dropped before the sink read them are reported by the
// Source and published as sink_skipped (ReportLoss).
//
// # Queries
//
// Query puts what a database matches well in SQL (clusters, agents, nodes,
// event ids, kinds, the time range) and applies the filter language to each
// row afterwards, reading in keyset-paged chunks ordered by (time,
// cluster, agent, epoch, seq) so that a limit with a selective filter stops
// early. With a limit it returns the newest records, oldest first.
//
// # Goroutines
//
// A Sink's Run owns one goroutine, the reader of its Source, which it
// stops and waits for before it returns. A Manager owns one goroutine per
// running sink; Update and Close stop and wait for them. DB is safe for
// concurrent use.
package history
