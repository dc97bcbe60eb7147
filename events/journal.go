package events

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Journal layout: DIR/NNNNNNNNNNNNNNNNNNNN.jsonl segments named by the seq
// of their first record, each line one record's JSON(); DIR/epoch holds the
// epoch while the journal's tail is complete; DIR/lost/ keeps the segments of
// the last epoch whose history could not be read back.
const (
	segmentSuffix = ".jsonl"
	segmentDigits = 20
	epochFile     = "epoch"
	lostDir       = "lost"
)

// segmentFile is what the journal writes a segment through.
type segmentFile interface {
	io.Writer
	Sync() error
	Close() error
	Truncate(size int64) error
}

func createSegmentFile(path string) (segmentFile, error) {
	// O_EXCL: a record once written is never rewritten, even if numbering
	// went wrong.
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
}

// segment describes one journal file. Every segment is gapless: after a
// failed write the next record starts a new segment.
type segment struct {
	path      string
	first     uint64 // from the name
	last      uint64 // last < first while empty
	firstTime time.Time
	lastTime  time.Time
	size      int64 // bytes of complete records
}

func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", segmentDigits, first, segmentSuffix)
}

func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != segmentDigits {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	// Seqs start at 1; a segment "0" is not one of ours.
	return n, err == nil && n > 0
}

// journal is the durable copy of the stream.
type journal struct {
	dir      string
	segBytes int64
	maxBytes int64
	maxAge   time.Duration
	now      func() time.Time
	log      *slog.Logger
	create   func(path string) (segmentFile, error)

	// mu guards the fields below. Lock order: Bus.mu before journal.mu;
	// Publish takes journal.mu before releasing Bus.mu so records reach the
	// file in seq order while subscribers keep reading the ring.
	mu        sync.Mutex
	epoch     string
	segs      []*segment // oldest first; the last one is active
	f         segmentFile
	total     int64
	broken    bool   // the last write failed: the next record starts a new segment
	failures  uint64 // failures in the current burst, for one log line per burst
	writeErrs uint64
	dirty     bool   // written since the last fsync
	lostBelow uint64 // records below this are unreadable (found corrupt while reading)
	closed    bool
	line      []byte // reused write buffer
}

// openJournal loads or starts the journal in cfg.Dir. It returns the newest
// seq and its time (0 and zero for a new epoch).
func openJournal(cfg Config, log *slog.Logger) (*journal, uint64, time.Time, error) {
	j := &journal{
		dir:      cfg.Dir,
		segBytes: cfg.SegmentBytes,
		maxBytes: cfg.MaxBytes,
		maxAge:   cfg.MaxAge,
		now:      cfg.Now,
		log:      log.With(keyDir, cfg.Dir),
		create:   cfg.createFile,
	}
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("create journal directory: %w", err)
	}
	segs, err := j.listSegments()
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	epoch, reason := j.load(segs)
	onDisk, _ := os.ReadFile(filepath.Join(j.dir, epochFile))
	if reason == "" && len(j.segs) > 0 {
		if strings.TrimSpace(string(onDisk)) != epoch {
			// The epoch file is removed when a write fails and written back
			// once the journal holds the newest record again: without it,
			// records were published that the journal does not have, and
			// reusing their numbers would be a silent renumbering.
			reason = "the journal may lack the newest records (write errors before the last shutdown, or epoch file missing)"
		}
	}
	if reason != "" || len(j.segs) == 0 {
		old := epoch
		epoch = newEpoch()
		if reason != "" {
			j.log.Warn("journal history unreadable: starting a new epoch", keyReason, reason, keyOldEpoch, old, keyEpoch, epoch)
			if err := j.moveAside(); err != nil {
				return nil, 0, time.Time{}, err
			}
		}
		j.segs, j.total = nil, 0
	}
	j.epoch = epoch
	if strings.TrimSpace(string(onDisk)) != epoch {
		if err := j.writeEpoch(); err != nil {
			// Not fatal: the agent runs from memory on a full or read-only
			// disk, and without the file the next start takes a new epoch,
			// which is the safe side.
			j.writeErrs++
			j.failures++
			j.log.Error("cannot write journal epoch file", keyErr, err)
		}
	}
	j.retain()
	var head uint64
	var last time.Time
	if n := len(j.segs); n > 0 {
		head, last = j.segs[n-1].last, j.segs[n-1].lastTime
		// Appending to the newest segment keeps the segment count low across
		// restarts; it is gapless with what comes next.
		f, err := os.OpenFile(j.segs[n-1].path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			j.log.Warn("cannot reopen newest journal segment; the next record starts a new one", keyErr, err)
		} else {
			j.f = f
		}
	}
	return j, head, last, nil
}

