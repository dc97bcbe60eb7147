package events

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"agent/internal/testutil"
)

const testBlock = 100

// reopen opens the bus in dir again after a crash or a clean close.
func reopen(t *testing.T, cfg Config) *Bus {
	t.Helper()
	return openBus(t, cfg)
}

// dropTail removes the last n lines of the newest segment, and with torn
// also leaves the first half of the line before them, as a power loss
// that takes the unsynced tail does.
func dropTail(t *testing.T, dir string, n int, torn bool) {
	t.Helper()
	files := segmentFiles(t, dir)
	seg := files[len(files)-1]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	lines = lines[:len(lines)-1] // the empty string after the last newline
	keep := lines[:len(lines)-n]
	out := bytes.Join(keep, nil)
	if torn {
		last := keep[len(keep)-1]
		out = append(bytes.Join(keep[:len(keep)-1], nil), last[:len(last)/2]...)
	}
	if err := os.WriteFile(seg, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCleanCloseContinuesWithoutAJump(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, reserveBlock: testBlock}
	b := openBus(t, cfg)
	publishN(b, 5)
	b.Close()
	b = reopen(t, cfg)
	if r := b.Publish("n1", KindEvent, nil); r.Seq != 6 {
		t.Fatalf("after a clean stop the next seq is %d, want 6", r.Seq)
	}
}

// TestUncleanStopSkipsTheReservedBlock: after a kill, numbering continues
// past the reserved block, in the same epoch; the skipped seqs are empty:
// resuming across them loses nothing and resets nobody.
func TestUncleanStopSkipsTheReservedBlock(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, reserveBlock: testBlock}
	b := openBus(t, cfg)
	publishN(b, 5)
	_, epoch := b.Position()
	crash(t, b)

	b = reopen(t, cfg)
	head, epoch2 := b.Position()
	if epoch2 != epoch || head != testBlock {
		t.Fatalf("after a kill at seq %d epoch %q, want %d %q", head, epoch2, testBlock, epoch)
	}
	r := b.Publish("n1", KindEvent, nil)
	if r.Seq != testBlock+1 {
		t.Fatalf("first record after the kill is seq %d, want %d", r.Seq, testBlock+1)
	}
	if got := b.Oldest(); got != 1 {
		t.Fatalf("Oldest %d, want 1: the skipped seqs are empty, not lost", got)
	}
	for _, since := range []uint64{0, 3, 5} {
		s := subscribe(t, b, SubscribeOptions{Resume: true, Since: since, Epoch: epoch})
		if s.Reset() != "" {
			t.Fatalf("resume after %d: reset %q", since, s.Reset())
		}
		got := collect(t, s, int(5-since)+1)
		checkSeqs(t, got[:5-since], since+1)
		if last := got[len(got)-1]; last.Seq != testBlock+1 {
			t.Fatalf("resume after %d: record after %d is %d", since, got[len(got)-2].Seq, last.Seq)
		}
		d := subscribe(t, b, SubscribeOptions{Resume: true, Since: since, Epoch: epoch, Durable: true})
		collect(t, d, int(5-since)+1)
		if d.Skipped() != 0 {
			t.Fatalf("durable resume after %d skipped %d records of an empty range", since, d.Skipped())
		}
	}
	// A seq in the skipped range was never given by the journal's
	// account; a client claiming it may have seen a lost record.
	if s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 50, Epoch: epoch}); !strings.Contains(s.Reset(), "unclean stop") {
		t.Fatalf("resume inside the skipped range: reset %q", s.Reset())
	}
	// The jump is on disk, in the name of the new segment: the next
	// start knows the range is empty.
	b.Close()
	b = reopen(t, cfg)
	if got := b.Oldest(); got != 1 {
		t.Fatalf("after another start Oldest %d, want 1", got)
	}
	s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 4, Epoch: epoch})
	got := collect(t, s, 2)
	if got[0].Seq != 5 || got[1].Seq != testBlock+1 {
		t.Fatalf("after another start, resume after 4 gives %d, %d", got[0].Seq, got[1].Seq)
	}
}

