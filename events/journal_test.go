package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"agent/internal/testutil"
)

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestNumberingAndEpochSurviveRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "events")
	b := openBus(t, Config{Dir: dir})
	publishN(b, 5)
	_, epoch := b.Position()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("journal directory mode %v (%v), want 0700", info.Mode(), err)
	}

	b = openBus(t, Config{Dir: dir})
	seq, epoch2 := b.Position()
	if seq != 5 || epoch2 != epoch {
		t.Fatalf("after restart at seq %d epoch %q, want 5 %q", seq, epoch2, epoch)
	}
	if r := b.Publish("n1", KindEvent, nil); r.Seq != 6 || r.Epoch != epoch {
		t.Fatalf("first record after restart: seq %d epoch %q", r.Seq, r.Epoch)
	}
	// History from before the restart comes from the journal.
	s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 0, Epoch: epoch})
	checkSeqs(t, collect(t, s, 6), 1)
	if got := b.Oldest(); got != 1 {
		t.Fatalf("Oldest %d, want 1", got)
	}
}

func TestMemoryOnlyBusStartsNewEpochEachTime(t *testing.T) {
	b1 := openBus(t, Config{})
	b2 := openBus(t, Config{})
	_, e1 := b1.Position()
	_, e2 := b2.Position()
	if e1 == e2 {
		t.Fatalf("two memory-only buses share epoch %q", e1)
	}
}

func TestTornLastLineIsDropped(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, Config{Dir: dir})
	publishN(b, 3)
	_, epoch := b.Position()
	b.Close()
	seg := segmentFiles(t, dir)[0]
	whole, _ := os.ReadFile(seg)
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":4,"epoch":"` + epoch + `","ti`)
	f.Close()

	b = openBus(t, Config{Dir: dir})
	if seq, e := b.Position(); seq != 3 || e != epoch {
		t.Fatalf("after torn line at seq %d epoch %q, want 3 %q", seq, e, epoch)
	}
	if now, _ := os.ReadFile(seg); !bytes.Equal(now, whole) {
		t.Fatalf("torn line not truncated:\n%s", now)
	}
	b.Publish("n1", KindPatch, nil)
	s := subscribe(t, b, SubscribeOptions{Resume: true, Epoch: epoch})
	checkSeqs(t, collect(t, s, 4), 1)
}

func TestUnreadableHistoryStartsNewEpoch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"corrupt middle line", func(t *testing.T, dir string) {
			seg := segmentFiles(t, dir)[0]
			data, _ := os.ReadFile(seg)
			lines := bytes.SplitAfter(data, []byte("\n"))
			lines[1] = []byte("garbage\n")
			os.WriteFile(seg, bytes.Join(lines, nil), 0o600)
		}},
		{"seq mark missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, markFile))
		}},
		{"seq mark of another epoch", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, markFile), []byte(`{"epoch":"0000ffff","reserved":100}`), 0o600)
		}},
		{"seq mark torn", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, markFile), []byte(`{"epoch":"0000ffff","rese`), 0o600)
		}},
		{"seq mark below the journal", func(t *testing.T, dir string) {
			st, _, _ := readMark(dir)
			st.Reserved = 2
			raw, _ := json.Marshal(st)
			os.WriteFile(filepath.Join(dir, markFile), raw, 0o600)
		}},
		{"segment name does not match", func(t *testing.T, dir string) {
			seg := segmentFiles(t, dir)[0]
			os.Rename(seg, filepath.Join(dir, segmentName(7)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := openBus(t, Config{Dir: dir})
			publishN(b, 5)
			_, old := b.Position()
			b.Close()
			tc.damage(t, dir)

			b = openBus(t, Config{Dir: dir})
			seq, epoch := b.Position()
			if seq != 0 || epoch == old {
				t.Fatalf("after damage at seq %d epoch %q (old %q), want a new epoch at 0", seq, epoch, old)
			}
			if r := b.Publish("n1", KindEvent, nil); r.Seq != 1 {
				t.Fatalf("first record of the new epoch is seq %d", r.Seq)
			}
			if lost, _ := filepath.Glob(filepath.Join(dir, lostDir, "*")); len(lost) == 0 {
				t.Fatalf("old segments not kept in %s", lostDir)
			}
		})
	}
}

