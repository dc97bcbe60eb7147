package durable

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"agent/events"
	"agent/internal/testutil"
)

func TestNewConsumerStartsAtHead(t *testing.T) {
	bus := openBus(t, events.Config{})
	publish(bus, 3)
	path := filepath.Join(t.TempDir(), "c.cursor")
	var ls losses
	c := open(t, Config{CursorPath: path, Bus: bus}, &ls)
	head, epoch := bus.Position()
	if got := c.Cursor(); got != (Cursor{Epoch: epoch, Seq: head}) {
		t.Fatalf("cursor %+v, want the head %d", got, head)
	}
	// The start is durable at once: a new consumer that crashed would
	// otherwise start at a later head and miss what came between.
	if got := durableCursor(t, path); got.Seq != head {
		t.Fatalf("start cursor on disk %+v, want seq %d", got, head)
	}
	want := publish(bus, 2)
	if got := readN(t, c, 2); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	if len(ls.get()) != 0 {
		t.Fatalf("losses %+v", ls.get())
	}
}

func TestRestartMidBacklogResumesAfterDone(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	dir := t.TempDir()
	journal, path := filepath.Join(dir, "journal"), filepath.Join(dir, "c.cursor")
	cfg := events.Config{Dir: journal, RingSize: 16} // the backlog is read from the journal
	bus := openBus(t, cfg)
	var ls losses
	c := open(t, Config{CursorPath: path, Bus: bus}, &ls)
	all := publish(bus, 300)

	// Read 120, done with 100: the 20 read ahead are pending at the stop.
	got := readN(t, c, 120)
	if !slices.Equal(got, all[:120]) {
		t.Fatalf("first reads differ at %d", testutil.FirstDiff(got, all[:120]))
	}
	for _, s := range got[:100] {
		c.Done(s)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	_ = bus.Close()

	bus = openBus(t, cfg)
	c = open(t, Config{CursorPath: path, Bus: bus}, &ls)
	if got := c.Cursor().Seq; got != all[99] {
		t.Fatalf("resumed at %d, want %d", got, all[99])
	}
	got = readN(t, c, 200)
	if !slices.Equal(got, all[100:]) {
		t.Fatalf("after restart: differ at %d", testutil.FirstDiff(got, all[100:]))
	}
	noneWaiting(t, c)
	if len(ls.get()) != 0 {
		t.Fatalf("losses %+v", ls.get())
	}
	_ = c.Close()
	_ = bus.Close()
	check()
}

// TestKilledProcessLosesNothing: a consumer abandoned without Close (the
// process killed) left its cursor written by every Done.
func TestKilledProcessLosesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.cursor")
	bus := openBus(t, events.Config{})
	c := open(t, Config{CursorPath: path, Bus: bus, SyncInterval: time.Hour}, nil)
	seqs := publish(bus, 10)
	for _, s := range readN(t, c, 10) {
		c.Done(s)
		if got := cursorOf(t, path); got.Seq != s {
			t.Fatalf("after Done(%d) the file says %+v", s, got)
		}
	}
	// Pass is batched: a kill may repeat passed records, never skip one.
	more := publish(bus, 5)
	for _, s := range readN(t, c, 5) {
		c.Pass(s)
	}
	if got := cursorOf(t, path); got.Seq != seqs[9] {
		t.Fatalf("Pass wrote at once: %+v", got)
	}
	noneWaiting(t, c) // caught up: the passes are written
	if got := cursorOf(t, path); got.Seq != more[4] {
		t.Fatalf("caught up, the file says %+v, want %d", got, more[4])
	}
}

