package stream

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"agent/events"
	"agent/internal/clip"
)

// Query parameters of GET /v1/events.
const (
	paramKind      = "kind"
	paramFilter    = "filter"
	paramSnapshot  = "snapshot"
	paramSince     = "since"
	paramEpoch     = "epoch"
	paramSinceTime = "since_time"
	paramLimit     = "limit"
	paramBatch     = "batch"
)

// maxFilterBytes bounds the filters of one subscription together: each
// filter is bounded by the filter language (64 KiB, 1000 terms), and so is
// their sum, so that repeating filter= buys no more work per record.
const maxFilterBytes = 64 << 10

// paramError is a bad query parameter; it becomes an HTTP 400.
type paramError struct {
	Param string
	Err   error
}

func (e *paramError) Error() string { return fmt.Sprintf("query parameter %s: %v", e.Param, e.Err) }
func (e *paramError) Unwrap() error { return e.Err }

// request is a parsed subscription request.
type request struct {
	patch, event bool
	filters      []func(record []byte) bool
	snapshot     bool
	resume       bool
	since        uint64
	epoch        string // "" with resume: the bus's current epoch
	sinceTime    time.Time
	limit        int // 0: no limit
	batch        bool
}

// pass says whether a record pulled from the bus goes to this subscriber.
// Kinds and filters select patch and event records only.
func (q *request) pass(rec *events.Record) bool {
	switch rec.Kind {
	case events.KindPatch:
		if !q.patch {
			return false
		}
	case events.KindEvent:
		if !q.event {
			return false
		}
	default:
		return true
	}
	if len(q.filters) == 0 {
		return true
	}
	raw := rec.JSON()
	for _, f := range q.filters {
		if f(raw) {
			return true
		}
	}
	return false
}

// parseRequest reads the query of GET /v1/events. parseFilter may be nil
// when no filter language is wired in.
func parseRequest(q url.Values, parseFilter func(string) (func([]byte) bool, error)) (*request, error) {
	req := &request{patch: true, event: true}
	single := func(name string) (string, bool, error) {
		v, ok := q[name]
		if !ok {
			return "", false, nil
		}
		if len(v) > 1 {
			return "", false, &paramError{name, fmt.Errorf("given %d times, want at most once", len(v))}
		}
		return v[0], true, nil
	}

	if vs, ok := q[paramKind]; ok {
		req.patch, req.event = false, false
		for _, v := range vs {
			for k := range strings.SplitSeq(v, ",") {
				switch strings.TrimSpace(k) {
				case events.KindPatch:
					req.patch = true
				case events.KindEvent:
					req.event = true
				default:
					return nil, &paramError{paramKind, fmt.Errorf("unknown kind %s (want event, patch)", clip.Quote(k))}
				}
			}
		}
	}

	total := 0
	for _, expr := range q[paramFilter] {
		total += len(expr)
	}
	if total > maxFilterBytes {
		return nil, &paramError{paramFilter, fmt.Errorf("the filters total %d bytes, more than the %d accepted", total, maxFilterBytes)}
	}
	for i, expr := range q[paramFilter] {
		if parseFilter == nil {
			return nil, &paramError{paramFilter, fmt.Errorf("filters are not supported by this agent")}
		}
		f, err := parseFilter(expr)
		if err != nil {
			return nil, &paramError{paramFilter, fmt.Errorf("filter #%d %s: %w", i+1, clip.Quote(expr), err)}
		}
		req.filters = append(req.filters, f)
	}

	var err error
	if req.snapshot, err = boolParam(q, paramSnapshot); err != nil {
		return nil, err
	}
	if req.batch, err = boolParam(q, paramBatch); err != nil {
		return nil, err
	}

	v, ok, err := single(paramSince)
	if err != nil {
		return nil, err
	}
	if ok {
		req.since, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, &paramError{paramSince, fmt.Errorf("%s is not a sequence number", clip.Quote(v))}
		}
		req.resume = true
	}
	v, ok, err = single(paramEpoch)
	if err != nil {
		return nil, err
	}
	if ok {
		if !req.resume {
			return nil, &paramError{paramEpoch, fmt.Errorf("epoch without since")}
		}
		if v == "" || len(v) > 64 {
			return nil, &paramError{paramEpoch, fmt.Errorf("%s is not an epoch", clip.Quote(v))}
		}
		req.epoch = v
	}

	v, ok, err = single(paramSinceTime)
	if err != nil {
		return nil, err
	}
	if ok {
		if req.resume {
			return nil, &paramError{paramSinceTime, fmt.Errorf("since_time and since are exclusive")}
		}
		if req.snapshot {
			return nil, &paramError{paramSinceTime, fmt.Errorf("since_time and snapshot are exclusive")}
		}
		req.sinceTime, err = time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, &paramError{paramSinceTime, fmt.Errorf("%s is not an RFC 3339 time", clip.Quote(v))}
		}
	}

	v, ok, err = single(paramLimit)
	if err != nil {
		return nil, err
	}
	if ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, &paramError{paramLimit, fmt.Errorf("%s is not a positive number", clip.Quote(v))}
		}
		req.limit = n
	}
	return req, nil
}

// boolParam reads a flag: absent is false; "", "1" and "true" are true;
// "0" and "false" are false.
func boolParam(q url.Values, name string) (bool, error) {
	v, ok := q[name]
	if !ok {
		return false, nil
	}
	if len(v) > 1 {
		return false, &paramError{name, fmt.Errorf("given %d times, want at most once", len(v))}
	}
	switch v[0] {
	case "", "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, &paramError{name, fmt.Errorf("%s is not 0 or 1", clip.Quote(v[0]))}
}
