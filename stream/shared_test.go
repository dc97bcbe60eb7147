package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"agent/events"
)

// rawSub reads what the agent sends exactly as sent: unlike Stream, it
// drops no duplicate, so that the tests see any the handler would send.
type rawSub struct {
	query string
	// oneEach: a message must hold one record (the default mode).
	oneEach bool
	recs    []*events.Record
	err     error
}

// read reads until a record at or after final() (when it is not 0) or an
// error.
func (r *rawSub) read(ctx context.Context, url string, final func() uint64) {
	conn, _, err := websocket.Dial(ctx, url+"?"+r.query, nil)
	if err != nil {
		r.err = err
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(-1)
	var last uint64
	for {
		if f := final(); f != 0 && last >= f {
			return
		}
		_, data, err := conn.Read(ctx)
		if err != nil {
			r.err = fmt.Errorf("after seq %d: %w", last, err)
			return
		}
		if r.oneEach && bytes.IndexByte(data, '\n') >= 0 {
			r.err = fmt.Errorf("after seq %d: a message holds several records", last)
			return
		}
		for line := range bytes.SplitSeq(data, []byte{'\n'}) {
			rec, err := events.ParseRecord(line)
			if err != nil {
				r.err = fmt.Errorf("bad line %q: %w", line, err)
				return
			}
			r.recs = append(r.recs, rec)
			last = max(last, rec.Seq)
		}
	}
}

// TestSharedBatchExact checks batch subscribers of every sort joining
// while records flow: each gets exactly the records it asked for, in
// order, once, whether it follows the framer's windows from where it
// joined or reads what it lacks first (snapshot, resume), with or without
// a filter.
func TestSharedBatchExact(t *testing.T) {
	forEachBus(t, 1<<15, 1<<15, func(t *testing.T, b testBus) {
		st := newStore(b, 3)
		srv := serve(t, HandlerConfig{Bus: b, Snapshot: st.snapshot, BatchWindow: time.Millisecond, Progress: 20 * time.Millisecond})
		_, epoch := b.Position()
		joinWhileFlowing(t, b, st, srv.url, false, []string{
			"batch=1&snapshot=1",
			"batch=1",
			"batch=1&kind=event",
			"batch=1&kind=patch",
			"batch=1&filter=kind=event",
			"batch=1&since=%d&epoch=" + epoch,
			"batch=1&snapshot=1&kind=patch",
		})
		srv.h.fr.mu.Lock()
		gen := srv.h.fr.gen
		srv.h.fr.mu.Unlock()
		if gen == 0 {
			t.Fatal("no subscriber used the shared frames")
		}
	})
}

// joinWhileFlowing publishes 2000 records (every fifth an event, the others
// patches of st) while two subscribers of each query join, at points
// spread over the flow ("%d" in a query is a seq 40 records back), then
// checks that each got exactly the records it asked for (checkExact).
// oneEach: a message must hold one record.
func joinWhileFlowing(t *testing.T, b testBus, st *store, url string, oneEach bool, queries []string) {
	t.Helper()
	var kindsMu sync.Mutex
	kinds := map[uint64]string{}
	var final atomic.Uint64
	const total = 2000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			var rec *events.Record
			if i%5 == 0 {
				rec = b.Publish("n1", events.KindEvent, eventData("e"))
			} else {
				rec = st.change()
			}
			kindsMu.Lock()
			kinds[rec.Seq] = rec.Kind
			kindsMu.Unlock()
			if i%50 == 0 {
				time.Sleep(200 * time.Microsecond) // let windows and rounds end at various points
			}
		}
		head, _ := b.Position()
		final.Store(head)
	})

	var subs []*rawSub
	// The readers' deadline runs from the end of the publishing, which is
	// slow on a loaded machine under the race detector.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var readers sync.WaitGroup
	for i := range 2 * len(queries) {
		waitFor(t, "records to flow", func() bool {
			head, _ := b.Position()
			return head >= uint64(i*total/(2*len(queries)))
		})
		q := queries[i%len(queries)]
		if strings.Contains(q, "%d") {
			head, _ := b.Position()
			q = fmt.Sprintf(q, head-min(head, 40))
		}
		r := &rawSub{query: q, oneEach: oneEach}
		subs = append(subs, r)
		readers.Go(func() { r.read(ctx, url, final.Load) })
	}
	wg.Wait()
	deadline := time.AfterFunc(60*time.Second, cancel)
	readers.Wait()
	deadline.Stop()
	doc, _ := st.current()
	for _, r := range subs {
		checkExact(t, r, kinds, &kindsMu, final.Load(), doc)
	}
}

