package durable

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Cursor is where a consumer is in the stream: it is done with every record
// up to Seq of Epoch. It is also the content of a cursor file, one JSON
// object: {"epoch":"9f2c","seq":1201}.
type Cursor struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// The files of one cursor, beside its path P:
//
//	P           the last cursor made durable: fsynced before it was renamed
//	            into place, the directory fsynced after;
//	P.next      the newest cursor, renamed into place at every write but
//	            not yet fsynced: a killed process finds it, a power loss may
//	            leave it stale, empty or torn;
//	P.next.tmp  where P.next is written before its rename;
//	P.sync      a link to P.next taken by a sync, fsynced, then renamed
//	            over P.
//
// P.next, when it exists and parses, is never older than P, so a reader
// takes it first and falls back to P: after a power loss the consumer may
// repeat records, never skip one.
const (
	nextSuffix = ".next"
	tmpSuffix  = ".tmp"
	syncSuffix = ".sync"
)

// auxSuffixes are the suffixes of the files beside a cursor path, longest
// first (".tmp" is also what earlier versions wrote P through).
var auxSuffixes = []string{nextSuffix + tmpSuffix, nextSuffix, syncSuffix, tmpSuffix}

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

// ReadCursor reads the cursor kept at path: the newest one written when it
// is readable, else the last one made durable. The error wraps
// fs.ErrNotExist when there is none, and describes the content when there is
// one that cannot be read.
func ReadCursor(path string) (Cursor, error) {
	c, nextErr := readCursorFile(path + nextSuffix)
	if nextErr == nil {
		return c, nil
	}
	c, err := readCursorFile(path)
	if err == nil || errors.Is(nextErr, fs.ErrNotExist) {
		return c, err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return Cursor{}, nextErr
	}
	return Cursor{}, fmt.Errorf("%w; %w", nextErr, err)
}

// readCursorFile reads and checks one cursor file.
func readCursorFile(path string) (Cursor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Cursor{}, err
	}
	var c Cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return Cursor{}, fmt.Errorf("cursor %s: %w", path, err)
	}
	if c.Epoch == "" {
		return Cursor{}, fmt.Errorf("cursor %s: no epoch", path)
	}
	return c, nil
}

// WriteCursor replaces the cursor kept at path with c and makes it durable
// before it returns (the file and its directory are fsynced). A Consumer
// writes its own cursor; this is for tools and tests that set one.
func WriteCursor(path string, c Cursor) error {
	tmp := path + nextSuffix + tmpSuffix
	if err := writeFile(tmp, c, true); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write cursor: %w", err)
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
	for _, p := range []string{path + nextSuffix + tmpSuffix, path + nextSuffix, path + syncSuffix, path + tmpSuffix, path} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeFile writes c as a cursor file at path, fsynced when sync is set.
func writeFile(path string, c Cursor, sync bool) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err // cannot happen: a string and a number
	}
	b = append(b, '\n')
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write cursor: %w", err)
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write cursor %s: %w", path, err)
	}
	return nil
}

// writeNext replaces P.next atomically with c, without fsync: a reader (the
// next start) sees the previous P.next or the new one, never a mix.
func writeNext(path string, c Cursor) error {
	tmp := path + nextSuffix + tmpSuffix
	if err := writeFile(tmp, c, false); err != nil {
		return err
	}
	if err := os.Rename(tmp, path+nextSuffix); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write cursor: %w", err)
	}
	return nil
}

// syncNext makes the current P.next durable as P: it links P.next to
// P.sync (so that writeNext may go on renaming new versions over P.next
// meanwhile), fsyncs P.sync, renames it over P and fsyncs the directory.
// It returns fs.ErrNotExist when there is no P.next.
func syncNext(path string) error {
	tmp := path + syncSuffix
	_ = os.Remove(tmp)
	if err := os.Link(path+nextSuffix, tmp); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("sync cursor: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory, so that the renames in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync cursor directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync cursor directory %s: %w", dir, err)
	}
	return nil
}
