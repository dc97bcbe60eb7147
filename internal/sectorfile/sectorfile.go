// Package sectorfile keeps a small record in a file rewritten in place:
// one write of one disk sector, fsynced, instead of a new file renamed
// over the old one.
//
// Why in place: a rename needs a new file, so it fails on a full disk,
// and it needs an fsync of the directory as well as of the file to
// survive a power loss. A write of at most one sector (512 bytes) at
// offset 0 of a file that already exists needs neither: disks write a
// sector whole or not at all (PostgreSQL keeps pg_control the same way),
// and a checksum catches the rare device that tears one anyway, so a
// damaged record is detected rather than misread.
//
// Layout: the payload (one line, no newline in it), a newline, the line
// "crc32c XXXXXXXX" (Castagnoli, hex) over the payload, a newline, and
// spaces to Size bytes. A record without the checksum line (written by
// an older version through a rename) is read as it is.
package sectorfile

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"

	"agent/internal/atomicfile"
)

// Size is the size of the file: one disk sector.
const Size = 512

// MaxPayload is the longest payload that fits.
const MaxPayload = Size - len("\ncrc32c 00000000\n")

// ErrDamaged: the file does not hold a whole record.
var ErrDamaged = errors.New("damaged record")

var table = crc32.MakeTable(crc32.Castagnoli)

// Encode lays out payload in Size bytes.
func Encode(payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload || bytes.IndexByte(payload, '\n') >= 0 {
		return nil, fmt.Errorf("sectorfile: payload of %d bytes does not fit in one line of %d", len(payload), MaxPayload)
	}
	buf := make([]byte, 0, Size)
	buf = append(buf, payload...)
	buf = append(buf, "\ncrc32c "...)
	buf = fmt.Appendf(buf, "%08x\n", crc32.Checksum(payload, table))
	for len(buf) < Size {
		buf = append(buf, ' ')
	}
	return buf, nil
}

// Decode returns the payload of a file's content, checking its checksum
// when it has one.
func Decode(data []byte) ([]byte, error) {
	data = bytes.TrimRight(data, " \n\x00")
	payload, check, found := bytes.Cut(data, []byte("\n"))
	if len(payload) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrDamaged)
	}
	if !found {
		return payload, nil // an older record, without a checksum
	}
	hex, ok := bytes.CutPrefix(check, []byte("crc32c "))
	want, err := strconv.ParseUint(string(hex), 16, 32)
	if !ok || err != nil || bytes.IndexByte(hex, '\n') >= 0 {
		return nil, fmt.Errorf("%w: no checksum line", ErrDamaged)
	}
	if got := crc32.Checksum(payload, table); got != uint32(want) {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrDamaged, got, want)
	}
	return payload, nil
}

// Read reads and decodes the file at path. The error wraps os.ErrNotExist
// when there is none, ErrDamaged when it does not decode.
func Read(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// File is an open record file.
type File struct {
	f *os.File
}

// Open opens the file at path for rewriting, creating it (mode 0600) when
// missing; a new file's directory entry is fsynced at once, so that later
// in-place writes never depend on it.
func Open(path string) (*File, error) {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if err := SyncDir(filepath.Dir(path)); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	return &File{f: f}, nil
}

// Write replaces the record with payload in one write at offset 0; with
// sync, fsynced before it returns.
func (f *File) Write(payload []byte, sync bool) error {
	buf, err := Encode(payload)
	if err != nil {
		return err
	}
	if _, err := f.f.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("write %s: %w", f.f.Name(), err)
	}
	if sync {
		return f.Sync()
	}
	return nil
}

// Sync fsyncs the file.
func (f *File) Sync() error {
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", f.f.Name(), err)
	}
	return nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// SyncDir fsyncs a directory, making the creations, renames and removals
// in it durable (atomicfile.SyncDir).
func SyncDir(dir string) error { return atomicfile.SyncDir(dir) }

// WriteFile writes payload to path in place, fsynced: Open, Write, Close.
func WriteFile(path string, payload []byte) error {
	f, err := Open(path)
	if err != nil {
		return err
	}
	if err := f.Write(payload, true); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