func (j *journal) listSegments() ([]*segment, error) {
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("read journal directory: %w", err)
	}
	var segs []*segment
	for _, e := range entries {
		first, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(j.dir, e.Name())
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("stat journal segment %s: %w", path, err)
		}
		if info.Size() == 0 {
			// A rotation whose first write failed: nothing to keep.
			if err := os.Remove(path); err != nil {
				j.log.Warn("cannot remove empty journal segment", keyFile, path, keyErr, err)
			}
			continue
		}
		segs = append(segs, &segment{path: path, first: first, size: info.Size()})
	}
	sort.Slice(segs, func(a, b int) bool { return segs[a].first < segs[b].first })
	return segs, nil
}

// load checks the segments and keeps them in j.segs. It returns their epoch,
// or a reason when the history cannot be trusted.
func (j *journal) load(segs []*segment) (epoch, reason string) {
	// The newest segment is scanned whole: it is where a crash tears a line,
	// and where the numbering continues from.
	for len(segs) > 0 {
		var ok bool
		epoch, ok, reason = j.scanNewest(segs[len(segs)-1])
		if reason != "" {
			return "", reason
		}
		if ok {
			break
		}
		segs = segs[:len(segs)-1]
	}
	if len(segs) == 0 {
		return "", ""
	}
	// Older segments are checked at both ends only: reading 256 MiB at
	// start-up would delay the agent; corruption inside one is found by the
	// reader, which then reports the loss.
	for i := len(segs) - 2; i >= 0; i-- {
		s := segs[i]
		keep, why := j.checkEnds(s, epoch)
		if why != "" {
			return "", why
		}
		if !keep {
			segs = append(segs[:i], segs[i+1:]...)
			continue
		}
		if s.last >= segs[i+1].first {
			return "", fmt.Sprintf("segments %s and %s overlap", filepath.Base(s.path), filepath.Base(segs[i+1].path))
		}
	}
	for _, s := range segs {
		j.total += s.size
	}
	j.segs = segs
	return epoch, ""
}

// moveAside keeps the unreadable history in DIR/lost for an operator (only
// the last such history, so the disk use stays bounded).
func (j *journal) moveAside() error {
	lost := filepath.Join(j.dir, lostDir)
	if err := os.RemoveAll(lost); err != nil {
		return fmt.Errorf("clear %s: %w", lost, err)
	}
	if err := os.Mkdir(lost, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", lost, err)
	}
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("read journal directory: %w", err)
	}
	for _, e := range entries {
		if _, ok := parseSegmentName(e.Name()); !ok {
			continue
		}
		if err := os.Rename(filepath.Join(j.dir, e.Name()), filepath.Join(lost, e.Name())); err != nil {
			return fmt.Errorf("move unreadable journal segment aside: %w", err)
		}
	}
	return nil
}

func newEpoch() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// writeEpoch records the epoch beside the segments, atomically.
func (j *journal) writeEpoch() error {
	path := filepath.Join(j.dir, epochFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(j.epoch+"\n"), 0o600); err != nil {
		return fmt.Errorf("write journal epoch file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write journal epoch file: %w", err)
	}
	return syncDir(j.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync journal directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync journal directory %s: %w", dir, err)
	}
	return nil
}

// appendLocked writes one record; j.mu is held. Errors are counted and
// logged once per burst; the record stays in memory.
func (j *journal) appendLocked(r *Record) {
	if j.closed {
		return
	}
	j.line = append(append(j.line[:0], r.JSON()...), '\n')
	var active *segment
	if n := len(j.segs); n > 0 {
		active = j.segs[n-1]
	}
	if j.f == nil || j.broken || active == nil {
		if err := j.rotate(r); err != nil {
			j.fail(r, err)
			return
		}
	} else if active.size >= j.segBytes {
		if err := j.rotate(r); err != nil {
			// The current segment can take the record: a bigger file is
			// better than a missing record.
			j.writeErrs++
			j.log.Warn("journal rotation failed; appending to the current segment", keyErr, err)
		}
	}
	active = j.segs[len(j.segs)-1]
	n, err := j.f.Write(j.line)
	if err != nil {
		if n > 0 {
			// Keep the file made of whole records; if this fails too, Open
			// drops the torn tail.
			_ = j.f.Truncate(active.size)
		}
		j.fail(r, fmt.Errorf("write record %d to %s: %w", r.Seq, active.path, err))
		return
	}
	active.size += int64(n)
	j.total += int64(n)
	if active.last < active.first {
		active.firstTime = r.Time
	}
	active.last, active.lastTime = r.Seq, r.Time
	j.dirty = true
	if j.failures > 0 {
		j.log.Info("journal writes recovered", keyCount, j.failures, keySeq, r.Seq)
		j.failures = 0
		// The journal holds the newest record again: a restart may keep the
		// epoch (the hole is behind a segment boundary and is never served).
		if err := j.writeEpoch(); err != nil {
			j.log.Warn("cannot restore journal epoch file; the next start begins a new epoch", keyErr, err)
		}
	}
}

