package triggers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"agent/internal/atomicfile"
)

// cursor is where the engine is in the record stream: it has applied every
// record up to Seq of Epoch.
type cursor struct {
	Epoch string
	Seq   uint64
}

// Compaction bounds of the state file: it is rewritten as a snapshot when
// it exceeds both compactMin and compactFactor times its size after the
// previous snapshot.
const (
	compactMin    = 4 << 20
	compactFactor = 4
)

// stateFile is the engine's state on disk: an append-only file of JSON
// lines, the engine's change entries in batches, each batch ended by a
// commit entry that holds the cursor. Loading keeps the committed batches
// only: a batch cut by a crash is dropped, and the records it covered are
// read again after the cursor, so the state and the cursor always agree.
// Owned by the runner's loop goroutine.
type stateFile struct {
	path string
	log  *slog.Logger
	f    *os.File // nil until the first commit, and after a failed one
	size int64    // bytes of committed batches in the file
	base int64    // size after the last snapshot
	buf  []byte   // entries of the next batch
	// snap: the next commit writes a whole snapshot instead of appending
	// (after loading, and after a failed write).
	snap   bool
	failed bool // the last commit failed (logged once)
	// compactMin is the size below which the file is never compacted
	// (compactMin, smaller in tests).
	compactMin int64
}

// loadState reads the state file at path: the committed entries and the
// cursor of the last commit (ok false when there is none). A missing file
// is an empty state. What follows the last commit (a batch cut by a crash,
// or damage) is dropped, with a log line when it is more than a torn tail.
func loadState(path string, log *slog.Logger) (*stateFile, []entry, cursor, bool, error) {
	s := &stateFile{path: path, log: log, snap: true, compactMin: compactMin}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil, cursor{}, false, nil
	}
	if err != nil {
		return nil, nil, cursor{}, false, fmt.Errorf("read trigger state: %w", err)
	}
	var (
		committed []entry
		batch     []entry
		cur       cursor
		ok        bool
		good      int // bytes up to the end of the last commit
		damaged   = -1
	)
	for off := 0; off < len(data); {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			break // a torn last line
		}
		line := data[off : off+nl]
		var en entry
		if err := json.Unmarshal(line, &en); err != nil || en.Op == "" {
			damaged = off
			break
		}
		off += nl + 1
		if en.Op == opCommit {
			committed = append(committed, batch...)
			batch = batch[:0]
			cur, ok, good = cursor{Epoch: en.Epoch, Seq: en.Seq}, true, off
			continue
		}
		batch = append(batch, en)
	}
	switch {
	case damaged >= 0 && bytes.Count(data[damaged:], []byte("\n")) > 1:
		// Lines follow the damaged one: more than a crash's torn tail.
		log.Error("trigger state file damaged: the changes after the last good commit are dropped and their records read again",
			keyFile, path, "offset", damaged, "dropped_bytes", len(data)-good)
	case len(data) > good:
		log.Info("trigger state: an uncommitted tail (cut by a crash) is dropped; its records are read again",
			keyFile, path, "dropped_bytes", len(data)-good)
	}
	s.size, s.base = int64(good), int64(good)
	return s, committed, cur, ok, nil
}

// add queues entries for the next commit.
func (s *stateFile) add(list []entry) {
	if s.snap {
		return // the next commit writes a snapshot: it will hold them
	}
	for i := range list {
		s.buf = appendEntry(s.buf, &list[i])
	}
}

// commit makes the queued entries and the cursor durable (written and
// fsynced): appended, or as a whole snapshot from snapshot() when one is
// due. On error the file is left as it was before, and the next commit
// writes a snapshot.
func (s *stateFile) commit(cur cursor, snapshot func() []entry) error {
	if !s.snap && s.f != nil && s.size > s.compactMin && s.size > compactFactor*s.base {
		s.snap = true
	}
	var err error
	if s.snap {
		err = s.writeSnapshot(snapshot(), cur)
	} else {
		err = s.appendBatch(cur)
	}
	s.buf = s.buf[:0]
	if err != nil {
		s.snap = true
		if !s.failed {
			s.log.Error("cannot write the trigger state: streams opened or closed since the last write would be rebuilt from the journal after a crash, and commands run since may run again",
				keyFile, s.path, keyErr, err)
		}
		s.failed = true
		return err
	}
	if s.failed {
		s.log.Info("trigger state written again", keyFile, s.path)
		s.failed = false
	}
	return nil
}

func (s *stateFile) appendBatch(cur cursor) error {
	s.buf = appendEntry(s.buf, &entry{Op: opCommit, Epoch: cur.Epoch, Seq: cur.Seq})
	n, err := s.f.Write(s.buf)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// Cut what was written: a partial batch must not be taken for a
		// part of the next one.
		if n > 0 {
			_ = s.f.Truncate(s.size)
		}
		s.close()
		return err
	}
	s.size += int64(n)
	return nil
}

// writeSnapshot replaces the file with list and a commit, durably
// (atomicfile: a temporary file fsynced and renamed over it, then the
// directory fsynced), and opens it again for the following batches.
func (s *stateFile) writeSnapshot(list []entry, cur cursor) error {
	s.close()
	var b []byte
	for i := range list {
		b = appendEntry(b, &list[i])
	}
	b = appendEntry(b, &entry{Op: opCommit, Epoch: cur.Epoch, Seq: cur.Seq})
	if err := atomicfile.WriteFile(s.path, b); err != nil {
		return err
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	s.f, s.size, s.base, s.snap = f, int64(len(b)), int64(len(b)), false
	return nil
}

func (s *stateFile) close() {
	if s.f != nil {
		_ = s.f.Close()
		s.f = nil
	}
}
