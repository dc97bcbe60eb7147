package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"agent/events"
	"agent/internal/testutil"
)

// TestFanoutExact checks default-mode subscribers of every sort joining
// while records flow: each gets exactly the records it asked for, in
// order, once, one per message, whether the fan-out writer serves it (no
// limit), it joins in the middle of the chain (snapshot, resume) or it
// filters (alone, or sharing a selector with a subscriber of the same
// filter); a mirror built from a snapshot equals the source.
func TestFanoutExact(t *testing.T) {
	forEachBus(t, 1<<15, 1<<15, func(t *testing.T, b testBus) {
		st := newStore(b, 7)
		srv := serve(t, HandlerConfig{Bus: b, Snapshot: st.snapshot, Progress: 20 * time.Millisecond})
		_, epoch := b.Position()
		joinWhileFlowing(t, b, st, srv.url, true, []string{
			"snapshot=1",
			"",
			"kind=event",
			"kind=patch",
			"filter=kind=event",
			"filter=kind=event",
			"since=%d&epoch=" + epoch,
			"snapshot=1&kind=patch",
		})
		if srv.h.fanWrites.Load() == 0 {
			t.Fatal("the fan-out writer wrote nothing")
		}
	})
}

// checkExact checks that r got exactly the records of its query up to end.
func checkExact(t *testing.T, r *rawSub, kinds map[uint64]string, kindsMu *sync.Mutex, end uint64, doc []byte) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%q: %v", r.query, r.err)
	}
	check := func(ok bool, format string, args ...any) {
		t.Helper()
		if !ok {
			t.Fatalf("%q: "+format, append([]any{r.query}, args...)...)
		}
	}
	check(len(r.recs) > 0, "nothing received")
	var start uint64
	var m *Mirror
	data := r.recs
	switch first := r.recs[0]; {
	case first.Kind == events.KindFull:
		start, m, data = first.Seq, &Mirror{}, data[1:]
		check(m.Apply(first) == nil, "full record does not apply")
	case first.Kind == events.KindProgress:
		start, data = first.Seq, data[1:]
	case strings.Contains(r.query, "since="):
		fmt.Sscanf(r.query[strings.Index(r.query, "since=")+len("since="):], "%d", &start)
	default:
		t.Fatalf("%q: first record %s", r.query, first.JSON())
	}
	var got []uint64
	for _, rec := range data {
		switch rec.Kind {
		case events.KindProgress:
			continue
		case events.KindPatch, events.KindEvent:
		default:
			t.Fatalf("%q: unexpected %s", r.query, rec.JSON())
		}
		got = append(got, rec.Seq)
		if m != nil {
			check(m.Apply(rec) == nil, "record %d does not apply", rec.Seq)
		}
	}
	var want []uint64
	kindsMu.Lock()
	for seq := start + 1; seq <= end; seq++ {
		k := kinds[seq]
		switch {
		case strings.Contains(r.query, "kind=event"):
			if k != events.KindEvent {
				continue
			}
		case strings.Contains(r.query, "kind=patch"):
			if k != events.KindPatch {
				continue
			}
		}
		want = append(want, seq)
	}
	kindsMu.Unlock()
	check(fmt.Sprint(got) == fmt.Sprint(want), "got %d records, want %d (first difference at %d)", len(got), len(want), testutil.FirstDiff(got, want))
	if m != nil {
		check(jsonEqual(m.Doc(), doc), "mirror differs from the source")
	}
}

