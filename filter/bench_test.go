package filter

import (
	"strings"
	"testing"
)

func benchmarkMatch(b *testing.B, filter string, doc []byte, want bool) {
	e, err := Parse(filter)
	if err != nil {
		b.Fatal(err)
	}
	if got := e.Match(doc); got != want {
		b.Fatalf("%q matched %v, want %v", filter, got, want)
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		e.Match(doc)
	}
}

// BenchmarkMatchSimple is the `agent wait` case: one condition on the cluster data of five
// nodes (testdata/cluster.json, about 7 KB), evaluated on every change.
func BenchmarkMatchSimple(b *testing.B) {
	benchmarkMatch(b, "monitor.nodes.n2.frozen=0", readCluster(b), true)
}

// BenchmarkMatchCompound reads several nodes, a dotted node name, a regular expression and
// an `in`, the last node of the document included.
func BenchmarkMatchCompound(b *testing.B) {
	benchmarkMatch(b, `monitor.nodes.n2.frozen=0 and not monitor.nodes.n3.frozen=0 and `+
		`(monitor.nodes.db1\.example\.com.status=idle or monitor.nodes.n1.status~^start) and `+
		`monitor.services.db.overall in ["up","warn"]`, readCluster(b), true)
}

// BenchmarkMatchRecord is the `agent events --filter` and hook case, run on every record.
func BenchmarkMatchRecord(b *testing.B) {
	record := []byte(`{"seq": 1203, "epoch": "9f2c", "time": "2026-11-22T10:00:02.123456Z", "nodename": "n1", "kind": "event", "data": {"id": "instance_start", "reason": "failover", "svcname": "web", "instance": "web@n1"}}`)
	benchmarkMatch(b, "kind=event and data.id~^instance_", record, true)
}

// BenchmarkParse measures what a subscriber or hook pays once.
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(`kind=event and data.id~^instance_ and data.reason in ["failover","restart"]`); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRefused is what a hostile subscriber costs: a filter at the size limit
// that holds more terms than allowed, and one past the size limit.
func BenchmarkParseRefused(b *testing.B) {
	for _, tc := range []struct{ name, expr string }{
		{"13000 terms in 64 KiB", strings.Repeat("a or ", MaxBytes/5-1) + "a"},
		{"600 KB", strings.Repeat("x", 600<<10)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse(tc.expr); err == nil {
					b.Fatal("parsed")
				}
			}
		})
	}
}

// BenchmarkParseMaxTerms parses a filter of MaxTerms conditions: the most a subscriber can
// make the agent evaluate per record.
func BenchmarkParseMaxTerms(b *testing.B) {
	expr := strings.Repeat("data.id=x or ", MaxTerms-1) + "data.id=y"
	e, err := Parse(expr)
	if err != nil {
		b.Fatal(err)
	}
	record := []byte(`{"kind":"event","data":{"id":"y"}}`)
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			_, _ = Parse(expr)
		}
	})
	b.Run("match", func(b *testing.B) {
		for b.Loop() {
			e.Match(record)
		}
	})
}
