package history

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"agent/filter"
	"agent/internal/clip"
)

// Parameters of GET /v1/history; `agent history` builds the same from its
// flags, so both read them one way.
const (
	ParamSink    = "sink"
	ParamCluster = "cluster"
	ParamAgent   = "agent"
	ParamNode    = "node"
	ParamEvent   = "event"
	ParamKind    = "kind"
	ParamSince   = "since"
	ParamUntil   = "until"
	ParamFilter  = "filter"
	ParamLimit   = "limit"
	ParamBefore  = "before"
	ParamStep    = "step"
)

// ParamError is a bad parameter: a usage error (exit 2, HTTP 400).
type ParamError struct {
	// Param names the flag or query parameter.
	Param string
	// Err says what is wrong with it.
	Err error
}

func (e *ParamError) Error() string { return fmt.Sprintf("%s: %v", e.Param, e.Err) }
func (e *ParamError) Unwrap() error { return e.Err }

// Request is a parsed history request.
type Request struct {
	// Sink names the sink; "" is the first one of node.conf.
	Sink string
	// Query is what to select.
	Query Query
	// Step is the timeline bucket (ParamStep); zero when not given.
	Step time.Duration
}

// ParseRequest reads the parameters of a history request. Lists may be
// repeated or comma separated; filter may be repeated (OR'ed, as with
// agent events). since takes a duration ago (10m, 2h, 7d), a time (RFC
// 3339, or "2006-01-02 15:04[:05]" or "2006-01-02" in local time), or 0
// for everything; until takes the same.
func ParseRequest(v url.Values, now time.Time) (Request, error) {
	var r Request
	list := func(name string) []string {
		var out []string
		for _, s := range v[name] {
			for _, w := range strings.Split(s, ",") {
				if w = strings.TrimSpace(w); w != "" {
					out = append(out, w)
				}
			}
		}
		return out
	}
	r.Sink = v.Get(ParamSink)
	r.Query.Clusters = list(ParamCluster)
	r.Query.Agents = list(ParamAgent)
	r.Query.Nodes = list(ParamNode)
	r.Query.Events = list(ParamEvent)
	r.Query.Kinds = list(ParamKind)
	for _, k := range r.Query.Kinds {
		if k != "event" && k != "patch" {
			return r, &ParamError{ParamKind, fmt.Errorf("%s: want event or patch", clip.Quote(k))}
		}
	}
	var err error
	if s := v.Get(ParamSince); s != "" {
		if r.Query.Since, err = ParseTime(s, now); err != nil {
			return r, &ParamError{ParamSince, err}
		}
	}
	if s := v.Get(ParamUntil); s != "" {
		if r.Query.Until, err = ParseTime(s, now); err != nil {
			return r, &ParamError{ParamUntil, err}
		}
	}
	if !r.Query.Since.IsZero() && !r.Query.Until.IsZero() && !r.Query.Until.After(r.Query.Since) {
		return r, &ParamError{ParamUntil, errors.New("must be after since")}
	}
	for _, f := range v[ParamFilter] {
		e, err := filter.Parse(f)
		if err != nil {
			return r, err // a *filter.SyntaxError: it names the filter and the column
		}
		r.Query.Filter = append(r.Query.Filter, e)
	}
	if s := v.Get(ParamLimit); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > MaxLimit {
			return r, &ParamError{ParamLimit, fmt.Errorf("%s: want 0 (no limit) to %d", clip.Quote(s), MaxLimit)}
		}
		r.Query.Limit = n
	}
	if s := v.Get(ParamBefore); s != "" {
		k, err := ParseKey(s)
		if err != nil {
			return r, &ParamError{ParamBefore, err}
		}
		r.Query.Before = &k
	}
	if s := v.Get(ParamStep); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second {
			return r, &ParamError{ParamStep, fmt.Errorf("%s: want a duration of at least 1s", clip.Quote(s))}
		}
		r.Step = d
	}
	return r, nil
}

// localLayouts are the time forms without a zone, read in local time.
var localLayouts = []string{"2006-01-02T15:04:05.999999", "2006-01-02 15:04:05.999999", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"}

// ParseTime reads a time argument: a duration ago ("10m", "2h", "7d",
// "1d12h"), an RFC 3339 time, a local "2006-01-02 15:04[:05]" or
// "2006-01-02", or "0" (the zero time: no bound).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return time.Time{}, nil
	}
	if d, err := parseAgo(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%s: a duration ago must be positive", clip.Quote(s))
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, l := range localLayouts {
		if t, err := time.ParseInLocation(l, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s: want a duration ago (10m, 2h, 7d), a time (2026-11-22T10:00:00Z, \"2026-11-22 10:00\", 2026-11-22) or 0", clip.Quote(s))
}

// parseAgo parses a Go duration that may start with whole days ("7d",
// "1d12h").
func parseAgo(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(days)
	if err != nil || n < 0 || n > 100000 {
		return 0, errors.New("bad days")
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	r, err := time.ParseDuration(rest)
	if err != nil || r < 0 {
		return 0, errors.New("bad duration")
	}
	return d + r, nil
}
