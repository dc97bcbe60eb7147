package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"agent/events"
)

func TestSnapshotThenPatchesMirror(t *testing.T) {
	forEachBus(t, 4096, 4096, func(t *testing.T, b testBus) {
		st := newStore(b, 1)
		for range 20 {
			st.change()
		}
		srv := serve(t, HandlerConfig{Bus: b, Snapshot: st.snapshot, Nodename: "n0"})
		for _, batch := range []bool{false, true} {
			s := dial(t, srv, DialOptions{Snapshot: true, Batch: batch})
			full := next(t, s)
			if full.Kind != events.KindFull {
				t.Fatalf("first record is %s, want full", full.Kind)
			}
			var m Mirror
			if err := m.Apply(full); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for range 500 {
					st.change()
					if st.rnd.IntN(10) == 0 {
						b.Publish("n1", events.KindEvent, eventData("node_up"))
					}
				}
			})
			wg.Wait()
			_, want := st.current()
			for m.Seq() < want {
				if err := m.Apply(next(t, s)); err != nil {
					t.Fatal(err)
				}
			}
			doc, _ := st.current()
			if !jsonEqual(m.Doc(), doc) {
				t.Fatalf("batch=%v: mirror differs from the source at seq %d", batch, m.Seq())
			}
		}
	})
}

func TestResumeAfterForcedDisconnect(t *testing.T) {
	forEachBus(t, 8192, 8192, func(t *testing.T, b testBus) {
		srv := serve(t, HandlerConfig{Bus: b})
		b.Publish("n1", events.KindEvent, eventData("before"))
		s := dial(t, srv, DialOptions{Reconnect: true})
		const n = 600
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			for i := range n {
				b.Publish("n1", events.KindEvent, eventData("e"))
				if i%5 == 0 {
					runtime.Gosched()
				}
			}
		})
		var last uint64 = 1
		for got := 0; got < n; {
			rec := nextData(t, s)
			if rec.Seq != last+1 {
				t.Fatalf("got seq %d after %d", rec.Seq, last)
			}
			last = rec.Seq
			got++
			if got%150 == 0 {
				srv.lis.cut() // the agent side drops every connection
			}
		}
	})
}

func TestResumeTooOld(t *testing.T) {
	forEachBus(t, 64, 4096, func(t *testing.T, b testBus) {
		st := newStore(b, 2)
		srv := serve(t, HandlerConfig{Bus: b, Snapshot: st.snapshot})
		for range 200 {
			st.change()
		}
		_, epoch := b.Position()
		for _, snap := range []bool{false, true} {
			head, _ := b.Position()
			s := dial(t, srv, DialOptions{Since: 10, Epoch: epoch, Snapshot: snap})
			rec := next(t, s)
			if rec.Kind != events.KindReset || rec.Seq != head || !strings.Contains(string(rec.Data), "reason") {
				t.Fatalf("snapshot=%v: first record %s, want a reset at 200", snap, rec.JSON())
			}
			var m Mirror
			if snap {
				full := next(t, s)
				if full.Kind != events.KindFull || full.Seq != head {
					t.Fatalf("after reset: %s, want full at %d", full.JSON(), head)
				}
				_ = m.Apply(full)
			}
			st.change()
			rec = nextData(t, s)
			if rec.Seq != head+1 {
				t.Fatalf("after reset: seq %d, want %d", rec.Seq, head+1)
			}
			if snap {
				if err := m.Apply(rec); err != nil {
					t.Fatal(err)
				}
				if doc, _ := st.current(); !jsonEqual(m.Doc(), doc) {
					t.Fatal("mirror differs after reset and snapshot")
				}
			}
			_ = s.Close()
		}
		// Another epoch, and a point in the future, are resets too.
		for _, o := range []DialOptions{{Since: 5, Epoch: "other"}, {Since: 100000, Epoch: epoch}} {
			s := dial(t, srv, o)
			if rec := next(t, s); rec.Kind != events.KindReset {
				t.Fatalf("%+v: got %s, want reset", o, rec.JSON())
			}
		}
		// A resume that is possible gives what follows and no reset.
		s := dial(t, srv, DialOptions{Since: 195, Epoch: epoch})
		if rec := next(t, s); rec.Kind != events.KindPatch || rec.Seq != 196 {
			t.Fatalf("resume at 195: got %s", rec.JSON())
		}
	})
}

func TestSlowSubscriberDropped(t *testing.T) {
	// With batch, both take the framer's shared frames.
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) { testSlowSubscriberDropped(t, batch) })
	}
}