func TestRotationAndRetentionBySize(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, Config{Dir: dir, RingSize: 8, SegmentBytes: 1000, MaxBytes: 3000, MaxAge: -1})
	recs := publishN(b, 300)
	st := b.Stats()
	files := segmentFiles(t, dir)
	if st.JournalSegments != len(files) || len(files) < 3 || len(files) > 5 {
		t.Fatalf("%d segments (stats %d), want 3 to 5", len(files), st.JournalSegments)
	}
	if st.JournalBytes > 3000+1000+int64(len(recs[0].JSON()))+1 {
		t.Fatalf("journal holds %d bytes, over MaxBytes plus a segment", st.JournalBytes)
	}
	oldest := b.Oldest()
	if oldest <= 1 || filepath.Base(files[0]) != segmentName(oldest) {
		t.Fatalf("Oldest %d, first segment %s", oldest, filepath.Base(files[0]))
	}
	// Everything retained can be read back, across segments, gapless.
	_, epoch := b.Position()
	s := subscribe(t, b, SubscribeOptions{Resume: true, Since: oldest - 1, Epoch: epoch})
	checkSeqs(t, collect(t, s, int(300-oldest+1)), oldest)
	// And the start of the journal is no longer retained.
	if s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 1, Epoch: epoch}); s.Reset() == "" {
		t.Fatal("resume before retention: no reset")
	}
}

func TestRetentionByAge(t *testing.T) {
	dir := t.TempDir()
	clock := testutil.NewFakeClock()
	b := openBus(t, Config{Dir: dir, Now: clock.Now, RingSize: 8, SegmentBytes: 500, MaxAge: time.Hour})
	publishN(b, 20)
	before := len(segmentFiles(t, dir))
	if before < 2 {
		t.Fatalf("%d segments, want several", before)
	}
	clock.Advance(2 * time.Hour)
	publishN(b, 20) // rotates, so retention runs
	oldest := b.Oldest()
	if oldest <= 20 {
		t.Fatalf("Oldest %d after the first 20 records aged out", oldest)
	}
	for _, f := range segmentFiles(t, dir) {
		if first, _ := parseSegmentName(filepath.Base(f)); first <= 20 && first < oldest {
			t.Fatalf("aged segment %s kept", f)
		}
	}
}

func TestResumeFromJournalBeyondRing(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, Config{Dir: dir, RingSize: 16, SegmentBytes: 2000})
	publishN(b, 500)
	_, epoch := b.Position()
	if got := b.Oldest(); got != 1 {
		t.Fatalf("Oldest %d, want 1", got)
	}
	s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 100, Epoch: epoch, MaxLag: 10})
	// Catching up from disk is not lag; records published meanwhile are.
	got := collect(t, s, 300)
	publishN(b, 5)
	got = append(got, collect(t, s, 105)...)
	checkSeqs(t, got, 101)
}

func TestSinceTimeFromJournal(t *testing.T) {
	dir := t.TempDir()
	clock := testutil.NewFakeClock()
	b := openBus(t, Config{Dir: dir, Now: clock.Now, RingSize: 8, SegmentBytes: 700})
	t0 := clock.Now()
	for range 60 {
		b.Publish("n1", KindEvent, nil)
		clock.Advance(time.Minute)
	}
	for _, tc := range []struct {
		at   time.Time
		want uint64 // first record delivered
	}{
		{t0.Add(-time.Hour), 1},
		{t0.Add(30 * time.Minute), 31},
		{t0.Add(30*time.Minute + time.Second), 32},
		{t0.Add(57 * time.Minute), 58}, // in the ring
		{t0.Add(2 * time.Hour), 61},
	} {
		s := subscribe(t, b, SubscribeOptions{SinceTime: tc.at})
		if s.Start() != tc.want-1 {
			t.Errorf("SinceTime +%v: Start %d, want %d", tc.at.Sub(t0), s.Start(), tc.want-1)
			continue
		}
		if tc.want <= 60 {
			checkSeqs(t, collect(t, s, int(61-tc.want)), tc.want)
		}
	}
}

