package history

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"agent/events"
)

// benchRecords makes n records as an agent does: half patches of a node's
// stats, half events.
func benchRecords(first uint64, n int) []*events.Record {
	out := make([]*events.Record, n)
	now := time.Now()
	for i := range out {
		seq := first + uint64(i)
		if i%2 == 0 {
			out[i] = events.NewRecord(seq, "bench", now, "n1", events.KindPatch, json.RawMessage(fmt.Sprintf(
				`[{"op":"replace","path":"/monitor/nodes/n1/stats/load_15m","value":%d.%02d},{"op":"replace","path":"/monitor/nodes/n1/gen","value":%d}]`, i%7, i%100, seq)))
		} else {
			out[i] = events.NewRecord(seq, "bench", now, "n1", events.KindEvent, json.RawMessage(fmt.Sprintf(
				`{"id":"instance_status_change","reason":"check","svcname":"svc%d","instance":{"avail":"up"}}`, i%50)))
		}
	}
	return out
}

// benchmarkInsert writes batches of 1000 records, as a sink with batch =
// 1000 does, and reports rows/s.
func benchmarkInsert(b *testing.B, tg Target) {
	db := openMigrated(b, tg)
	const batch = 1000
	recs := benchRecords(1, b.N*batch)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := db.Insert(ctx, Origin{"bench", "n1"}, recs[i*batch:(i+1)*batch]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "rows/s")
}

func BenchmarkInsertSQLite(b *testing.B)   { benchmarkInsert(b, sqliteTarget(b)) }
func BenchmarkInsertPostgres(b *testing.B) { benchmarkInsert(b, pgTarget(b)) }