func (j *journal) fail(r *Record, err error) {
	j.writeErrs++
	j.broken = true
	j.failures++
	if j.failures > 1 {
		return
	}
	j.log.Error("journal write failed; records stay in memory only until writes succeed", keySeq, r.Seq, keyErr, err)
	// Mark the journal incomplete so that a restart starts a new epoch
	// instead of reusing the numbers of records it never stored.
	if rerr := os.Remove(filepath.Join(j.dir, epochFile)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		j.log.Error("cannot mark journal incomplete; a restart could reuse seqs of unwritten records", keyErr, rerr)
	}
}

// rotate starts a segment whose first record is r, then applies retention.
func (j *journal) rotate(r *Record) error {
	path := filepath.Join(j.dir, segmentName(r.Seq))
	f, err := j.create(path)
	if err != nil {
		return fmt.Errorf("create journal segment: %w", err)
	}
	if j.f != nil {
		if err := j.f.Sync(); err != nil {
			j.log.Warn("fsync of rotated journal segment failed", keyErr, err)
		}
		if err := j.f.Close(); err != nil {
			j.log.Warn("close of rotated journal segment failed", keyErr, err)
		}
	}
	if err := syncDir(j.dir); err != nil {
		j.log.Warn("journal directory not synced", keyErr, err)
	}
	j.f = f
	j.broken = false
	j.dirty = false
	j.segs = append(j.segs, &segment{path: path, first: r.Seq, last: r.Seq - 1})
	j.retain()
	return nil
}

// retain deletes the oldest segments while the journal is too big or they
// are too old. The active segment stays.
func (j *journal) retain() {
	now := j.now()
	for len(j.segs) > 1 {
		s := j.segs[0]
		overSize := j.maxBytes >= 0 && j.total > j.maxBytes
		overAge := j.maxAge >= 0 && now.Sub(s.lastTime) > j.maxAge
		if !overSize && !overAge {
			return
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			j.log.Warn("cannot delete old journal segment", keyFile, s.path, keyErr, err)
			return
		}
		j.total -= s.size
		j.segs = j.segs[1:]
	}
}

// syncIfDirty fsyncs the active segment outside the lock, so a slow disk
// does not hold up Publish.
func (j *journal) syncIfDirty() {
	j.mu.Lock()
	f := j.f
	if !j.dirty || f == nil {
		j.mu.Unlock()
		return
	}
	j.dirty = false
	j.mu.Unlock()
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		j.mu.Lock()
		j.writeErrs++
		j.mu.Unlock()
		j.log.Warn("journal fsync failed", keyErr, err)
	}
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	if j.f == nil {
		return nil
	}
	var errs []error
	if err := j.f.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("fsync journal in %s: %w", j.dir, err))
	}
	if err := j.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close journal in %s: %w", j.dir, err))
	}
	j.f = nil
	return errors.Join(errs...)
}

// extendBack returns the oldest seq from which every record up to cur-1 is
// in the journal, or cur when the journal does not reach cur-1.
func (j *journal) extendBack(cur uint64) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.segs) - 1; i >= 0; i-- {
		s := j.segs[i]
		if s.last < s.first || s.first >= cur {
			continue
		}
		if s.last+1 < cur {
			break
		}
		cur = s.first
	}
	return max(cur, j.lostBelow)
}

// locate returns a copy of the segment holding seq.
func (j *journal) locate(seq uint64) (segment, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.segs) - 1; i >= 0; i-- {
		s := j.segs[i]
		if s.first <= seq && seq <= s.last {
			return *s, true
		}
		if s.first <= seq {
			break
		}
	}
	return segment{}, false
}

// markLost records that the records below seq cannot be read back, so that
// resuming before it gets a reset rather than the same failure again.
func (j *journal) markLost(seq uint64) {
	j.mu.Lock()
	j.lostBelow = max(j.lostBelow, seq)
	j.mu.Unlock()
}

// snapshot copies the segment list for readers that scan outside the lock.
func (j *journal) snapshot() []segment {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]segment, 0, len(j.segs))
	for _, s := range j.segs {
		out = append(out, *s)
	}
	return out
}

type journalStats struct {
	bytes     int64
	segments  int
	writeErrs uint64
}

func (j *journal) stats() journalStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return journalStats{bytes: j.total, segments: len(j.segs), writeErrs: j.writeErrs}
}
