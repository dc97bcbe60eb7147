package durable

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"agent/internal/atomicfile"
)

// Cursor is where a consumer is in the stream: it is done with every record
// up to Seq of Epoch. A cursor file holds one JSON object,
// {"epoch":"9f2c","seq":1201,"crc":3735928559}, where the optional crc is
// the CRC-32 (IEEE) of the epoch, a NUL byte and the decimal seq.
type Cursor struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// The files of one cursor, beside its path P:
//
//	P        the last cursor made durable: written to P.tmp, fsynced,
//	         renamed over P, the directory fsynced;
//	P.next   the newest cursor, overwritten in place at every write (one
//	         pwrite, no fsync): a killed process finds it whole; a power
//	         loss may leave it older, empty or torn (the crc tells).
//	P.tmp    where P is written before its rename.
//
// Every cursor ever written to either file was a done position when it was
// written, so whatever a power loss leaves of them is never ahead of what
// was done: a reader takes the newer of the two that read well, and the
// consumer may repeat records, never skip one.
const (
	nextSuffix = ".next"
	tmpSuffix  = ".tmp"
)

// auxSuffixes are the suffixes of the files beside a cursor path.
var auxSuffixes = []string{nextSuffix, tmpSuffix}

// CursorPathOf returns the cursor path a file of a cursor directory belongs
// to: the name itself, or the name without the suffix of one of the files a
// cursor keeps beside it. Consumers that own a directory of cursors use it
// to find the cursors of consumers that no longer exist.
func CursorPathOf(file string) string {
	for _, s := range auxSuffixes {
		if strings.HasSuffix(file, s) {
			return strings.TrimSuffix(file, s)
		}
	}
	return file
}

// fileCursor is the content of a cursor file.
type fileCursor struct {
	Epoch string  `json:"epoch"`
	Seq   uint64  `json:"seq"`
	CRC   *uint32 `json:"crc,omitempty"`
}

func checksum(c Cursor) uint32 {
	return crc32.ChecksumIEEE([]byte(c.Epoch + "\x00" + strconv.FormatUint(c.Seq, 10)))
}

// encode returns the content of a cursor file holding c.
func encode(c Cursor) []byte {
	sum := checksum(c)
	b, _ := json.Marshal(fileCursor{Epoch: c.Epoch, Seq: c.Seq, CRC: &sum}) // cannot fail: a string and numbers
	return append(b, '\n')
}

// ReadCursor reads the cursor kept at path: the newer of the newest one
// written and the last one made durable, of those that read well (in
// different epochs, the newest one written). The error wraps fs.ErrNotExist
// when there is none, and describes the content when there is one that
// cannot be read.
func ReadCursor(path string) (Cursor, error) {
	next, nextErr := readCursorFile(path + nextSuffix)
	last, err := readCursorFile(path)
	switch {
	case nextErr == nil && err == nil:
		if next.Epoch == last.Epoch && last.Seq > next.Seq {
			return last, nil
		}
		return next, nil
	case nextErr == nil:
		return next, nil
	case err == nil || errors.Is(nextErr, fs.ErrNotExist):
		return last, err
	case errors.Is(err, fs.ErrNotExist):
		return Cursor{}, nextErr
	default:
		return Cursor{}, fmt.Errorf("%w; %w", nextErr, err)
	}
}

// readCursorFile reads and checks one cursor file.
func readCursorFile(path string) (Cursor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Cursor{}, err
	}
	var fc fileCursor
	if err := json.Unmarshal(b, &fc); err != nil {
		return Cursor{}, fmt.Errorf("cursor %s: %w", path, err)
	}
	c := Cursor{Epoch: fc.Epoch, Seq: fc.Seq}
	if c.Epoch == "" {
		return Cursor{}, fmt.Errorf("cursor %s: no epoch", path)
	}
	if fc.CRC != nil && *fc.CRC != checksum(c) {
		return Cursor{}, fmt.Errorf("cursor %s: checksum mismatch (torn or damaged file)", path)
	}
	return c, nil
}

// WriteCursor replaces the cursor kept at path with c and makes it durable
// before it returns. A Consumer writes its own cursor; this is for tools
// and tests that set one.
func WriteCursor(path string, c Cursor) error {
	if err := syncCursor(path, c); err != nil {
		return err
	}
	if err := os.Remove(path + nextSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write cursor: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// RemoveCursor deletes the files of the cursor kept at path; missing ones
// are not an error.
func RemoveCursor(path string) error {
	var errs []error
	for _, p := range []string{path + nextSuffix, path + tmpSuffix, path} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// syncCursor makes c durable as path: written to path.tmp, fsynced,
// renamed over path, the directory fsynced (package atomicfile).
func syncCursor(path string, c Cursor) error {
	if err := atomicfile.WriteFile(path, encode(c)); err != nil {
		return fmt.Errorf("write cursor %s: %w", path, err)
	}
	return nil
}

// syncDir fsyncs a directory, so that the renames in it are durable.
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// nextFile is the open P.next of a consumer, overwritten in place.
type nextFile struct {
	f    *os.File
	size int // bytes in the file: a shorter cursor is padded to it
}

// openNext opens (or creates) P.next for writing in place.
func openNext(path string) (*nextFile, error) {
	f, err := os.OpenFile(path+nextSuffix, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open cursor: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open cursor: %w", err)
	}
	return &nextFile{f: f, size: int(fi.Size())}, nil
}

// write overwrites the file with c in one pwrite: a process killed after
// it returns leaves c for the next reader (the page cache has it), one
// killed before leaves the previous cursor. JSON allows the trailing blanks
// that pad a cursor shorter than the previous one.
func (n *nextFile) write(c Cursor) error {
	b := encode(c)
	if len(b) < n.size {
		pad := make([]byte, n.size-len(b))
		for i := range pad {
			pad[i] = ' '
		}
		b = append(append(b[:len(b)-1], pad...), '\n')
	}
	if _, err := n.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write cursor %s: %w", n.f.Name(), err)
	}
	n.size = max(n.size, len(b))
	return nil
}

func (n *nextFile) close() error { return n.f.Close() }