// TestSelectorsShared checks that subscribers asking for the same kinds
// and filters share one selector, whatever the order of the filters, and
// that the last one to go releases it.
func TestSelectorsShared(t *testing.T) {
	parse := func(q string) *request {
		t.Helper()
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		req, err := parseRequest(v, testFilter)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	var ss selectors
	a := ss.get(parse("filter=data.id=x&filter=kind=event"))
	b := ss.get(parse("filter=kind=event&filter=data.id=x&filter=kind=event"))
	c := ss.get(parse("kind=event&filter=kind=event&filter=data.id=x"))
	d := ss.get(parse(""))
	if a != b {
		t.Fatal("same filters in another order: not shared")
	}
	if a == c || a == d || c == d {
		t.Fatal("different selections share a selector")
	}
	ss.put(a)
	if e := ss.get(parse("filter=data.id=x&filter=kind=event")); e != a {
		t.Fatal("a selector still held was dropped")
	} else {
		ss.put(e)
	}
	ss.put(b)
	ss.put(c)
	ss.put(d)
	if len(ss.m) != 0 {
		t.Fatalf("%d selectors left after every subscriber went", len(ss.m))
	}
}

// TestFanoutHandBack sends records bigger than a socket holds to a
// subscriber that reads nothing until they are all published (12 MB: more
// than the kernel buffers of a connection nobody reads hold), so that the
// fan-out writer's writes to it are cut and the session finishes them
// itself, then gives itself back; and to one that reads at once. Both get
// every record in order, whole.
func TestFanoutHandBack(t *testing.T) {
	forEachBus(t, 4096, 4096, func(t *testing.T, b testBus) {
		srv := serve(t, HandlerConfig{Bus: b, Progress: time.Hour})
		pad := strings.Repeat("x", 200<<10)
		const n = 60
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var readers sync.WaitGroup
		errs := make(chan error, 2)
		ready := make(chan struct{}, 2)
		published := make(chan struct{})
		for _, stall := range []bool{false, true} {
			readers.Go(func() {
				conn, _, err := websocket.Dial(ctx, srv.url, nil)
				if err != nil {
					errs <- err
					return
				}
				defer conn.CloseNow()
				conn.SetReadLimit(-1)
				if _, _, err := conn.Read(ctx); err != nil { // the start progress
					errs <- err
					return
				}
				ready <- struct{}{}
				if stall {
					<-published
				}
				for want := uint64(1); want <= n; want++ {
					_, data, err := conn.Read(ctx)
					if err != nil {
						errs <- fmt.Errorf("stalled %v, record %d: %w", stall, want, err)
						return
					}
					rec, err := events.ParseRecord(data)
					if err != nil || rec.Seq != want || !bytes.Contains(data, []byte(pad)) {
						errs <- fmt.Errorf("stalled %v: record %d: got %.80q (%v)", stall, want, data, err)
						return
					}
				}
			})
		}
		<-ready
		<-ready
		data := json.RawMessage(`{"id":"big","pad":"` + pad + `"}`)
		for range n {
			b.Publish("n1", events.KindEvent, data)
		}
		// The writer has had every record to write (the fast reader got
		// them all) before the stalled one reads.
		testutil.Eventually(t, 30*time.Second, func() bool { return srv.h.handBacks.Load() > 0 },
			"no hand-back while a subscriber read nothing (fan-out writes %d)", func() any { return srv.h.fanWrites.Load() })
		close(published)
		readers.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if srv.h.fanWrites.Load() == 0 {
			t.Fatal("no fan-out write")
		}
	})
}

// TestFanoutChurn connects and drops default-mode subscribers (some
// filtered) from many goroutines while records flow, so that the framer
// and the writer stop and start under them: each gets its records in
// order, and nothing is left running.
func TestFanoutChurn(t *testing.T) {
	b := newFakeBus(1<<16, 1<<16)
	srv := serve(t, HandlerConfig{Bus: b})
	base := runtime.NumGoroutine()
	churnSubscribers(t, b, srv, 6, func(i int) json.RawMessage {
		return eventData([]string{"a", "b"}[i%2])
	}, func(g int) (DialOptions, uint64) {
		if g%3 == 2 {
			return DialOptions{Filters: []string{"data.id=a"}}, 2 // every other record is "a"
		}
		return DialOptions{}, 1
	})
	waitFor(t, "the sessions, the framer and the writer to end", func() bool { return runtime.NumGoroutine() <= base })
	srv.h.fan.mu.Lock()
	users, gen := srv.h.fan.users, srv.h.fan.gen
	srv.h.fan.mu.Unlock()
	if users != 0 || gen == 0 || srv.h.fanWrites.Load() == 0 {
		t.Fatalf("framer users %d, generation %d, writer's writes %d", users, gen, srv.h.fanWrites.Load())
	}
	srv.h.sels.mu.Lock()
	left := len(srv.h.sels.m)
	srv.h.sels.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d selectors left", left)
	}
	t.Logf("framer generations: %d, writer's writes: %d, hand-backs: %d", gen, srv.h.fanWrites.Load(), srv.h.handBacks.Load())
}

