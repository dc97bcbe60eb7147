package history

import (
	"context"
	"fmt"
	"time"
)

// retentionChunk bounds the rows one retention statement deletes, so that
// a first pass over months of rows does not hold the sink's writes back.
const retentionChunk = 10000

// DeleteOlder deletes at most limit rows of origin o older than before,
// and returns how many it deleted. Rows of other agents are never touched.
func (d *DB) DeleteOlder(ctx context.Context, o Origin, before time.Time, limit int) (int64, error) {
	id := "ctid"
	if d.dialect == SQLite {
		id = "rowid"
	}
	q := fmt.Sprintf(`DELETE FROM agent_records WHERE %[1]s IN (
	SELECT %[1]s FROM agent_records WHERE time < %[2]s AND cluster = %[3]s AND agent = %[4]s LIMIT %[5]d)`,
		id, d.ph(1), d.ph(2), d.ph(3), limit)
	res, err := d.db.ExecContext(ctx, q, d.timeArg(before), o.Cluster, o.Agent)
	if err != nil {
		return 0, fmt.Errorf("delete old rows of %s: %w", d.Name(), err)
	}
	return res.RowsAffected()
}