// TestPowerLossNeverRenumbers drops whole lines from the journal's tail,
// and cuts one mid-line, as a power loss does: the lost seqs are never
// given again; a client that saw them gets a reset; one that did not
// resumes without a loss report.
func TestPowerLossNeverRenumbers(t *testing.T) {
	for _, torn := range []bool{false, true} {
		t.Run(map[bool]string{false: "whole lines", true: "torn line"}[torn], func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Dir: dir, reserveBlock: testBlock}
			b := openBus(t, cfg)
			seen := publishN(b, 50)
			_, epoch := b.Position()
			crash(t, b)
			dropTail(t, dir, 3, torn) // 48..50 gone; with torn, 47 too
			lastKept := uint64(47)
			if torn {
				lastKept = 46
			}

			b = reopen(t, cfg)
			if _, e := b.Position(); e != epoch {
				t.Fatalf("new epoch %q after a lost tail (was %q)", e, epoch)
			}
			fresh := publishN(b, 5)
			if fresh[0].Seq <= 50 {
				t.Fatalf("seq %d given again after a power loss", fresh[0].Seq)
			}
			for _, r := range seen[lastKept:] {
				s := subscribe(t, b, SubscribeOptions{Resume: true, Since: r.Seq, Epoch: epoch})
				if s.Reset() == "" {
					t.Fatalf("a client that saw the lost record %d resumed without a reset", r.Seq)
				}
			}
			s := subscribe(t, b, SubscribeOptions{Resume: true, Since: lastKept - 1, Epoch: epoch})
			if s.Reset() != "" {
				t.Fatalf("resume after %d: reset %q", lastKept-1, s.Reset())
			}
			got := collect(t, s, 6)
			if got[0].Seq != lastKept || got[1].Seq != fresh[0].Seq {
				t.Fatalf("resume after %d: %d then %d", lastKept-1, got[0].Seq, got[1].Seq)
			}
			for i, r := range got[1:] {
				if !bytes.Equal(r.JSON(), fresh[i].JSON()) {
					t.Fatalf("record %d differs from what was published", r.Seq)
				}
			}
		})
	}
}

// TestReservationCrossesBlocks: a crash well past the first block still
// never reuses a seq; the next block was reserved ahead.
func TestReservationCrossesBlocks(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, reserveBlock: testBlock}
	for run := range 4 {
		b := openBus(t, cfg)
		head, _ := b.Position()
		recs := publishN(b, 3*testBlock+7)
		if recs[0].Seq <= head {
			t.Fatalf("run %d: seq %d after head %d", run, recs[0].Seq, head)
		}
		last := recs[len(recs)-1].Seq
		if res := b.Stats().ReservedSeq; res < last {
			t.Fatalf("run %d: seq %d given above the reserved %d", run, last, res)
		}
		crash(t, b)
		b = reopen(t, cfg)
		if h, _ := b.Position(); h < last {
			t.Fatalf("run %d: restart at %d below the last given %d", run, h, last)
		}
		crash(t, b) // a crash before any record: still no reuse
	}
}

// TestDiskFullKeepsDeliveringAndCatchesUp: while writes fail, records are
// delivered from memory, no file is created per record, and once the disk
// takes writes again the journal gets every record, gapless.
func TestDiskFullKeepsDeliveringAndCatchesUp(t *testing.T) {
	dir := t.TempDir()
	clock := testutil.NewFakeClock()
	var fail atomic.Bool
	b := openBus(t, Config{Dir: dir, Now: clock.Now, SegmentBytes: 300, createFile: failingCreate(&fail)})
	s := subscribe(t, b, SubscribeOptions{})
	publishN(b, 3)
	fail.Store(true)
	publishN(b, 200)
	checkSeqs(t, collect(t, s, 203), 1)
	if n := len(segmentFiles(t, dir)); n > 3 {
		t.Fatalf("%d segment files after 200 failed writes: one per attempt?", n)
	}
	st := b.Stats()
	if st.JournalWaiting != 200 || st.JournalWriteErrors == 0 || st.JournalWriteErrors > 2 {
		t.Fatalf("stats during the outage: waiting %d, write errors %d", st.JournalWaiting, st.JournalWriteErrors)
	}
	fail.Store(false)
	clock.Advance(2 * retryInterval)
	waitFor(t, "the journal to catch up", func() bool { return b.Stats().JournalWaiting == 0 })
	_, epoch := b.Position()
	b.Close()

	b = openBus(t, Config{Dir: dir, Now: clock.Now})
	if head, e := b.Position(); head != 203 || e != epoch {
		t.Fatalf("after the outage and a clean stop: head %d epoch %q", head, e)
	}
	r := subscribe(t, b, SubscribeOptions{Resume: true, Since: 0, Epoch: epoch})
	checkSeqs(t, collect(t, r, 203), 1)
}