func TestBatchedFsync(t *testing.T) {
	syncs := countSyncs(t)
	path := filepath.Join(t.TempDir(), "c.cursor")
	bus := openBus(t, events.Config{})
	c := open(t, Config{CursorPath: path, Bus: bus, SyncInterval: time.Hour}, nil)
	if n := syncs(); n != 1 {
		t.Fatalf("%d fsyncs at Open, want 1 (the start cursor)", n)
	}
	start := c.Cursor()
	seqs := publish(bus, 200)
	for _, s := range readN(t, c, 200) {
		c.Done(s)
	}
	if n := syncs(); n != 1 {
		t.Fatalf("%d fsyncs after 200 Done within the interval, want still 1", n)
	}
	// Only fsynced content is in the main file: a power loss now repeats
	// the 200, never skips.
	if got := durableCursor(t, path); got != start {
		t.Fatalf("the durable file holds %+v before any fsync, want %+v", got, start)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := syncs(); n != 2 {
		t.Fatalf("%d fsyncs after Close, want 2", n)
	}
	if got := durableCursor(t, path); got.Seq != seqs[199] {
		t.Fatalf("durable after Close %+v, want %d", got, seqs[199])
	}
}

func TestFsyncFollowsWithinInterval(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	syncs := countSyncs(t)
	path := filepath.Join(t.TempDir(), "c.cursor")
	bus := openBus(t, events.Config{})
	c := open(t, Config{CursorPath: path, Bus: bus, SyncInterval: 5 * time.Millisecond}, nil)
	seqs := publish(bus, 3)
	for _, s := range readN(t, c, 3) {
		c.Done(s)
	}
	testutil.Eventually(t, waitLong, func() bool {
		got, err := readCursorFile(path)
		return err == nil && got.Seq == seqs[2] && syncs() >= 2
	}, "the last Done made durable without Close")
	if n := syncs(); n > 4 {
		t.Fatalf("%d fsyncs for 3 Done, want 2 to 4", n)
	}
	_ = c.Close()
	_ = bus.Close()
	check()
}

// TestPowerLossRepeatsNeverSkips: a torn or empty newest file (its rename
// reached the disk, its content not) falls back to the fsynced one.
func TestPowerLossRepeatsNeverSkips(t *testing.T) {
	dir := t.TempDir()
	journal, path := filepath.Join(dir, "journal"), filepath.Join(dir, "c.cursor")
	bus := openBus(t, events.Config{Dir: journal})
	var ls losses
	c := open(t, Config{CursorPath: path, Bus: bus, SyncInterval: time.Hour}, &ls)
	seqs := publish(bus, 10)
	for _, s := range readN(t, c, 4) {
		c.Done(s)
	}
	_ = c.Close() // fsynced at seq 4
	c = open(t, Config{CursorPath: path, Bus: bus, SyncInterval: time.Hour}, &ls)
	for _, s := range readN(t, c, 4) {
		c.Done(s)
	}
	// The machine loses power: seq 8 was renamed into place, never fsynced.
	for _, torn := range []string{"", `{"epoch":"`, "\x00\x00\x00"} {
		if err := os.WriteFile(path+nextSuffix, []byte(torn), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := cursorOf(t, path); got.Seq != seqs[3] {
			t.Fatalf("with %q in the newest file, cursor %+v, want the fsynced %d", torn, got, seqs[3])
		}
	}
	c2 := open(t, Config{CursorPath: path, Bus: bus}, &ls)
	if got := readN(t, c2, 6); !slices.Equal(got, seqs[4:]) {
		t.Fatalf("after the power loss read %v, want %v", got, seqs[4:])
	}
	if len(ls.get()) != 0 {
		t.Fatalf("a repeat is not a loss: %+v", ls.get())
	}
}

func TestReadAheadThenCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.cursor")
	bus := openBus(t, events.Config{})
	c := open(t, Config{CursorPath: path, Bus: bus}, nil)
	seqs := publish(bus, 10)
	batch := readN(t, c, 5)
	ahead := readN(t, c, 3) // read while the batch is pending
	if got := c.Cursor().Seq; got != seqs[0]-1 {
		t.Fatalf("cursor moved before the commit: %d", got)
	}
	c.Done(batch[len(batch)-1]) // the batch committed
	if got := cursorOf(t, path).Seq; got != seqs[4] {
		t.Fatalf("cursor %d after the commit, want %d", got, seqs[4])
	}
	// A seq not read yet counts as the last one read.
	c.Done(seqs[9])
	if got := c.Cursor().Seq; got != ahead[2] {
		t.Fatalf("Done past the reads moved the cursor to %d, want %d", got, ahead[2])
	}
	// Going back changes nothing.
	c.Done(seqs[0])
	if got := c.Cursor().Seq; got != ahead[2] {
		t.Fatalf("Done of an older seq moved the cursor to %d", got)
	}
}

// smallJournal keeps few records: the ring holds 8 and the journal about
// two 1 KiB segments.
func smallJournal(dir string) events.Config {
	return events.Config{Dir: dir, RingSize: 8, SegmentBytes: 1024, MaxBytes: 2048}
}

func TestRetentionLossAtResume(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.cursor")
	bus := openBus(t, smallJournal(filepath.Join(dir, "journal")))
	var ls losses
	c := open(t, Config{CursorPath: path, Bus: bus}, &ls)
	first := publish(bus, 1)
	c.Done(next(t, c).Seq)
	_ = c.Close()
	publish(bus, 300)
	oldest := bus.Oldest()
	if oldest <= first[0]+1 {
		t.Fatalf("retention kept everything (oldest %d)", oldest)
	}
	c = open(t, Config{CursorPath: path, Bus: bus}, &ls)
	l := ls.get()
	if len(l) != 1 || l[0].Reason != LossRetention || !l[0].CountKnown || l[0].Count != oldest-1-first[0] ||
		l[0].Cursor.Seq != first[0] {
		t.Fatalf("losses %+v, want one retention loss of %d after %d", l, oldest-1-first[0], first[0])
	}
	if rec := next(t, c); rec.Seq != oldest {
		t.Fatalf("first record after the loss %d, want the oldest %d", rec.Seq, oldest)
	}
}

func TestRetentionLossWhileReading(t *testing.T) {
	dir := t.TempDir()
	bus := openBus(t, smallJournal(filepath.Join(dir, "journal")))
	var ls losses
	c := open(t, Config{CursorPath: filepath.Join(dir, "c.cursor"), Bus: bus}, &ls)
	first := publish(bus, 1)
	if rec := next(t, c); rec.Seq != first[0] {
		t.Fatal(rec.Seq)
	}
	publish(bus, 300) // the consumer is too slow
	oldest := bus.Oldest()
	rec := next(t, c)
	l := ls.get()
	if len(l) != 1 || l[0].Reason != LossRetention || l[0].Count != rec.Seq-first[0]-1 || l[0].Cursor.Seq != first[0] {
		t.Fatalf("losses %+v before record %d (oldest %d)", l, rec.Seq, oldest)
	}
}

func TestEpochChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.cursor")
	old := Cursor{Epoch: "0ld", Seq: 42}
	if err := WriteCursor(path, old); err != nil {
		t.Fatal(err)
	}
	bus := openBus(t, events.Config{Dir: filepath.Join(dir, "journal")})
	early := publish(bus, 2) // before the consumer opens: all of the new epoch is read
	var ls losses
	c := open(t, Config{CursorPath: path, Bus: bus}, &ls)
	l := ls.get()
	if len(l) != 1 || l[0].Reason != LossEpoch || l[0].CountKnown || l[0].Cursor != old || l[0].Detail == "" {
		t.Fatalf("losses %+v, want one epoch loss from %+v", l, old)
	}
	if got := readN(t, c, 2); !slices.Equal(got, early) {
		t.Fatalf("read %v, want the new epoch's %v", got, early)
	}
	_, epoch := bus.Position()
	if got := cursorOf(t, path); got.Epoch != epoch {
		t.Fatalf("cursor file %+v still in the old epoch", got)
	}
}

