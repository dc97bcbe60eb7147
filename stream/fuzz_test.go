package stream

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"agent/filter"
	"agent/internal/clip"
)

// parseFilter is the filter language the agent wires in.
func parseFilter(expr string) (func([]byte) bool, error) {
	e, err := filter.Parse(expr)
	if err != nil {
		return nil, err
	}
	return e.Match, nil
}

// FuzzParseRequest feeds any query string to the parser of GET /v1/events:
// no panic, every refusal a *paramError, and no error echoing more than
// 200 bytes of any one input. Seeds: below and testdata/fuzz.
func FuzzParseRequest(f *testing.F) {
	for _, q := range []string{
		"kind=patch&filter=a=1&filter=b=2&snapshot&since=5&epoch=e&limit=7&batch=1",
		"kind=event,patch&filter=data.id~^instance_&snapshot=1",
		"since=18446744073709551615&epoch=9f2c",
		"since_time=2026-11-22T10:00:01.123456Z&limit=1",
		"kind=nope&since=-1&limit=0&batch=2",
		"filter=" + url.QueryEscape(`a in ["x","y"] and not (b>1 or c!~"z")`),
		"%zz&filter&filter=&since=&epoch=",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, err := parseRequest(q, parseFilter)
		if err != nil {
			var pe *paramError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v, want *paramError", err, err)
			}
			// An input is repeated quoted and clipped (clip.Quote: at
			// most MaxEcho+40 bytes), at most three times: a bad filter
			// is named by the stream, by the parser, and its bad regular
			// expression again by the parser. The message's own words
			// are few.
			if msg := err.Error(); len(msg) > 3*(clip.MaxEcho+40)+200 {
				t.Fatalf("error of %d bytes for a query of %d: %.300s", len(msg), len(raw), msg)
			}
			return
		}
		if !r.patch && !r.event {
			t.Fatalf("a request for no kind at all passed: %q", raw)
		}
		if r.limit < 0 || (r.epoch != "" && !r.resume) {
			t.Fatalf("inconsistent request from %q: %+v", raw, r)
		}
		for _, f := range r.filters {
			f([]byte(`{"kind":"event","data":{"id":"x"}}`))
		}
	})
}

func TestParseRequestLimits(t *testing.T) {
	big := strings.Repeat("x", 600<<10)
	for name, q := range map[string]url.Values{
		"600 KB filter":       {"filter": {"a=" + big}},
		"600 KB since":        {"since": {big}},
		"600 KB kind":         {"kind": {big}},
		"filters over 64 KiB": {"filter": {strings.Repeat("a ", 20<<10), strings.Repeat("b ", 20<<10)}},
		"30000 terms":         {"filter": {strings.Repeat("a or ", 30000) + "a"}},
		"1001 terms":          {"filter": {strings.Repeat("a or ", 1000) + "a"}},
	} {
		_, err := parseRequest(q, parseFilter)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if len(err.Error()) > 600 {
			t.Errorf("%s: error of %d bytes", name, len(err.Error()))
		}
	}
}

// TestMaxSubscribers: past the cap a subscription gets 503 and the ones
// open are untouched; a slot freed is taken again.
func TestMaxSubscribers(t *testing.T) {
	b := newFakeBus(16, 16)
	srv := serve(t, HandlerConfig{Bus: b, MaxSubscribers: 2})
	s1 := dial(t, srv, DialOptions{})
	dial(t, srv, DialOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Dial(ctx, DialOptions{URL: srv.url, Logger: quietLogger()})
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || !strings.Contains(he.Message, "max_subscribers") {
		t.Fatalf("third subscriber: %v, want 503 naming max_subscribers", err)
	}
	if st := srv.h.Stats(); st.Refused != 1 {
		t.Fatalf("refused = %d, want 1", st.Refused)
	}
	_ = s1.Close()
	waitFor(t, "a free slot", func() bool { return srv.h.Stats().Subscribers < 2 })
	dial(t, srv, DialOptions{})
}
