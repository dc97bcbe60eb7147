package history

import (
	"net/url"
	"testing"
	"time"
)

// FuzzParseRequest feeds GET /v1/history query strings to the parser: it
// answers a Request or an error, never a panic, and a key it accepts
// prints back to itself.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"event=node_down&since=1h&limit=100",
		"node=n1&node=n2&kind=event,patch&until=2026-11-22T10:00:00Z&filter=data.svcname%3Dweb",
		"before=2026-11-22T10:00:00.000000Z|c|n1|9f2c|12&limit=5",
		"since=7d&step=60s", "since=0", "limit=-1", "since=2026-11-22", "filter=((",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, err := ParseRequest(v, now)
		if err != nil || r.Query.Before == nil {
			return
		}
		k, err := ParseKey(r.Query.Before.String())
		if err != nil || k.String() != r.Query.Before.String() {
			t.Fatalf("key %q does not round-trip: %v", r.Query.Before.String(), err)
		}
	})
}