func TestCursorAhead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.cursor")
	bus := openBus(t, events.Config{})
	publish(bus, 3)
	head, epoch := bus.Position()
	if err := WriteCursor(path, Cursor{Epoch: epoch, Seq: 1000}); err != nil {
		t.Fatal(err)
	}
	var ls losses
	c := open(t, Config{CursorPath: path, Bus: bus}, &ls)
	l := ls.get()
	if len(l) != 1 || l[0].Reason != LossCursorAhead || l[0].Cursor.Seq != 1000 {
		t.Fatalf("losses %+v", l)
	}
	if got := c.Cursor().Seq; got != head {
		t.Fatalf("cursor %d, want the head %d", got, head)
	}
}

func TestCursorUnreadable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		oldest bool
	}{{"head", false}, {"oldest", true}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.cursor")
			if err := os.WriteFile(path, []byte(`{"epo`), 0o600); err != nil {
				t.Fatal(err)
			}
			bus := openBus(t, events.Config{})
			seqs := publish(bus, 3)
			var ls losses
			c := open(t, Config{CursorPath: path, Bus: bus, NewFromOldest: tc.oldest}, &ls)
			if l := ls.get(); len(l) != 1 || l[0].Reason != LossCursorUnreadable || l[0].Detail == "" {
				t.Fatalf("losses %+v", l)
			}
			if tc.oldest {
				if got := readN(t, c, 3); !slices.Equal(got, seqs) {
					t.Fatalf("read %v, want %v", got, seqs)
				}
			}
			noneWaiting(t, c)
			if got := cursorOf(t, path); got != c.Cursor() {
				t.Fatalf("cursor file %+v, want %+v", got, c.Cursor())
			}
		})
	}
}

func TestStartOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.cursor")
	bus := openBus(t, events.Config{})
	seqs := publish(bus, 5)
	_, epoch := bus.Position()
	if err := WriteCursor(path, Cursor{Epoch: epoch, Seq: seqs[1]}); err != nil {
		t.Fatal(err)
	}
	var ls losses
	c := open(t, Config{CursorPath: path, Bus: bus, StartAtHead: true}, &ls)
	noneWaiting(t, c)
	_ = c.Close()
	c = open(t, Config{CursorPath: path, Bus: bus, From: &Cursor{Epoch: epoch, Seq: seqs[2]}}, &ls)
	if got := readN(t, c, 2); !slices.Equal(got, seqs[3:]) {
		t.Fatalf("From: read %v, want %v", got, seqs[3:])
	}
	_ = c.Close()
	c = open(t, Config{Bus: bus, NewFromOldest: true}, &ls) // in memory
	if got := readN(t, c, 5); !slices.Equal(got, seqs) {
		t.Fatalf("NewFromOldest: read %v, want %v", got, seqs)
	}
	if len(ls.get()) != 0 {
		t.Fatalf("losses %+v", ls.get())
	}
}

func TestCloseWhileNextWaits(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	path := filepath.Join(t.TempDir(), "c.cursor")
	bus := openBus(t, events.Config{})
	c := open(t, Config{CursorPath: path, Bus: bus}, nil)
	seqs := publish(bus, 2)
	c.Done(next(t, c).Seq)
	next(t, c) // read, never done: "running" when Close comes
	errc := make(chan error, 1)
	go func() {
		_, err := c.Next(context.Background())
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it block; either way Close must end it
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Next = %v, want ErrClosed", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Next still blocked after Close")
	}
	if got := cursorOf(t, path).Seq; got != seqs[0] {
		t.Fatalf("cursor after Close %d, want %d: the record read but not done runs again", got, seqs[0])
	}
	// Done after Close (a batch that committed while closing) still counts.
	c.Done(seqs[1])
	if got := durableCursor(t, path).Seq; got != seqs[1] {
		t.Fatalf("Done after Close not made durable: %d", got)
	}
	_ = c.Close()
	_ = bus.Close()
	check()
}