// TestDiskFullCrashReportsTheHole: the agent dies while records wait for
// the disk. They are lost, and said so: a resume across them resets, a
// durable consumer counts them, --since 0 gets a note; seqs are not
// reused.
func TestDiskFullCrashReportsTheHole(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	cfg := Config{Dir: dir, reserveBlock: testBlock, createFile: failingCreate(&fail)}
	b := openBus(t, cfg)
	publishN(b, 5)
	fail.Store(true)
	publishN(b, 4) // 6..9 in memory only
	_, epoch := b.Position()
	crash(t, b)
	fail.Store(false)

	b = reopen(t, cfg)
	if head, _ := b.Position(); head != testBlock {
		t.Fatalf("head %d after the crash, want %d", head, testBlock)
	}
	b.Publish("n1", KindEvent, nil)
	for _, since := range []uint64{3, 5, 7} {
		s := subscribe(t, b, SubscribeOptions{Resume: true, Since: since, Epoch: epoch})
		if !strings.Contains(s.Reset(), "records 6 to 9 were lost") {
			t.Fatalf("resume after %d across the lost records: reset %q", since, s.Reset())
		}
	}
	// A client that saw everything published misses nothing.
	s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 9, Epoch: epoch})
	if s.Reset() != "" {
		t.Fatalf("resume after 9: reset %q", s.Reset())
	}
	checkSeqs(t, collect(t, s, 1), testBlock+1)
	d := subscribe(t, b, SubscribeOptions{Resume: true, Since: 3, Epoch: epoch, Durable: true})
	got := collect(t, d, 3)
	if got[0].Seq != 4 || got[1].Seq != 5 || got[2].Seq != testBlock+1 || d.Skipped() != 4 {
		t.Fatalf("durable across the hole: %d %d %d, skipped %d (want 4 5 %d, 4)", got[0].Seq, got[1].Seq, got[2].Seq, d.Skipped(), testBlock+1)
	}
	all := subscribe(t, b, SubscribeOptions{SinceTime: time.Unix(0, 1)})
	if !strings.Contains(all.Reset(), "records 6 to 9 were lost") {
		t.Fatalf("since the beginning: note %q", all.Reset())
	}
}

// TestDiskFullRingOverflowLeavesAHole: an outage longer than the ring
// holds loses records for good; the journal then has a hole, reported the
// same way, and the segments on each side stay gapless.
func TestDiskFullRingOverflowLeavesAHole(t *testing.T) {
	dir := t.TempDir()
	clock := testutil.NewFakeClock()
	var fail atomic.Bool
	b := openBus(t, Config{Dir: dir, Now: clock.Now, RingSize: 8, createFile: failingCreate(&fail)})
	d := subscribe(t, b, SubscribeOptions{Durable: true})
	publishN(b, 3)
	collect(t, d, 3)
	fail.Store(true)
	publishN(b, 20) // 4..23; the ring keeps 16..23
	fail.Store(false)
	clock.Advance(2 * retryInterval)
	waitFor(t, "the journal to catch up", func() bool { return b.Stats().JournalWaiting == 0 })
	if st := b.Stats(); st.JournalLost != 12 {
		t.Fatalf("JournalLost %d, want 12", st.JournalLost)
	}
	got := collect(t, d, 8)
	if got[0].Seq != 16 || d.Skipped() != 12 {
		t.Fatalf("durable behind the ring: first %d skipped %d, want 16 and 12", got[0].Seq, d.Skipped())
	}
	_, epoch := b.Position()
	b.Close()
	b = openBus(t, Config{Dir: dir, Now: clock.Now})
	if s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 2, Epoch: epoch}); !strings.Contains(s.Reset(), "records 4 to 15 were lost") {
		t.Fatalf("resume across the hole: %q", s.Reset())
	}
	all := subscribe(t, b, SubscribeOptions{SinceTime: time.Unix(0, 1)})
	if all.Start() != 15 || !strings.Contains(all.Reset(), "records 4 to 15 were lost") {
		t.Fatalf("since the beginning: start %d note %q", all.Start(), all.Reset())
	}
}

