package history

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"agent/events"
	"agent/filter"
)

// MaxLimit bounds Query.Limit: the newest records are gathered in memory
// before they are returned oldest first.
const MaxLimit = 1_000_000

// Query selects records. The fields the database can match (clusters,
// agents, nodes, event ids, kinds, the time range) become SQL; Filter is
// applied to each record afterwards. Empty fields match everything.
type Query struct {
	// Clusters match the cluster column.
	Clusters []string
	// Agents match the agent column: the node whose journal the record
	// comes from.
	Agents []string
	// Nodes match the record's nodename.
	Nodes []string
	// Events match data.id of event records (patch records never match).
	Events []string
	// Kinds match the record kind: event, patch.
	Kinds []string
	// Since (inclusive) and Until (exclusive) bound the record time; zero
	// is unbounded.
	Since, Until time.Time
	// Filter holds when one of its expressions holds on the record (the
	// repeated --filter of agent events).
	Filter filter.Any
	// Limit, when positive, keeps the newest Limit matching records
	// (returned oldest first, like the others).
	Limit int
	// Before, when set, keeps only the records ordered before it: the
	// next page after a page whose oldest record is Before.
	Before *Key
}

// Key locates a record in the order of Query results: time, then cluster,
// agent, epoch and seq.
type Key struct {
	Time    time.Time
	Cluster string
	Agent   string
	Epoch   string
	Seq     uint64
}

// String encodes the key for a page link (ParseKey reads it).
func (k Key) String() string {
	return strings.Join([]string{k.Time.UTC().Format(events.TimeFormat), k.Cluster, k.Agent, k.Epoch, fmt.Sprint(k.Seq)}, "|")
}

// ParseKey reads Key.String.
func ParseKey(s string) (Key, error) {
	f := strings.Split(s, "|")
	if len(f) != 5 {
		return Key{}, errors.New("not a page key")
	}
	t, err := time.Parse(time.RFC3339Nano, f[0])
	if err != nil {
		return Key{}, fmt.Errorf("not a page key: %w", err)
	}
	var seq uint64
	if _, err := fmt.Sscan(f[4], &seq); err != nil {
		return Key{}, fmt.Errorf("not a page key: %w", err)
	}
	return Key{Time: t, Cluster: f[1], Agent: f[2], Epoch: f[3], Seq: seq}, nil
}

// Row is one record found.
type Row struct {
	Key
	// Raw is the record line, byte for byte what agent events -o json
	// printed.
	Raw []byte
}

// QueryStats say what a query did.
type QueryStats struct {
	// Scanned counts the rows read from the database.
	Scanned int
	// Matched counts the rows returned.
	Matched int
	// Statements counts the SQL statements run.
	Statements int
}

// chunk is how many rows one statement reads when Filter may reject some:
// the query continues from the last row until it has enough.
const chunk = 2000

// Query runs q and calls emit for each matching record, oldest first. It
// stops at emit's first error and returns it.
func (d *DB) Query(ctx context.Context, q Query, emit func(Row) error) (QueryStats, error) {
	var st QueryStats
	if q.Limit < 0 || q.Limit > MaxLimit {
		return st, fmt.Errorf("limit %d: want 0 (all) to %d", q.Limit, MaxLimit)
	}
	where, args := d.where(q)
	if q.Limit == 0 {
		// Oldest first, a chunk at a time, streamed.
		var after *Key
		for {
			w, a := where, args
			if after != nil {
				w, a = d.keyBound(w, a, ">", *after)
			}
			n, last, err := d.scan(ctx, w, a, "ASC", chunk, &st, func(r Row) error {
				if !q.Filter.Match(r.Raw) {
					return nil
				}
				st.Matched++
				return emit(r)
			})
			if err != nil || n < chunk {
				return st, err
			}
			after = &last
		}
	}
	// The newest Limit: newest first a chunk at a time, then reversed.
	var found []Row
	before := q.Before
	for len(found) < q.Limit {
		size := q.Limit - len(found)
		if len(q.Filter) > 0 {
			size = chunk
		}
		w, a := where, args
		if before != nil {
			w, a = d.keyBound(w, a, "<", *before)
		}
		n, last, err := d.scan(ctx, w, a, "DESC", size, &st, func(r Row) error {
			if len(found) < q.Limit && q.Filter.Match(r.Raw) {
				found = append(found, r)
			}
			return nil
		})
		if err != nil {
			return st, err
		}
		if n < size {
			break // no more rows
		}
		before = &last
	}
	slices.Reverse(found)
	for _, r := range found {
		st.Matched++
		if err := emit(r); err != nil {
			return st, err
		}
	}
	return st, nil
}

