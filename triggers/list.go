package triggers

import (
	"time"
)

// Listed is one trigger as GET /v1/triggers and `agent trigger ls -o json`
// show it: its settings, its open streams and its figures since start.
type Listed struct {
	Name          string   `json:"name"`
	Match         string   `json:"match"`
	Distinct      []string `json:"distinct"`
	Count         int      `json:"count"`
	FireWhen      string   `json:"fire_when,omitempty"`
	WindowSeconds float64  `json:"window_seconds"`
	// FireCommand and ExpireCommand tell whether each outcome runs a
	// command (the commands themselves are not shown: an argument may be
	// a secret).
	FireCommand   bool           `json:"fire_command"`
	ExpireCommand bool           `json:"expire_command"`
	Open          []ListedStream `json:"open"`
	// Pending counts the closed streams whose command has not finished.
	Pending  int    `json:"pending"`
	Fires    uint64 `json:"fires"`
	Expiries uint64 `json:"expiries"`
	Failed   uint64 `json:"failed"`
}

// ListedStream is an open stream.
type ListedStream struct {
	Key              string  `json:"key"`
	Count            int     `json:"count"`
	First            string  `json:"first"`   // time of the first event (RFC 3339, UTC)
	Expires          string  `json:"expires"` // end of the window
	AgeSeconds       float64 `json:"age_seconds"`
	ExpiresInSeconds float64 `json:"expires_in_seconds"`
	FirstSeq         uint64  `json:"first_seq"`
	LastSeq          uint64  `json:"last_seq"`
	Dropped          int     `json:"dropped,omitempty"`
	Lost             bool    `json:"lost,omitempty"`
}

// listed converts the engine's description at time now.
func listed(infos []TriggerInfo, st Stats, now time.Time) []Listed {
	byName := map[string]TriggerStats{}
	for _, t := range st.Triggers {
		byName[t.Name] = t
	}
	out := make([]Listed, 0, len(infos))
	for _, ti := range infos {
		sp := ti.spec
		l := Listed{Name: ti.Name, Open: []ListedStream{}, Pending: ti.Pending, Distinct: []string{}}
		if sp != nil {
			l.Match, l.Count, l.WindowSeconds = sp.match.String(), sp.count, sp.window.Seconds()
			l.Distinct = append(l.Distinct, sp.distinct...)
			if sp.fireWhen != nil {
				l.FireWhen = sp.fireWhen.String()
			}
			l.FireCommand, l.ExpireCommand = len(sp.fireCmd) > 0, len(sp.expireCmd) > 0
		}
		ts := byName[ti.Name]
		l.Fires, l.Expiries, l.Failed = ts.Fires, ts.Expiries, ts.Failed
		for _, s := range ti.Streams {
			l.Open = append(l.Open, ListedStream{
				Key: s.Key, Count: s.Count,
				First: s.First.UTC().Format(time.RFC3339Nano), Expires: s.Deadline.UTC().Format(time.RFC3339Nano),
				AgeSeconds: now.Sub(s.First).Seconds(), ExpiresInSeconds: s.Deadline.Sub(now).Seconds(),
				FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, Dropped: s.Dropped, Lost: s.Lost,
			})
		}
		out = append(out, l)
	}
	return out
}
