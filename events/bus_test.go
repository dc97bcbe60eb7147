package events

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"agent/internal/testutil"
)

func TestPublishNumbersRecords(t *testing.T) {
	b := openBus(t, Config{})
	seq, epoch := b.Position()
	if seq != 0 || len(epoch) != 8 {
		t.Fatalf("new bus at seq %d epoch %q, want 0 and an 8-digit epoch", seq, epoch)
	}
	recs := publishN(b, 5)
	checkSeqs(t, recs, 1)
	for _, r := range recs {
		if r.Epoch != epoch {
			t.Fatalf("record epoch %q, want %q", r.Epoch, epoch)
		}
		back, err := ParseRecord(r.JSON())
		if err != nil || back.Seq != r.Seq || !back.Time.Equal(r.Time) {
			t.Fatalf("record does not round-trip: %s (%v)", r.JSON(), err)
		}
	}
	if seq, _ := b.Position(); seq != 5 {
		t.Fatalf("Position %d, want 5", seq)
	}
	st := b.Stats()
	if st.Published[KindPatch]+st.Published[KindEvent] != 5 {
		t.Fatalf("Stats.Published %v, want 5 records", st.Published)
	}
}

func TestSubscribeStartsAtHead(t *testing.T) {
	b := openBus(t, Config{})
	publishN(b, 3)
	s := subscribe(t, b, SubscribeOptions{})
	if s.Start() != 3 || s.Reset() != "" {
		t.Fatalf("Start %d Reset %q, want 3 and none", s.Start(), s.Reset())
	}
	if _, err := s.Next(noWait()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on a caught-up subscription with a done ctx: %v, want context.Canceled", err)
	}
	publishN(b, 2)
	checkSeqs(t, collect(t, s, 2), 4)
}

func TestNextWaitsAndReturnsOnCancelAndClose(t *testing.T) {
	b := openBus(t, Config{})
	s := subscribe(t, b, SubscribeOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Next(ctx)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}
	// A cancelled Next leaves the subscription usable.
	go func() {
		r, err := s.Next(context.Background())
		if err == nil && r.Seq != 1 {
			err = errors.New("wrong record")
		}
		errc <- err
	}()
	b.Publish("n1", KindEvent, nil)
	if err := <-errc; err != nil {
		t.Fatalf("Next after publish: %v", err)
	}
	go func() {
		_, err := s.Next(context.Background())
		errc <- err
	}()
	s.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
	s.Close() // twice is fine
}

func TestNextWithDoneContextReturnsAvailableRecord(t *testing.T) {
	b := openBus(t, Config{})
	s := subscribe(t, b, SubscribeOptions{})
	publishN(b, 2)
	for want := uint64(1); want <= 2; want++ {
		r, err := s.Next(noWait())
		if err != nil || r.Seq != want {
			t.Fatalf("Next with done ctx: %v %v, want seq %d", r, err, want)
		}
	}
}

func TestSkip(t *testing.T) {
	b := openBus(t, Config{MaxLag: 10, RingSize: 64, Dir: t.TempDir()})
	s := subscribe(t, b, SubscribeOptions{})
	publishN(b, 5)
	if r, err := s.Next(noWait()); err != nil || r.Seq != 1 {
		t.Fatalf("first: %v %v", r, err) // 2..5 are now buffered
	}
	s.Skip(3) // within the buffered records
	if r, err := s.Next(noWait()); err != nil || r.Seq != 4 {
		t.Fatalf("after Skip(3): %v %v, want seq 4", r, err)
	}
	s.Skip(2) // backwards: nothing
	if r, err := s.Next(noWait()); err != nil || r.Seq != 5 {
		t.Fatalf("after Skip(2): %v %v, want seq 5", r, err)
	}
	s.Skip(1000) // past the head: to the head
	publishN(b, 1)
	if r, err := s.Next(noWait()); err != nil || r.Seq != 6 {
		t.Fatalf("after Skip(1000): %v %v, want seq 6", r, err)
	}
	// Far behind, then skipped close to the head: no lag.
	publishN(b, 100)
	s.Skip(100)
	checkSeqs(t, collect(t, s, 6), 101)
	// Skipped back into what only the journal holds.
	s2 := subscribe(t, b, SubscribeOptions{Resume: true, Since: 0, Epoch: s.b.epoch, Durable: true})
	s2.Skip(20)
	checkSeqs(t, collect(t, s2, 3), 21)
}