// where builds the SQL condition of q, without the page key.
func (d *DB) where(q Query) (string, []any) {
	var conds []string
	var args []any
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		phs := make([]string, len(vals))
		for i, v := range vals {
			args = append(args, v)
			phs[i] = d.ph(len(args))
		}
		conds = append(conds, col+" IN ("+strings.Join(phs, ", ")+")")
	}
	in("cluster", q.Clusters)
	in("agent", q.Agents)
	in("nodename", q.Nodes)
	in("event_id", q.Events)
	in("kind", q.Kinds)
	if !q.Since.IsZero() {
		args = append(args, d.timeArg(q.Since))
		conds = append(conds, "time >= "+d.ph(len(args)))
	}
	if !q.Until.IsZero() {
		args = append(args, d.timeArg(q.Until))
		conds = append(conds, "time < "+d.ph(len(args)))
	}
	if len(conds) == 0 {
		return "TRUE", args
	}
	return strings.Join(conds, " AND "), args
}

// keyBound adds "rows after (op >) or before (op <) key" to a condition.
// The bound on time alone is redundant but lets the time indexes serve it.
func (d *DB) keyBound(where string, args []any, op string, k Key) (string, []any) {
	args = append(slices.Clip(args), d.timeArg(k.Time), k.Cluster, k.Agent, k.Epoch, int64(k.Seq))
	n := len(args)
	t := d.ph(n - 4)
	return fmt.Sprintf("%s AND time %s= %s AND (time, cluster, agent, epoch, seq) %s (%s, %s, %s, %s, %s)",
		where, op, t, op, t, d.ph(n-3), d.ph(n-2), d.ph(n-1), d.ph(n)), args
}

// timeArg is a time as the time column holds it.
func (d *DB) timeArg(t time.Time) any {
	if d.dialect == SQLite {
		return t.UTC().Format(events.TimeFormat)
	}
	return t
}

// scan runs one statement and calls fn for each row. It returns the number
// of rows read and the key of the last one.
func (d *DB) scan(ctx context.Context, where string, args []any, order string, limit int, st *QueryStats, fn func(Row) error) (int, Key, error) {
	sqlText := fmt.Sprintf(`SELECT time, cluster, agent, epoch, seq, raw FROM agent_records WHERE %s
ORDER BY time %s, cluster %[2]s, agent %[2]s, epoch %[2]s, seq %[2]s LIMIT %d`, where, order, limit)
	st.Statements++
	rows, err := d.db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return 0, Key{}, d.queryError(ctx, err)
	}
	defer rows.Close()
	n := 0
	var last Key
	for rows.Next() {
		var r Row
		var seq int64
		var t any
		if err := rows.Scan(&t, &r.Cluster, &r.Agent, &r.Epoch, &seq, &r.Raw); err != nil {
			return n, last, fmt.Errorf("read %s: %w", d.Name(), err)
		}
		r.Seq = uint64(seq)
		if r.Time, err = scanTime(t); err != nil {
			return n, last, fmt.Errorf("read %s: record %s/%s/%d: %w", d.Name(), r.Agent, r.Epoch, r.Seq, err)
		}
		n++
		st.Scanned++
		last = r.Key
		if err := fn(r); err != nil {
			return n, last, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, last, d.queryError(ctx, err)
	}
	return n, last, nil
}

// scanTime reads the time column: a time.Time from PostgreSQL, text from
// SQLite.
func scanTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t.UTC(), nil
	case string:
		return time.Parse(time.RFC3339Nano, t)
	case []byte:
		return time.Parse(time.RFC3339Nano, string(t))
	}
	return time.Time{}, fmt.Errorf("unexpected time value %T", v)
}

// queryError explains a failed query; a database without the schema says
// so.
func (d *DB) queryError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, verr := d.Version(ctx); verr != nil && (errors.Is(verr, ErrNoSchema) || errors.Is(verr, ErrNewerSchema)) {
		return verr
	}
	return &oneLineError{msg: fmt.Sprintf("query %s: %s", d.Name(), oneLine(err.Error())), err: err}
}