// TestFanoutTLS checks default-mode subscribers on a connection that
// cannot be written without blocking (TLS): they follow the shared
// windows from their own goroutine.
func TestFanoutTLS(t *testing.T) {
	b := newFakeBus(4096, 4096)
	h := NewHandler(HandlerConfig{Bus: b, Logger: quietLogger()})
	ts := httptest.NewUnstartedServer(h)
	ts.StartTLS()
	t.Cleanup(func() {
		_ = h.Close()
		ts.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var streams []*Stream
	for range 3 {
		s, err := Dial(ctx, DialOptions{URL: ts.URL + "/v1/events", HTTPClient: ts.Client(), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		next(t, s) // the start progress
		streams = append(streams, s)
	}
	for range 200 {
		b.Publish("n1", events.KindEvent, eventData("e"))
	}
	for i, s := range streams {
		for want := uint64(1); want <= 200; want++ {
			if rec := nextData(t, s); rec.Seq != want {
				t.Fatalf("stream %d: seq %d, want %d", i, rec.Seq, want)
			}
		}
	}
	if w := h.fanWrites.Load(); w != 0 {
		t.Fatalf("the fan-out writer wrote %d times on TLS connections", w)
	}
}

// TestFrameSizes sends records whose encodings straddle the websocket
// frame header's length steps (125/126 bytes, 65535/65536) in both modes:
// each arrives whole.
func TestFrameSizes(t *testing.T) {
	b := newFakeBus(4096, 4096)
	srv := serve(t, HandlerConfig{Bus: b, BatchWindow: time.Millisecond})
	var sizes []int
	for _, edge := range []int{125, 126, 65535, 65536} {
		sizes = append(sizes, edge-1, edge, edge+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var conns []*websocket.Conn
	for _, q := range []string{"", "?batch=1"} {
		conn, _, err := websocket.Dial(ctx, srv.url+q, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseNow()
		conn.SetReadLimit(-1)
		if _, _, err := conn.Read(ctx); err != nil { // the start progress
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	var want [][]byte
	for _, size := range sizes {
		// Size the padding so that the whole record is size bytes.
		probe := b.Publish("n1", events.KindEvent, eventData("p"))
		rec := b.Publish("n1", events.KindEvent, eventData("p"+strings.Repeat("x", max(0, size-len(probe.JSON())))))
		want = append(want, probe.JSON(), rec.JSON())
	}
	for i, conn := range conns {
		var got [][]byte
		for len(got) < len(want) {
			_, data, err := conn.Read(ctx)
			if err != nil {
				t.Fatalf("conn %d after %d records: %v", i, len(got), err)
			}
			got = append(got, bytes.Split(data, []byte{'\n'})...)
		}
		for j := range want {
			if !bytes.Equal(got[j], want[j]) {
				t.Fatalf("conn %d record %d: %d bytes %.60q, want %d bytes", i, j, len(got[j]), got[j], len(want[j]))
			}
		}
	}
}

// TestFanoutSharesEncoding checks that subscribers with the same filter
// text share one encoding of each window: three subscribers, two of them
// with the same filter, make two encodings per window.
func TestFanoutSharesEncoding(t *testing.T) {
	b := newFakeBus(4096, 4096)
	srv := serve(t, HandlerConfig{Bus: b})
	streams := startSubscribers(t, srv, DialOptions{Filters: []string{"data.id=a"}}, DialOptions{Filters: []string{"data.id=a"}}, DialOptions{})
	waitFanUsers(t, srv, len(streams))
	rec := b.Publish("n1", events.KindEvent, eventData("a"))
	for i, s := range streams {
		if got := nextData(t, s); got.Seq != rec.Seq {
			t.Fatalf("stream %d: seq %d, want %d", i, got.Seq, rec.Seq)
		}
	}
	w := srv.h.fan.newest()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.to != rec.Seq || len(w.frames) != 2 {
		t.Fatalf("window up to %d (want %d) has %d encodings, want 2", w.to, rec.Seq, len(w.frames))
	}
}

// TestFanoutNoWindowWait checks that the default mode's shared path adds
// no batching window: with a batch window of an hour, default-mode
// subscribers (one unfiltered, one filtered) that follow the shared frames
// get each record before the next is published.
func TestFanoutNoWindowWait(t *testing.T) {
	b := newFakeBus(4096, 4096)
	srv := serve(t, HandlerConfig{Bus: b, BatchWindow: time.Hour, Progress: time.Hour})
	streams := startSubscribers(t, srv, DialOptions{}, DialOptions{Filters: []string{"data.id=a"}})
	waitFanUsers(t, srv, len(streams))
	for range 5 {
		rec := b.Publish("n1", events.KindEvent, eventData("a"))
		for i, s := range streams {
			if got := nextData(t, s); got.Seq != rec.Seq {
				t.Fatalf("stream %d: seq %d, want %d", i, got.Seq, rec.Seq)
			}
		}
	}
	if srv.h.fanWrites.Load() == 0 {
		t.Fatal("the fan-out writer wrote nothing")
	}
}