// TestFramerStopsAndRestarts checks that the framer's goroutine ends with
// its last subscriber and starts again with the next one.
func TestFramerStopsAndRestarts(t *testing.T) {
	b := newFakeBus(4096, 4096)
	srv := serve(t, HandlerConfig{Bus: b, BatchWindow: time.Millisecond})
	base := runtime.NumGoroutine()
	for round := 1; round <= 2; round++ {
		batch := DialOptions{Batch: true}
		streams := startSubscribers(t, srv, batch, batch, batch)
		rec := b.Publish("n1", events.KindEvent, eventData("e"))
		for _, s := range streams {
			if got := nextData(t, s); got.Seq != rec.Seq {
				t.Fatalf("round %d: got seq %d, want %d", round, got.Seq, rec.Seq)
			}
			_ = s.Close()
		}
		waitFor(t, "the sessions and the framer to end", func() bool { return runtime.NumGoroutine() <= base })
		srv.h.fr.mu.Lock()
		gen, users := srv.h.fr.gen, srv.h.fr.users
		srv.h.fr.mu.Unlock()
		if gen != uint64(round) || users != 0 {
			t.Fatalf("round %d: framer generation %d, users %d", round, gen, users)
		}
	}
}

// TestSharedEndsWithBus checks that shared subscribers end as others do
// when the bus closes under them.
func TestSharedEndsWithBus(t *testing.T) {
	forEachBus(t, 4096, 4096, func(t *testing.T, b testBus) {
		srv := serve(t, HandlerConfig{Bus: b, BatchWindow: time.Millisecond})
		s := dial(t, srv, DialOptions{Batch: true})
		next(t, s)
		b.Publish("n1", events.KindEvent, eventData("e"))
		nextData(t, s)
		switch bb := b.(type) {
		case *fakeBus:
			bb.Close()
		case BusAdapter:
			_ = bb.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := s.Next(ctx)
		if websocket.CloseStatus(err) != websocket.StatusGoingAway || !strings.Contains(err.Error(), "stream closed") {
			t.Fatalf("shared subscriber ended with %v, want 1001 stream closed", err)
		}
	})
}

// TestSharedResumeWhileIdle checks that a shared subscriber resuming from
// further back gets what it lacks at once, not with the next record.
func TestSharedResumeWhileIdle(t *testing.T) {
	forEachBus(t, 4096, 4096, func(t *testing.T, b testBus) {
		srv := serve(t, HandlerConfig{Bus: b, BatchWindow: time.Millisecond})
		for range 5 {
			b.Publish("n1", events.KindEvent, eventData("e"))
		}
		_, epoch := b.Position()
		a := dial(t, srv, DialOptions{Batch: true, Since: 0, Epoch: epoch})
		for want := uint64(1); want <= 5; want++ {
			if rec := nextData(t, a); rec.Seq != want {
				t.Fatalf("first subscriber: seq %d, want %d", rec.Seq, want)
			}
		}
		// The framer now runs and has cut windows; the next one joins
		// behind the newest of them.
		for range 5 {
			b.Publish("n1", events.KindEvent, eventData("e"))
		}
		for want := uint64(6); want <= 10; want++ {
			if rec := nextData(t, a); rec.Seq != want {
				t.Fatalf("first subscriber: seq %d, want %d", rec.Seq, want)
			}
		}
		c := dial(t, srv, DialOptions{Batch: true, Since: 2, Epoch: epoch})
		for want := uint64(3); want <= 10; want++ {
			if rec := nextData(t, c); rec.Seq != want {
				t.Fatalf("second subscriber: seq %d, want %d", rec.Seq, want)
			}
		}
	})
}

// TestSharedChurn connects and drops shared subscribers from many
// goroutines while records flow, so that the framer stops and starts
// under them: each gets its records in order, and nothing is left running.
func TestSharedChurn(t *testing.T) {
	b := newFakeBus(1<<16, 1<<16)
	srv := serve(t, HandlerConfig{Bus: b, BatchWindow: time.Millisecond})
	base := runtime.NumGoroutine()
	churnSubscribers(t, b, srv, 4, func(int) json.RawMessage { return eventData("e") }, func(int) (DialOptions, uint64) {
		return DialOptions{Batch: true}, 1
	})
	waitFor(t, "the sessions and the framer to end", func() bool { return runtime.NumGoroutine() <= base })
	srv.h.fr.mu.Lock()
	users, gen := srv.h.fr.users, srv.h.fr.gen
	srv.h.fr.mu.Unlock()
	if users != 0 || gen == 0 {
		t.Fatalf("framer users %d, generation %d", users, gen)
	}
	t.Logf("framer generations: %d", gen)
}