func TestRingBoundedInBytes(t *testing.T) {
	b := openBus(t, Config{RingSize: 1000, RingBytes: 10_000})
	big := make([]byte, 1000)
	for i := range big {
		big[i] = 'x'
	}
	data := []byte(`"` + string(big) + `"`)
	for range 50 {
		b.Publish("n1", KindPatch, data)
	}
	st := b.Stats()
	if st.RingBytes > 10_000 || st.RingRecords < 5 || st.RingRecords > 10 {
		t.Fatalf("ring holds %d records, %d bytes: want at most 10000 bytes", st.RingRecords, st.RingBytes)
	}
	// The newest record always stays, however big.
	b.Publish("n1", KindPatch, append(append([]byte(`"`), bytes.Repeat([]byte("y"), 20_000)...), '"'))
	if st := b.Stats(); st.RingRecords != 1 {
		t.Fatalf("after a record over the bound the ring holds %d records", st.RingRecords)
	}
	// A subscriber behind the ring of a memory-only bus is cut, not fed a gap.
	s := subscribe(t, b, SubscribeOptions{Resume: true, Since: 10, Epoch: mustEpoch(b), MaxLag: 1 << 20})
	if s.Reset() == "" {
		t.Fatal("resume behind the ring: no reset")
	}
}

func mustEpoch(b *Bus) string { _, e := b.Position(); return e }

func TestRecordDataSharesTheEncoding(t *testing.T) {
	r := NewRecord(1, "e", time.Unix(0, 0), "n1", KindPatch, []byte(`[{"op":"add","path":"/a","value":1}]`))
	if !r.shared || string(r.Data) != `[{"op":"add","path":"/a","value":1}]` {
		t.Fatalf("data %s not shared with the encoding", r.Data)
	}
	p, err := ParseRecord(r.JSON())
	if err != nil || !p.shared || !bytes.Equal(p.Data, r.Data) {
		t.Fatalf("parsed record: %v shared %v", err, p.shared)
	}
	// Not compact input is re-encoded; its data is then held apart.
	q := NewRecord(1, "e", time.Unix(0, 0), "n1", KindPatch, []byte(`[ 1 ]`))
	if q.shared || string(q.Data) != `[ 1 ]` {
		t.Fatalf("data %q shared %v", q.Data, q.shared)
	}
}

func TestCloseWaitsNoGoroutineAfterDiskFull(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	fail.Store(true)
	b, err := Open(Config{Dir: dir, Logger: testLogger(), createFile: failingCreate(&fail)})
	if err != nil {
		t.Fatal(err)
	}
	publishN(b, 10)
	if err := b.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		t.Logf("close: %v", err)
	}
	st, ok, err := readMark(dir)
	if err != nil || !ok || st.LostFrom != 1 || st.LostTo != 10 || st.Reserved != 10 {
		t.Fatalf("mark after a close during an outage: %+v %v %v", st, ok, err)
	}
	if _, err := os.Stat(filepath.Join(dir, segmentName(1))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an empty segment was left behind: %v", err)
	}
	_ = context.Background
}

func TestSync(t *testing.T) {
	if err := openBus(t, Config{}).Sync(); err != nil {
		t.Fatalf("memory-only Sync: %v", err)
	}
	dir := t.TempDir()
	var fail atomic.Bool
	b := openBus(t, Config{Dir: dir, createFile: failingCreate(&fail)})
	publishN(b, 3)
	if err := b.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	fail.Store(true)
	publishN(b, 1)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "1 records wait") {
		t.Fatalf("Sync while a record waits for the disk: %v", err)
	}
}
