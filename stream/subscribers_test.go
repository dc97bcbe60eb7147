package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"agent/events"
)

// startSubscribers dials one stream per options (closed at the end of the
// test) and reads each one's start progress, so that every session runs
// when it returns.
func startSubscribers(t testing.TB, srv *testServer, opts ...DialOptions) []*Stream {
	t.Helper()
	var streams []*Stream
	for _, o := range opts {
		s := dial(t, srv, o)
		next(t, s) // the start progress
		streams = append(streams, s)
	}
	return streams
}

// waitFanUsers waits until n sessions follow the fan-out's shared frames.
func waitFanUsers(t testing.TB, srv *testServer, n int) {
	t.Helper()
	waitFor(t, "the sessions to follow the shared frames", func() bool {
		srv.h.fan.mu.Lock()
		defer srv.h.fan.mu.Unlock()
		return srv.h.fan.users == n
	})
}

// churnSubscribers publishes event records on b (the i-th with data(i))
// while subscribers goroutines dial srv and drop again, 25 rounds each:
// subscriber g dials with the options sub(g) gives, reads a growing number
// of event records, each step seqs after the one before (more than 1 where
// a filter skips some), and closes. It reports every subscriber's error
// and returns once all rounds are done and the publisher has stopped.
func churnSubscribers(t *testing.T, b *fakeBus, srv *testServer, subscribers int, data func(i int) json.RawMessage, sub func(g int) (opts DialOptions, step uint64)) {
	t.Helper()
	stop := make(chan struct{})
	var pub sync.WaitGroup
	pub.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b.Publish("n1", events.KindEvent, data(i))
			if i%20 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, subscribers)
	// round dials, reads n event records in order, and closes.
	round := func(n int, opts DialOptions, step uint64) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		opts.URL, opts.Logger = srv.url, quietLogger()
		s, err := Dial(ctx, opts)
		if err != nil {
			return err
		}
		defer s.Close()
		var last uint64
		for got := 0; got < n; {
			rec, err := s.Next(ctx)
			if err != nil {
				return err
			}
			if rec.Kind != events.KindEvent {
				continue
			}
			if last != 0 && rec.Seq != last+step {
				return fmt.Errorf("seq %d after %d", rec.Seq, last)
			}
			last = rec.Seq
			got++
		}
		return nil
	}
	for g := range subscribers {
		wg.Go(func() {
			opts, step := sub(g)
			for r := range 25 {
				if err := round(5+g+r, opts, step); err != nil {
					errs <- fmt.Errorf("subscriber %d round %d: %w", g, r, err)
					return
				}
				// Gaps in which every subscriber may be gone, so that the
				// framer also stops and starts again.
				time.Sleep(time.Duration(g%4) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	close(stop)
	pub.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
