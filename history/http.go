package history

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"agent/filter"
	"agent/internal/clip"
)

// HeaderBefore is the response header of GET /v1/history that carries
// the key of the oldest record returned when a limit was given: pass it as
// before= to get the page of older records.
const HeaderBefore = "X-History-Before"

// ErrNoSink is wrapped by a Handler's Open when no sink is configured (or
// none by that name): HTTP 404.
var ErrNoSink = errors.New("no such history sink")

// Handler serves the history of the agent's sinks over HTTP:
//
//   - GET /v1/history: the records, one JSON line each (as agent events -o
//     json prints them), oldest first. An error after the first line ends
//     the answer with a line {"error": "..."}.
//   - GET /v1/history/timeline: {"since", "until", "step", "truncated",
//     "buckets": [{"t", "id", "n"}]}, the records counted by id (data.id, or
//     the kind of a patch) in buckets of step (default 60s) from since
//     (default 1h ago) to until (default now).
//
// Both take the parameters of ParseRequest.
type Handler struct {
	// Open returns a reader of the named sink ("" the first one). Its
	// error wraps ErrNoSink when there is no such sink.
	Open func(sink string) (*DB, error)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// ServeHTTP dispatches on the path's end.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Path) > 9 && r.URL.Path[len(r.URL.Path)-9:] == "/timeline" {
		h.timeline(w, r)
		return
	}
	h.records(w, r)
}

func (h *Handler) prepare(w http.ResponseWriter, r *http.Request) (*DB, Request, bool) {
	req, err := ParseRequest(r.URL.Query(), h.now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, req, false
	}
	db, err := h.Open(req.Sink)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return nil, req, false
	}
	return db, req, true
}

func (h *Handler) records(w http.ResponseWriter, r *http.Request) {
	db, req, ok := h.prepare(w, r)
	if !ok {
		return
	}
	started := false
	buf := make([]byte, 0, 64<<10)
	flush := func() {
		_, _ = w.Write(buf)
		buf = buf[:0]
	}
	_, err := db.Query(r.Context(), req.Query, func(row Row) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			if req.Query.Limit > 0 {
				w.Header().Set(HeaderBefore, row.Key.String())
			}
			w.WriteHeader(http.StatusOK)
		}
		buf = append(append(buf, row.Raw...), '\n')
		if len(buf) >= 60<<10 {
			flush()
		}
		return r.Context().Err()
	})
	if err != nil && r.Context().Err() == nil {
		if !started {
			writeError(w, statusOf(err), err.Error())
			return
		}
		line, _ := json.Marshal(map[string]string{"error": err.Error()})
		buf = append(append(buf, line...), '\n')
	}
	if !started {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
	flush()
}

// timelineAnswer is the body of GET /v1/history/timeline.
type timelineAnswer struct {
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	Step      float64   `json:"step"`
	Truncated bool      `json:"truncated"`
	Buckets   []Bucket  `json:"buckets"`
}

func (h *Handler) timeline(w http.ResponseWriter, r *http.Request) {
	db, req, ok := h.prepare(w, r)
	if !ok {
		return
	}
	q := req.Query
	if q.Until.IsZero() {
		q.Until = h.now()
	}
	if q.Since.IsZero() {
		q.Since = q.Until.Add(-time.Hour)
	}
	step := req.Step
	if step == 0 {
		step = time.Minute
	}
	if q.Until.Sub(q.Since)/step > 10000 {
		writeError(w, http.StatusBadRequest, "step: too small for the time range (at most 10000 buckets)")
		return
	}
	buckets, trunc, err := db.Timeline(r.Context(), q, step)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	if buckets == nil {
		buckets = []Bucket{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(timelineAnswer{Since: q.Since.UTC(), Until: q.Until.UTC(), Step: step.Seconds(), Truncated: trunc, Buckets: buckets})
}

// statusOf maps an error to an HTTP status.
func statusOf(err error) int {
	var se *filter.SyntaxError
	var pe *ParamError
	switch {
	case errors.As(err, &se), errors.As(err, &pe):
		return http.StatusBadRequest
	case errors.Is(err, ErrNoSink), errors.Is(err, ErrNoDatabase), errors.Is(err, ErrNoSchema):
		return http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusServiceUnavailable
}

func writeError(w http.ResponseWriter, code int, msg string) {
	msg = clip.N(msg, 1024) // the inputs it names are clipped already; a last guard
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