// oneLineError keeps the cause of an error whose text was made one line.
type oneLineError struct {
	msg string
	err error
}

func (e *oneLineError) Error() string { return e.msg }
func (e *oneLineError) Unwrap() error { return e.err }

// oneLine folds a multi-line error (pgx lists each connection attempt on a
// line of its own) into one line, without repeated parts.
func oneLine(s string) string {
	if !strings.Contains(s, "\n") {
		return s
	}
	var parts []string
	seen := map[string]bool{}
	for _, p := range strings.Split(s, "\n") {
		p = strings.TrimSpace(p)
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// Bucket is one point of a timeline: how many records of one id (data.id
// of an event, or the kind of another record) fell in [Start, Start+step).
type Bucket struct {
	Start time.Time `json:"t"`
	ID    string    `json:"id"`
	Count int64     `json:"n"`
}

// TimelineScanLimit bounds the records a timeline with a Filter reads
// (without a filter the database counts).
const TimelineScanLimit = 200_000

// Timeline counts the records of q (its Limit and Before ignored) in
// buckets of step from q.Since. truncated is set when a filtered timeline
// stopped after TimelineScanLimit records.
func (d *DB) Timeline(ctx context.Context, q Query, step time.Duration) (buckets []Bucket, truncated bool, err error) {
	if step < time.Second {
		return nil, false, fmt.Errorf("timeline step %v: at least 1s", step)
	}
	q.Limit, q.Before = 0, nil
	secs := int64(step / time.Second)
	if len(q.Filter) > 0 {
		counts := map[Bucket]int64{}
		errStop := errors.New("stop")
		n := 0
		_, err := d.Query(ctx, q, func(r Row) error {
			n++
			if n > TimelineScanLimit {
				truncated = true
				return errStop
			}
			b := Bucket{Start: time.Unix(r.Time.Unix()/secs*secs, 0).UTC(), ID: rowID(r.Raw)}
			counts[b]++
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return nil, false, err
		}
		for b, c := range counts {
			b.Count = c
			buckets = append(buckets, b)
		}
		sortBuckets(buckets)
		return buckets, truncated, nil
	}
	where, args := d.where(q)
	bucketExpr := fmt.Sprintf("floor(extract(epoch FROM time) / %d)::bigint", secs)
	if d.dialect == SQLite {
		bucketExpr = fmt.Sprintf("CAST(strftime('%%s', substr(time, 1, 19)) AS INTEGER) / %d", secs)
	}
	rows, err := d.db.QueryContext(ctx, fmt.Sprintf(`SELECT %s AS b, coalesce(event_id, kind) AS id, count(*)
FROM agent_records WHERE %s GROUP BY b, id`, bucketExpr, where), args...)
	if err != nil {
		return nil, false, d.queryError(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var b Bucket
		var n int64
		if err := rows.Scan(&n, &b.ID, &b.Count); err != nil {
			return nil, false, fmt.Errorf("read %s: %w", d.Name(), err)
		}
		b.Start = time.Unix(n*secs, 0).UTC()
		buckets = append(buckets, b)
	}
	if err := rows.Err(); err != nil {
		return nil, false, d.queryError(ctx, err)
	}
	sortBuckets(buckets)
	return buckets, false, nil
}

func sortBuckets(b []Bucket) {
	slices.SortFunc(b, func(x, y Bucket) int {
		if c := x.Start.Compare(y.Start); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
}

// rowID is the timeline id of a record line: data.id of an event, else
// its kind.
func rowID(raw []byte) string {
	r, err := events.ParseRecord(raw)
	if err != nil {
		return "unreadable"
	}
	if id := eventID(r); id != "" {
		return id
	}
	return r.Kind
}

// Has says whether the record of origin o, epoch and seq is in the
// database (tests and benchmarks wait on it).
func (d *DB) Has(ctx context.Context, o Origin, epoch string, seq uint64) (bool, error) {
	var n int
	err := d.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM agent_records WHERE cluster = %s AND agent = %s AND epoch = %s AND seq = %s`,
		d.ph(1), d.ph(2), d.ph(3), d.ph(4)), o.Cluster, o.Agent, epoch, int64(seq)).Scan(&n)
	if err != nil {
		return false, d.queryError(ctx, err)
	}
	return n > 0, nil
}
