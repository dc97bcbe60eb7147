package events

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"agent/internal/testutil"
)

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"seq":1201,"epoch":"9f2c","time":"2026-11-22T10:00:01.123456Z","nodename":"n2","kind":"patch","data":[]}`))
	f.Add([]byte(`{"seq":-1}`))
	f.Add([]byte(`{"time":"yesterday"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRecord(line)
		if err != nil {
			return
		}
		if !bytes.Equal(r.JSON(), line) {
			t.Fatalf("JSON() is not the parsed line")
		}
		if seq, ok := seqPrefix(line); ok && seq != r.Seq {
			t.Fatalf("seqPrefix %d, ParseRecord %d", seq, r.Seq)
		}
	})
}

// FuzzOpenJournal: whatever the newest segment holds, Open must not panic,
// and what it keeps must be readable back in order.
func FuzzOpenJournal(f *testing.F) {
	good := NewRecord(1, "abcd1234", testutil.NewFakeClock().Now(), "n1", KindEvent, []byte(`{"id":"x"}`)).JSON()
	f.Add(append(append([]byte(nil), good...), '\n'))
	f.Add(append(append([]byte(nil), good...), "\n{\"seq\":2,"...))
	f.Add([]byte("\n\n\x00garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, legacyEpoch), []byte("abcd1234\n"), 0o600)
		os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o600)
		b, err := Open(Config{Dir: dir, Logger: testLogger()})
		if err != nil {
			return
		}
		defer b.Close()
		head, epoch := b.Position()
		b.Publish("n1", KindEvent, nil)
		s, err := b.Subscribe(SubscribeOptions{Resume: true, Since: b.Oldest() - 1, Epoch: epoch, Durable: true})
		if err != nil {
			t.Fatalf("resume at the oldest: %v", err)
		}
		drain(t, s, head+1)
	})
}

// FuzzJournalReader damages the inside of an older segment, which Open only
// checks at its ends: a reader must skip the damage (durable) without a
// panic, a duplicate or a disorder.
func FuzzJournalReader(f *testing.F) {
	f.Add([]byte("garbage\n"))
	f.Add([]byte(`{"seq":99,"epoch":"x"}` + "\n"))
	f.Add([]byte(""))
	f.Add([]byte("{\"seq\":3\n\n"))
	f.Fuzz(func(t *testing.T, middle []byte) {
		dir := t.TempDir()
		b, err := Open(Config{Dir: dir, SegmentBytes: 600, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		publishN(b, 12)
		b.Close()
		seg := filepath.Join(dir, segmentName(1))
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.SplitAfter(data, []byte("\n"))
		if len(lines) < 3 {
			t.Skip("first segment too short to damage")
		}
		damaged := append(append(append([]byte(nil), lines[0]...), middle...), lines[len(lines)-2]...)
		os.WriteFile(seg, damaged, 0o600)

		b, err = Open(Config{Dir: dir, SegmentBytes: 600, Logger: testLogger()})
		if err != nil {
			return
		}
		defer b.Close()
		head, epoch := b.Position()
		s, err := b.Subscribe(SubscribeOptions{Resume: true, Since: b.Oldest() - 1, Epoch: epoch, Durable: true})
		if err != nil {
			t.Fatalf("resume at the oldest: %v", err)
		}
		drain(t, s, head)
	})
}

// drain reads until the subscription has delivered seq upTo or fails,
// checking the order.
func drain(t *testing.T, s *Subscription, upTo uint64) {
	t.Helper()
	last := s.Start()
	for last < upTo {
		r, err := s.Next(context.Background())
		if err != nil {
			return // a reported failure is fine; a silent disorder is not
		}
		if r.Seq <= last {
			t.Fatalf("record %d after %d", r.Seq, last)
		}
		last = r.Seq
	}
}