func testSlowSubscriberDropped(t *testing.T, batch bool) {
	b := newFakeBus(1<<20, 64)
	srv := serve(t, HandlerConfig{Bus: b, BatchWindow: time.Millisecond})
	slow := dial(t, srv, DialOptions{Batch: batch})
	fast := dial(t, srv, DialOptions{Batch: batch})
	next(t, slow) // the start progress: the session runs
	next(t, fast)

	var mu sync.Mutex
	var fastSeqs []uint64
	fastErr := make(chan error, 1)
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			rec, err := fast.Next(ctx)
			cancel()
			if err != nil {
				fastErr <- err
				return
			}
			if rec.Kind == events.KindEvent {
				mu.Lock()
				fastSeqs = append(fastSeqs, rec.Seq)
				mu.Unlock()
			}
		}
	}()
	received := func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return uint64(len(fastSeqs))
	}

	big := json.RawMessage(`{"id":"bulk","pad":"` + strings.Repeat("x", 4000) + `"}`)
	// Publish until the slow one is stuck in a write, past its lag limit
	// (its subscription's position stays while 256 more records go by), or
	// already dropped (when its goroutine was kept from running while the
	// fast one took more than the limit).
	var published, stuckAt, still uint64
	for (still < 256 || published-stuckAt <= uint64(b.MaxLag())) && srv.h.Stats().SlowDisconnects == 0 {
		if published > 200000 {
			t.Fatalf("the slow subscriber never fell behind (at %d, still %d): %s", stuckAt, still, b.dump())
		}
		b.Publish("n1", events.KindEvent, big)
		published++
		// Keep the fast one within its lag limit.
		waitFor(t, "the fast subscriber", func() bool { return received()+32 >= published })
		if pos, ok := b.lowestPos(); !ok || pos != stuckAt {
			stuckAt, still = pos, 0
		} else {
			still++
		}
	}
	// The slow one reads now: what was queued, then the close.
	var err error
	for err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = slow.Next(ctx)
		cancel()
	}
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "could not keep up") {
		t.Fatalf("slow subscriber ended with %v, want 1008 could not keep up", err)
	}
	waitFor(t, "all records at the fast subscriber", func() bool { return received() == published })
	mu.Lock()
	for i, s := range fastSeqs {
		if s != uint64(i)+1 {
			t.Fatalf("fast subscriber got seq %d at %d", s, i)
		}
	}
	mu.Unlock()
	if got := srv.h.Stats().SlowDisconnects; got != 1 {
		t.Fatalf("SlowDisconnects = %d", got)
	}
	if !batch && srv.h.fanWrites.Load() == 0 {
		t.Fatal("the fan-out writer wrote nothing")
	}
	select {
	case err := <-fastErr:
		t.Fatalf("fast subscriber ended: %v", err)
	default:
	}
}

func TestKindsAndFilters(t *testing.T) {
	forEachBus(t, 4096, 4096, func(t *testing.T, b testBus) {
		srv := serve(t, HandlerConfig{Bus: b})
		evs := dial(t, srv, DialOptions{Kinds: []string{"event"}, Filters: []string{"data.id=node_up", "data.id=node_down"}})
		patches := dial(t, srv, DialOptions{Kinds: []string{"patch"}})
		both := dial(t, srv, DialOptions{})
		for i := range 30 {
			b.Publish("n1", events.KindEvent, eventData([]string{"node_up", "node_down", "node_freeze"}[i%3]))
			b.Publish("n1", events.KindPatch, json.RawMessage(`[]`))
		}
		for i := range 20 {
			rec := nextData(t, evs)
			if rec.Kind != events.KindEvent || strings.Contains(string(rec.Data), "node_freeze") {
				t.Fatalf("event stream got %s", rec.JSON())
			}
			_ = i
		}
		for range 30 {
			if rec := nextData(t, patches); rec.Kind != events.KindPatch {
				t.Fatalf("patch stream got %s", rec.JSON())
			}
		}
		for i := range 60 {
			if rec := nextData(t, both); rec.Seq != uint64(i+1) {
				t.Fatalf("unfiltered stream got %s", rec.JSON())
			}
		}
	})
}