func TestDurableSubscriberPastRetentionSkips(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, Config{Dir: dir, RingSize: 8, SegmentBytes: 500, MaxBytes: 1500, MaxAge: -1})
	s := subscribe(t, b, SubscribeOptions{Durable: true})
	publishN(b, 200)
	r, err := s.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq <= 1 || s.Skipped() != r.Seq-1 || b.Stats().Skipped != r.Seq-1 {
		t.Fatalf("first record %d, Skipped %d (stats %d): want a skip counted exactly", r.Seq, s.Skipped(), b.Stats().Skipped)
	}
	checkSeqs(t, collect(t, s, int(200-r.Seq)), r.Seq+1)

	// Resuming a durable subscription before retention skips too.
	_, epoch := b.Position()
	d := subscribe(t, b, SubscribeOptions{Durable: true, Resume: true, Since: 3, Epoch: epoch})
	if d.Reset() != "" || d.Skipped() != b.Oldest()-4 {
		t.Fatalf("durable resume: Reset %q Skipped %d, oldest %d", d.Reset(), d.Skipped(), b.Oldest())
	}
	// A non-durable one that fell behind retention ends with ErrSlow.
	n := subscribe(t, b, SubscribeOptions{MaxLag: 1 << 20})
	publishN(b, 200)
	if _, err := n.Next(context.Background()); !errors.Is(err, ErrSlow) {
		t.Fatalf("non-durable behind retention: %v, want ErrSlow", err)
	}
}

// failingFile lets a test make journal writes fail even as root, where a
// read-only directory does not stop writes.
type failingFile struct {
	*os.File
	fail *atomic.Bool
}

func (f failingFile) Write(p []byte) (int, error) {
	if f.fail.Load() {
		// Half a record reaches the disk, as with a full disk.
		n, _ := f.File.Write(p[:len(p)/2])
		return n, errors.New("no space left on device (simulated)")
	}
	return f.File.Write(p)
}

func failingCreate(fail *atomic.Bool) func(string) (segmentFile, error) {
	return func(path string) (segmentFile, error) {
		if fail.Load() {
			return nil, errors.New("read-only file system (simulated)")
		}
		f, err := createSegmentFile(path)
		if err != nil {
			return nil, err
		}
		return failingFile{File: f.(*os.File), fail: fail}, nil
	}
}

func TestReadOnlyJournalDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: chmod does not stop writes; TestWriteErrors* simulate the failure instead")
	}
	dir := t.TempDir()
	b := openBus(t, Config{Dir: dir})
	s := subscribe(t, b, SubscribeOptions{})
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	publishN(b, 3)
	checkSeqs(t, collect(t, s, 3), 1)
	if st := b.Stats(); st.JournalWriteErrors == 0 {
		t.Fatal("no journal write error counted on a read-only directory")
	}
}

// warnCounter counts log records at Warn and above.
type warnCounter struct{ n atomic.Int64 }

func (w *warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.n.Add(1)
	}
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }

func TestCleanStartsAndRestartsDoNotWarn(t *testing.T) {
	dir := t.TempDir()
	var warns warnCounter
	cfg := Config{Dir: dir, Logger: slog.New(&warns)}
	for range 3 {
		b := openBus(t, cfg)
		publishN(b, 2)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := warns.n.Load(); n != 0 {
		t.Fatalf("%d warnings on clean starts", n)
	}
	b := openBus(t, cfg)
	if seq, _ := b.Position(); seq != 6 {
		t.Fatalf("Position %d after three runs of 2 records", seq)
	}
	if st := b.Stats(); st.JournalSegments != 1 || st.JournalBytes == 0 {
		t.Fatalf("journal stats %+v: restarts should append to the newest segment", st)
	}
}
