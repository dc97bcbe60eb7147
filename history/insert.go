package history

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tidwall/gjson"

	"agent/events"
)

// Origin names the journal records come from: the cluster and the agent
// (node) that wrote them. With the record's epoch and seq it makes the
// primary key.
type Origin struct {
	Cluster string
	Agent   string
}

const insertColumns = `cluster, agent, epoch, seq, time, nodename, kind, event_id, data, raw`

// pgInsert writes a whole batch in one statement: one array per column,
// so the statement has ten parameters whatever the batch size.
const pgInsert = `INSERT INTO agent_records (` + insertColumns + `)
SELECT $1, $2, u.epoch, u.seq, u.time, u.nodename, u.kind, NULLIF(u.event_id, ''), u.data::jsonb, u.raw
FROM unnest($3::text[], $4::bigint[], $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[])
	AS u(epoch, seq, time, nodename, kind, event_id, data, raw)
ON CONFLICT DO NOTHING`

const pgInsertOne = `INSERT INTO agent_records (` + insertColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), $9::jsonb, $10)
ON CONFLICT DO NOTHING`

const sqliteInsert = `INSERT INTO agent_records (` + insertColumns + `)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULLIF(?8, ''), ?9, ?10)
ON CONFLICT DO NOTHING`

// Insert writes recs in one transaction. Rows already there (same
// cluster, agent, epoch and seq) are left as they are, so writing a record
// twice stores it once. It returns the number of rows added.
func (d *DB) Insert(ctx context.Context, o Origin, recs []*events.Record) (int64, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	if d.dialect == Postgres {
		n, err := d.insertPG(ctx, o, recs)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") {
			// A data exception (a number jsonb cannot hold, for one): write
			// the records one by one so that one bad record does not hold
			// the others back forever.
			return d.insertPGOneByOne(ctx, o, recs)
		}
		return n, err
	}
	return d.insertSQLite(ctx, o, recs)
}

func (d *DB) insertPG(ctx context.Context, o Origin, recs []*events.Record) (int64, error) {
	n := len(recs)
	epochs, nodes, kinds, ids, datas := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	seqs, times, raws := make([]int64, n), make([]time.Time, n), make([][]byte, n)
	for i, r := range recs {
		epochs[i], seqs[i], times[i] = text(r.Epoch), int64(r.Seq), r.Time
		nodes[i], kinds[i], ids[i] = text(r.Nodename), text(r.Kind), text(eventID(r))
		datas[i], raws[i] = jsonbText(r.Data), r.JSON()
	}
	res, err := d.db.ExecContext(ctx, pgInsert, o.Cluster, o.Agent, epochs, seqs, times, nodes, kinds, ids, datas, raws)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (d *DB) insertPGOneByOne(ctx context.Context, o Origin, recs []*events.Record) (int64, error) {
	var total int64
	for _, r := range recs {
		args := []any{o.Cluster, o.Agent, text(r.Epoch), int64(r.Seq), r.Time, text(r.Nodename), text(r.Kind), text(eventID(r)),
			jsonbText(r.Data), r.JSON()}
		res, err := d.db.ExecContext(ctx, pgInsertOne, args...)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") {
			// Keep the record (raw is exact); only its queryable copy is
			// replaced by a note.
			args[8] = fmt.Sprintf(`{"error": %q}`, "data not storable as jsonb: "+pe.Message)
			res, err = d.db.ExecContext(ctx, pgInsertOne, args...)
		}
		if err != nil {
			return total, err
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

func (d *DB) insertSQLite(ctx context.Context, o Origin, recs []*events.Record) (int64, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	st, err := tx.PrepareContext(ctx, sqliteInsert)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	var total int64
	for _, r := range recs {
		// raw goes in as a string so that SQLite stores it as TEXT, byte
		// for byte (SQLite does not check the encoding).
		res, err := st.ExecContext(ctx, o.Cluster, o.Agent, r.Epoch, int64(r.Seq), r.Time.UTC().Format(events.TimeFormat),
			r.Nodename, r.Kind, eventID(r), string(r.Data), string(r.JSON()))
		if err != nil {
			return 0, err
		}
		n, _ := res.RowsAffected()
		total += n
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return total, nil
}

// eventID is data.id of an event record, "" otherwise.
func eventID(r *events.Record) string {
	if r.Kind != events.KindEvent {
		return ""
	}
	return gjson.GetBytes(r.Data, "id").String()
}

// text makes s acceptable to a PostgreSQL text column: valid UTF-8 without
// NUL.
func text(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// jsonbText makes JSON acceptable to jsonb, which refuses invalid UTF-8
// and the escape \u0000: both become U+FFFD. raw keeps the exact bytes.
func jsonbText(data []byte) string {
	if utf8.Valid(data) && !bytes.Contains(data, []byte(`\u0000`)) {
		return string(data)
	}
	data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
	var b strings.Builder
	b.Grow(len(data))
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c != '\\' || i+1 >= len(data) {
			b.WriteByte(c)
			continue
		}
		// An escape: \u0000 is replaced, any other is copied whole so
		// that an escaped backslash followed by "u0000" stays as it is.
		if data[i+1] == 'u' && i+5 < len(data) && string(data[i+2:i+6]) == "0000" {
			b.WriteString(`\ufffd`)
			i += 5
			continue
		}
		b.WriteByte(c)
		b.WriteByte(data[i+1])
		i++
	}
	return b.String()
}