func TestBadQuery(t *testing.T) {
	b := newFakeBus(16, 16)
	srv := serve(t, HandlerConfig{Bus: b})
	for _, tc := range []struct{ query, param string }{
		{"kind=bogus", "kind"},
		{"kind=event,", "kind"},
		{"filter=nonsense", "filter"},
		{"since=x", "since"},
		{"since=1&since=2", "since"},
		{"epoch=e1", "epoch"},
		{"since_time=yesterday", "since_time"},
		{"since=1&since_time=2026-01-01T00:00:00Z", "since_time"},
		{"limit=0", "limit"},
		{"limit=x", "limit"},
		{"snapshot=maybe", "snapshot"},
		{"batch=2", "batch"},
	} {
		resp, err := http.Get(srv.url + "?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		derr := json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || derr != nil || !strings.Contains(body.Error, "parameter "+tc.param) {
			t.Errorf("%s: %d %q (%v), want 400 naming %s", tc.query, resp.StatusCode, body.Error, derr, tc.param)
		}
	}
	// The filter error names the filter and the column.
	_, err := Dial(context.Background(), DialOptions{URL: srv.url, Filters: []string{"kind=event", "oops"}})
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 400 || !strings.Contains(he.Message, `"oops"`) || !strings.Contains(he.Message, "column") {
		t.Fatalf("bad filter: %v", err)
	}
	// Not a websocket.
	resp, err := http.Get(srv.url)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: %d", resp.StatusCode)
	}
}

func TestDialErrors(t *testing.T) {
	_, err := Dial(context.Background(), DialOptions{URL: "http://127.0.0.1:1/v1/events"})
	if err == nil || !strings.Contains(err.Error(), "connect to") {
		t.Fatalf("dial to nothing: %v", err)
	}
}

func TestOversizedClientFrame(t *testing.T) {
	b := newFakeBus(64, 64)
	srv := serve(t, HandlerConfig{Bus: b})
	good := dial(t, srv, DialOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bad, _, err := websocket.Dial(ctx, srv.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.CloseNow()
	waitFor(t, "2 subscribers", func() bool { return srv.h.Stats().Subscribers == 2 })
	// The agent may cut the connection while the frame is still being sent,
	// in which case the write or the read sees a reset instead of the 1009.
	werr := bad.Write(ctx, websocket.MessageText, []byte(strings.Repeat("y", 8<<10)))
	for werr == nil {
		_, _, err := bad.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusMessageTooBig && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("oversized frame: closed with %v, want 1009", err)
			}
			break
		}
	}
	waitFor(t, "the bad subscriber gone", func() bool { return srv.h.Stats().Subscribers == 1 })
	b.Publish("n1", events.KindEvent, eventData("after"))
	if rec := nextData(t, good); rec.Seq != 1 {
		t.Fatalf("other subscriber got %s", rec.JSON())
	}
	// A small message is ignored.
	ok, _, err := websocket.Dial(ctx, srv.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ok.CloseNow()
	if err := ok.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	b.Publish("n1", events.KindEvent, eventData("after2"))
	for {
		_, data, err := ok.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "after2") {
			break
		}
	}
}

func TestProgressWhileIdle(t *testing.T) {
	b := newFakeBus(64, 64)
	srv := serve(t, HandlerConfig{Bus: b, Progress: 10 * time.Millisecond, Nodename: "n9"})
	b.Publish("n1", events.KindEvent, eventData("x"))
	s := dial(t, srv, DialOptions{Kinds: []string{"patch"}})
	first := next(t, s)
	if first.Kind != events.KindProgress || first.Seq != 1 || first.Nodename != "n9" || first.Epoch != "e1" {
		t.Fatalf("first: %s", first.JSON())
	}
	// Events are filtered out, but the progress seq moves past them.
	b.Publish("n1", events.KindEvent, eventData("y"))
	for {
		rec := next(t, s)
		if rec.Kind != events.KindProgress {
			t.Fatalf("got %s", rec.JSON())
		}
		if rec.Seq == 2 {
			break
		}
	}
	for range 3 {
		if rec := next(t, s); rec.Kind != events.KindProgress || rec.Seq != 2 {
			t.Fatalf("got %s", rec.JSON())
		}
	}
}

func TestLimitAndSinceTime(t *testing.T) {
	b := newFakeBus(64, 64)
	srv := serve(t, HandlerConfig{Bus: b})
	for i := range 10 {
		b.Publish("n1", events.KindEvent, eventData("e"))
		_ = i
	}
	s := dial(t, srv, DialOptions{SinceTime: time.Now().Add(-time.Hour)})
	if rec := nextData(t, s); rec.Seq != 1 {
		t.Fatalf("since_time: first %s", rec.JSON())
	}
	u := srv.url + "?limit=3&since=0"
	conn, _, err := websocket.Dial(context.Background(), u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	n := 0
	for {
		_, _, err := conn.Read(context.Background())
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure || n != 3 {
				t.Fatalf("limit: %d records then %v", n, err)
			}
			break
		}
		n++
	}
}

