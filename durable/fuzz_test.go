package durable

import (
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// FuzzReadCursor: a cursor file of any content is read back or refused,
// never a panic, and what WriteCursor writes reads back the same.
func FuzzReadCursor(f *testing.F) {
	f.Add([]byte(`{"epoch":"9f2c","seq":1201}`), "9f2c", uint64(1201))
	f.Add([]byte(`{"epo`), "", uint64(0))
	f.Add([]byte(`{"epoch":"x","seq":-1}`), "x", uint64(1<<63))
	f.Add([]byte(`null`), "é\"\\", uint64(0))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte, epoch string, seq uint64) {
		path := filepath.Join(dir, "h.cursor")
		if err := RemoveCursor(path); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if c, err := ReadCursor(path); err == nil && c.Epoch == "" {
			t.Fatalf("cursor without an epoch accepted: %q", content)
		}
		if !utf8.ValidString(epoch) {
			return // epochs are hex ids; JSON cannot carry invalid UTF-8
		}
		want := Cursor{Epoch: epoch, Seq: seq}
		if err := WriteCursor(path, want); err != nil {
			t.Fatal(err)
		}
		got, err := ReadCursor(path)
		if epoch == "" {
			if err == nil {
				t.Fatal("empty epoch read back")
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("wrote %+v, read %+v, %v", want, got, err)
		}
	})
}