func TestResumeFromRing(t *testing.T) {
	b := openBus(t, Config{RingSize: 64})
	publishN(b, 50)
	_, epoch := b.Position()
	s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 20, Epoch: epoch})
	if s.Start() != 20 || s.Reset() != "" {
		t.Fatalf("Start %d Reset %q", s.Start(), s.Reset())
	}
	publishN(b, 10)
	checkSeqs(t, collect(t, s, 40), 21)
}

func TestResumeResets(t *testing.T) {
	b := openBus(t, Config{RingSize: 16})
	publishN(b, 100)
	_, epoch := b.Position()
	if got := b.Oldest(); got != 85 {
		t.Fatalf("Oldest %d, want 85 (ring of 16 after 100)", got)
	}
	for _, tc := range []struct {
		name string
		opts SubscribeOptions
		want string
	}{
		{"other epoch", SubscribeOptions{Resume: true, Since: 90, Epoch: "0000"}, "epoch"},
		{"too old", SubscribeOptions{Resume: true, Since: 10, Epoch: epoch}, "no longer retained"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := subscribe(t, b, tc.opts)
			if !strings.Contains(s.Reset(), tc.want) || s.Start() != 100 {
				t.Fatalf("Reset %q Start %d, want a reason with %q and start 100", s.Reset(), s.Start(), tc.want)
			}
		})
	}
	// Just retained: no reset.
	s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 84, Epoch: epoch})
	if s.Reset() != "" {
		t.Fatalf("resume at the oldest retained: Reset %q", s.Reset())
	}
	checkSeqs(t, collect(t, s, 16), 85)
}

func TestResumeInTheFuture(t *testing.T) {
	b := openBus(t, Config{})
	publishN(b, 3)
	_, epoch := b.Position()
	if _, err := b.Subscribe(SubscribeOptions{Resume: true, Since: 4, Epoch: epoch}); !errors.Is(err, ErrFuture) {
		t.Fatalf("resume after the head: %v, want ErrFuture", err)
	}
	// The head itself is fine: nothing to deliver yet.
	s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 3, Epoch: epoch})
	if s.Reset() != "" || s.Start() != 3 {
		t.Fatalf("resume at the head: Reset %q Start %d", s.Reset(), s.Start())
	}
}

func TestSlowSubscriberIsCutFastOneGetsAll(t *testing.T) {
	b := openBus(t, Config{MaxLag: 10})
	slow := subscribe(t, b, SubscribeOptions{})
	fast := subscribe(t, b, SubscribeOptions{})
	const n = 200
	recv := make(chan *Record)
	go func() {
		defer close(recv)
		for {
			r, err := fast.Next(context.Background())
			if err != nil {
				return
			}
			recv <- r
		}
	}()
	for i := range n {
		// Publish at the pace of the fast reader so that only the slow one
		// lags; the bus itself never waits for anyone.
		b.Publish("n1", KindPatch, nil)
		r, ok := <-recv
		if !ok || r.Seq != uint64(i+1) {
			t.Fatalf("fast subscriber got %v (open %v), want seq %d", r, ok, i+1)
		}
	}
	_, err := slow.Next(context.Background())
	if !errors.Is(err, ErrSlow) || !strings.Contains(err.Error(), "200 records behind") {
		t.Fatalf("slow subscriber: %v, want ErrSlow saying 200 records behind", err)
	}
	if _, err2 := slow.Next(context.Background()); !errors.Is(err2, ErrSlow) {
		t.Fatalf("ErrSlow is not sticky: %v", err2)
	}
	if st := b.Stats(); st.SlowDisconnects != 1 {
		t.Fatalf("SlowDisconnects %d, want 1", st.SlowDisconnects)
	}
}