func TestBusClosed(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	bus, err := events.Open(events.Config{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c := open(t, Config{Bus: bus}, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Next(context.Background())
		errc <- err
	}()
	_ = bus.Close()
	if err := <-errc; !errors.Is(err, events.ErrClosed) {
		t.Fatalf("Next after the bus closed = %v, want events.ErrClosed", err)
	}
	if _, err := Open(Config{Bus: bus}); err == nil {
		t.Fatal("Open on a closed bus worked")
	}
	_ = c.Close()
	check()
}

func TestNextWithContext(t *testing.T) {
	bus := openBus(t, events.Config{})
	c := open(t, Config{Bus: bus}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want the deadline", err)
	}
	// Still usable, and a done ctx still gets what is there.
	seqs := publish(bus, 2)
	if got := readN(t, c, 1); got[0] != seqs[0] {
		t.Fatal(got)
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	if rec, err := c.Next(done); err != nil || rec.Seq != seqs[1] {
		t.Fatalf("Next(done ctx) = %v, %v; want record %d", rec, err, seqs[1])
	}
}

func TestRemoveCursorAndPathOf(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "h.cursor")
	bus := openBus(t, events.Config{})
	c := open(t, Config{CursorPath: path, Bus: bus, SyncInterval: time.Hour}, nil)
	publish(bus, 1)
	c.Done(next(t, c).Seq)
	ents, _ := os.ReadDir(dir)
	if len(ents) < 2 {
		t.Fatalf("files %v, want the cursor and its newest version", ents)
	}
	for _, e := range ents {
		if got := CursorPathOf(e.Name()); got != "h.cursor" {
			t.Fatalf("CursorPathOf(%s) = %s", e.Name(), got)
		}
	}
	_ = c.Close()
	if err := RemoveCursor(path); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
	if _, err := ReadCursor(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadCursor of a removed cursor = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := Open(Config{}); err == nil {
		t.Fatal("no bus accepted")
	}
	bus := openBus(t, events.Config{})
	if _, err := Open(Config{Bus: bus, SyncInterval: -1}); err == nil {
		t.Fatal("negative SyncInterval accepted")
	}
}

// TestCommitOnAnotherGoroutine: a sink reads ahead on one goroutine and
// commits its batches, marking them done, on another.
func TestCommitOnAnotherGoroutine(t *testing.T) {
	check := testutil.CheckGoroutines(t)
	path := filepath.Join(t.TempDir(), "c.cursor")
	bus := openBus(t, events.Config{})
	c := open(t, Config{CursorPath: path, Bus: bus, SyncInterval: time.Millisecond}, nil)
	seqs := publish(bus, 1000)
	batches := make(chan []uint64, 4)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		for b := range batches {
			c.Done(b[len(b)-1])
		}
	}()
	var batch []uint64
	for range seqs {
		batch = append(batch, next(t, c).Seq)
		if len(batch) == 64 {
			batches <- batch
			batch = nil
		}
	}
	batches <- batch
	close(batches)
	<-committed
	if got := c.Cursor().Seq; got != seqs[len(seqs)-1] {
		t.Fatalf("cursor %d, want %d", got, seqs[len(seqs)-1])
	}
	_ = c.Close()
	if got := durableCursor(t, path).Seq; got != seqs[len(seqs)-1] {
		t.Fatalf("durable cursor %d", got)
	}
	_ = bus.Close()
	check()
}

// TestReadCursorPicksTheNewer: after a power loss either file may be the
// newer one, or damaged; the reader takes the newer that reads well.
func TestReadCursorPicksTheNewer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.cursor")
	writeNext := func(c Cursor) {
		t.Helper()
		n, err := openNext(path)
		if err != nil {
			t.Fatal(err)
		}
		defer n.close()
		if err := n.write(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteCursor(path, Cursor{Epoch: "e1", Seq: 10}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		next string // content of PATH.next; "" none
		want Cursor
	}{
		{"no newer", "", Cursor{Epoch: "e1", Seq: 10}},
		{"newer", "write 12", Cursor{Epoch: "e1", Seq: 12}},
		{"older after a power loss", "write 7", Cursor{Epoch: "e1", Seq: 10}},
		{"another epoch", "write e2", Cursor{Epoch: "e2", Seq: 3}},
		{"torn", `{"epoch":"e1","se`, Cursor{Epoch: "e1", Seq: 10}},
		{"damaged", `{"epoch":"e1","seq":99,"crc":1}`, Cursor{Epoch: "e1", Seq: 10}},
		{"empty", "\x00", Cursor{Epoch: "e1", Seq: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(path + nextSuffix)
			switch tc.next {
			case "":
			case "write 12":
				writeNext(Cursor{Epoch: "e1", Seq: 12})
			case "write 7":
				writeNext(Cursor{Epoch: "e1", Seq: 7})
			case "write e2":
				writeNext(Cursor{Epoch: "e2", Seq: 3})
			default:
				if err := os.WriteFile(path+nextSuffix, []byte(tc.next), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := cursorOf(t, path); got != tc.want {
				t.Fatalf("ReadCursor = %+v, want %+v", got, tc.want)
			}
		})
	}
	// In place: a shorter cursor over a longer one reads back whole.
	_ = os.Remove(path + nextSuffix)
	writeNext(Cursor{Epoch: "a-rather-long-epoch", Seq: 18446744073709551615})
	writeNext(Cursor{Epoch: "e1", Seq: 11})
	if got := cursorOf(t, path); got != (Cursor{Epoch: "e1", Seq: 11}) {
		t.Fatalf("after a shorter write: %+v", got)
	}
}
