package sectorfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTripAndDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	if err := WriteFile(path, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(path); info.Size() != Size || info.Mode().Perm() != 0o600 {
		t.Fatalf("file %d bytes mode %v", info.Size(), info.Mode())
	}
	// A shorter record replaces a longer one whole.
	if err := WriteFile(path, []byte(`{"a":123456789}`)); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if p, err := Read(path); err != nil || string(p) != `{}` {
		t.Fatalf("read %q %v", p, err)
	}
	data, _ := os.ReadFile(path)
	data[0] = '['
	os.WriteFile(path, data, 0o600)
	if _, err := Read(path); !errors.Is(err, ErrDamaged) {
		t.Fatalf("damaged record read: %v", err)
	}
	// An older record written whole, without a checksum, reads as it is.
	os.WriteFile(path, []byte("{\"frozen\":0}\n"), 0o600)
	if p, err := Read(path); err != nil || string(p) != `{"frozen":0}` {
		t.Fatalf("legacy record: %q %v", p, err)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := Encode(make([]byte, MaxPayload+1)); err == nil {
		t.Fatal("oversized payload encoded")
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode([]byte(`{"x":1}`))
	f.Add(good)
	f.Add([]byte("garbage"))
	f.Add([]byte("a\ncrc32c zz\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(data)
		if err != nil {
			return
		}
		if len(p) == 0 {
			t.Fatal("empty payload decoded")
		}
	})
}