func TestDurableHasNoLagLimit(t *testing.T) {
	b := openBus(t, Config{MaxLag: 10})
	s := subscribe(t, b, SubscribeOptions{Durable: true})
	publishN(b, 100)
	checkSeqs(t, collect(t, s, 100), 1)
}

func TestSinceTimeInRing(t *testing.T) {
	clock := testutil.NewFakeClock()
	b := openBus(t, Config{Now: clock.Now})
	t0 := clock.Now()
	for range 10 {
		b.Publish("n1", KindEvent, nil)
		clock.Advance(time.Minute)
	}
	for _, tc := range []struct {
		at        time.Time
		wantStart uint64
	}{
		{t0.Add(-time.Hour), 0},
		{t0, 0},
		{t0.Add(90 * time.Second), 2},
		{t0.Add(3 * time.Minute), 3},
		{t0.Add(time.Hour), 10},
	} {
		s := subscribe(t, b, SubscribeOptions{SinceTime: tc.at})
		if s.Start() != tc.wantStart || s.Reset() != "" {
			t.Errorf("SinceTime %v: Start %d Reset %q, want %d", tc.at, s.Start(), s.Reset(), tc.wantStart)
		}
	}
}

func TestConcurrentPublishersAndSubscribers(t *testing.T) {
	const publishers, perPublisher, subscribers = 8, 300, 50
	const total = publishers * perPublisher
	b := openBus(t, Config{Dir: t.TempDir(), MaxLag: total})
	subs := make([]*Subscription, subscribers)
	for i := range subs {
		subs[i] = subscribe(t, b, SubscribeOptions{})
	}
	var wg sync.WaitGroup
	errs := make(chan error, subscribers)
	for _, s := range subs {
		wg.Go(func() {
			want := uint64(1)
			for want <= total {
				r, err := s.Next(context.Background())
				if err != nil {
					errs <- err
					return
				}
				if r.Seq != want {
					errs <- errors.New("out of order or duplicate record")
					return
				}
				want++
			}
		})
	}
	var pwg sync.WaitGroup
	for range publishers {
		pwg.Go(func() { publishN(b, perPublisher) })
	}
	pwg.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if seq, _ := b.Position(); seq != total {
		t.Fatalf("Position %d, want %d", seq, total)
	}
	// Everyone can also read the whole history back from the journal.
	_, epoch := b.Position()
	s := subscribe(t, b, SubscribeOptions{Resume: true, Epoch: epoch})
	checkSeqs(t, collect(t, s, total), 1)
}

func TestCloseEndsSubscriptionsAndGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	b, err := Open(Config{Dir: t.TempDir(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		s, err := b.Subscribe(SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			_, err := s.Next(context.Background())
			errs <- err
		})
	}
	waitFor(t, "subscribers waiting", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.waiting
	})
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after bus Close: %v, want ErrClosed", err)
		}
	}
	if _, err := b.Subscribe(SubscribeOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if r := b.Publish("n1", KindEvent, nil); r.Seq != 0 {
		t.Fatalf("Publish after Close numbered a record: %d", r.Seq)
	}
	if st := b.Stats(); st.Subscribers != 0 {
		t.Fatalf("Subscribers %d after Close", st.Subscribers)
	}
	waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= base })
}

func TestConfigValidate(t *testing.T) {
	if _, err := Open(Config{RingSize: -1, MaxLag: -2}); err == nil ||
		!strings.Contains(err.Error(), "RingSize") || !strings.Contains(err.Error(), "MaxLag") {
		t.Fatalf("Open with negative sizes: %v", err)
	}
}