func TestSubprotocolEcho(t *testing.T) {
	b := newFakeBus(64, 64)
	srv := serve(t, HandlerConfig{Bus: b})
	conn, _, err := websocket.Dial(context.Background(), srv.url, &websocket.DialOptions{Subprotocols: []string{"secret-token", "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if conn.Subprotocol() != "secret-token" {
		t.Fatalf("subprotocol %q", conn.Subprotocol())
	}
}

func TestCloseEndsEverything(t *testing.T) {
	base := runtime.NumGoroutine()
	b := newFakeBus(64, 64)
	h := NewHandler(HandlerConfig{Bus: b, Logger: quietLogger()})
	srv := &http.Server{Handler: h}
	lis := newLoopbackListener(t)
	go func() { _ = srv.Serve(lis) }()
	u := "http://" + lis.Addr().String() + "/v1/events"
	var streams []*Stream
	for range 5 {
		s, err := Dial(context.Background(), DialOptions{URL: u, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
		next(t, s)
	}
	// One raw client that never reads.
	raw, _, err := websocket.Dial(context.Background(), u, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "6 subscribers", func() bool { return h.Stats().Subscribers == 6 })
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		_, err := s.Next(context.Background())
		if websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("stream ended with %v, want 1001", err)
		}
		_ = s.Close()
	}
	_ = raw.CloseNow()
	_ = srv.Close()
	http.DefaultClient.CloseIdleConnections()
	waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base })
	// A closed handler refuses.
	rec := httpRecorder(h, u)
	if rec != http.StatusServiceUnavailable {
		t.Fatalf("after Close: %d", rec)
	}
}

func TestUnixHTTPClient(t *testing.T) {
	b := newFakeBus(64, 64)
	h := NewHandler(HandlerConfig{Bus: b, Logger: quietLogger()})
	defer h.Close()
	lis := newUnixListener(t)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	s, err := Dial(context.Background(), DialOptions{HTTPClient: UnixHTTPClient(lis.Addr().String()), URL: "http://unix/v1/events", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b.Publish("n1", events.KindEvent, eventData("x"))
	if rec := nextData(t, s); rec.Seq != 1 {
		t.Fatalf("got %s", rec.JSON())
	}
}

func TestStreamCloseAndContext(t *testing.T) {
	b := newFakeBus(64, 64)
	srv := serve(t, HandlerConfig{Bus: b})
	s := dial(t, srv, DialOptions{Reconnect: true})
	next(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Next: %v", err)
	}
	b.Publish("n1", events.KindEvent, eventData("x"))
	if rec := nextData(t, s); rec.Seq != 1 {
		t.Fatalf("after a cancelled Next: %s", rec.JSON())
	}
	_ = s.Close()
	if _, err := s.Next(context.Background()); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("after Close: %v", err)
	}
	// Without Reconnect, the end of the agent's stream is the end.
	s2 := dial(t, srv, DialOptions{})
	next(t, s2)
	srv.lis.cut()
	if _, err := s2.Next(context.Background()); !errors.Is(err, ErrDisconnected) || errors.Is(err, io.EOF) {
		t.Fatalf("cut without reconnect: %v", err)
	}
}

func TestParseRequest(t *testing.T) {
	q, _ := url.ParseQuery("kind=patch&filter=a=1&filter=b=2&snapshot&since=5&epoch=e&limit=7&batch=1")
	r, err := parseRequest(q, testFilter)
	if err != nil {
		t.Fatal(err)
	}
	if !r.patch || r.event || len(r.filters) != 2 || !r.snapshot || !r.resume || r.since != 5 || r.epoch != "e" || r.limit != 7 || !r.batch {
		t.Fatalf("%+v", r)
	}
	r, err = parseRequest(url.Values{}, nil)
	if err != nil || !r.patch || !r.event || r.resume || r.snapshot {
		t.Fatalf("defaults: %+v %v", r, err)
	}
	if _, err := parseRequest(url.Values{"filter": {"x=1"}}, nil); err == nil {
		t.Fatal("filter without a parser accepted")
	}
}
