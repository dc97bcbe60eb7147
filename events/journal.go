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

	"agent/internal/sectorfile"
)

// Journal layout: DIR/NNNNNNNNNNNNNNNNNNNN.jsonl segments named by the
// first seq they cover, each line one record's JSON(); DIR/seqmark the seq
// high-water mark (seqmark.go); DIR/lost/ keeps the segments of the last
// epoch whose history could not be read back. DIR/epoch is the former
// marker of a complete journal, read once to adopt its epoch.
const (
	segmentSuffix = ".jsonl"
	segmentDigits = 20
	legacyEpoch   = "epoch"
	lostDir       = "lost"
)

// retryInterval is how long the journal waits after a failed write before
// it tries again: meanwhile records wait in memory, and a full disk costs
// one attempt a second, not one per record.
const retryInterval = time.Second

// flushBatch bounds how many waiting records one retry writes while it
// holds the journal lock.
const flushBatch = 1024

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

// segment describes one journal file. Its records are gapless from
// firstRec to last. Seqs first..firstRec-1 are declared empty: no record
// was ever given them (the numbering jumped past a reserved block after an
// unclean stop), so a reader passes over them without a loss.
type segment struct {
	path      string
	first     uint64 // from the name: the first seq the segment covers
	firstRec  uint64 // seq of its first record
	last      uint64 // seq of its last record; last < firstRec while it has none
	firstTime time.Time
	lastTime  time.Time
	size      int64 // bytes of complete records
	onDisk    bool  // false: the file is created by the first record
}

func (s *segment) empty() bool { return s.last < s.firstRec }

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
	mark     *seqMark   // nil when disabled
	syncMu   sync.Mutex // one sync at a time: a caller of Bus.Sync waits for a running one

	// mu guards the fields below. Lock order: Bus.mu, journal.mu,
	// seqMark.mu; Publish takes journal.mu before releasing Bus.mu so
	// records reach the file in seq order while subscribers keep reading
	// the ring.
	mu        sync.Mutex
	epoch     string
	segs      []*segment // oldest first; the last one is active
	f         segmentFile
	total     int64
	broken    bool      // the active file cannot take the next record: start a new segment
	backlog   []*Record // published, not written yet (a failed write); gapless
	retryAt   time.Time // no write is tried before, while the backlog waits
	failures  uint64    // failures in the current outage, for one log line per outage
	writeErrs uint64
	dropped   uint64 // records that left the ring before the journal took them
	dirty     bool   // the active file was written since the last fsync
	rotated   []segmentFile
	dirDirty  bool   // a file was created or removed since the last directory fsync
	lostBelow uint64 // records below this are unreadable (found corrupt while reading)
	closed    bool
	disabled  bool // no seq mark could be written: nothing is journaled this run
	line      []byte
}

// journalStart is where a loaded journal leaves the numbering.
type journalStart struct {
	head     uint64 // the seq after which numbering continues
	lastTime time.Time
	epoch    string
}

// openJournal loads or starts the journal in cfg.Dir and reserves the
// first block of seqs of this run.
func openJournal(cfg Config, log *slog.Logger) (*journal, journalStart, error) {
	j := &journal{
		dir:      cfg.Dir,
		segBytes: cfg.SegmentBytes,
		maxBytes: cfg.MaxBytes,
		maxAge:   cfg.MaxAge,
		now:      cfg.Now,
		log:      log.With(keyDir, cfg.Dir),
		create:   cfg.createFile,
	}
	var st journalStart
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return nil, st, fmt.Errorf("create journal directory: %w", err)
	}
	segs, err := j.listSegments()
	if err != nil {
		return nil, st, err
	}
	epoch, reason := j.load(segs)
	var (
		prev     uint64 // no seq above it was given in epoch
		lostFrom uint64 // records lostFrom..lostTo were given and never journaled
		lostTo   uint64
	)
	head := j.newestRecord()
	mark, haveMark, err := readMark(j.dir)
	legacy, _ := os.ReadFile(filepath.Join(j.dir, legacyEpoch))
	switch {
	case reason != "":
	case err != nil:
		reason = err.Error()
	case haveMark && len(j.segs) > 0 && mark.Epoch != epoch:
		reason = fmt.Sprintf("the seq mark is of epoch %q, the journal of epoch %q", mark.Epoch, epoch)
	case haveMark && head > mark.Reserved:
		reason = fmt.Sprintf("the journal holds seq %d, above the reserved seq %d (the mark was not saved)", head, mark.Reserved)
	case haveMark:
		epoch, prev = mark.Epoch, mark.Reserved
		if mark.LostFrom > 0 && mark.LostTo >= mark.LostFrom {
			lostFrom, lostTo = max(mark.LostFrom, head+1), min(mark.LostTo, prev)
		}
	case len(j.segs) > 0 && strings.TrimSpace(string(legacy)) == epoch:
		// The former layout kept DIR/epoch only while the journal held
		// every record published.
		prev = head
	case len(j.segs) > 0:
		reason = "no seq mark beside the journal: the newest records may be missing"
	}
	if reason != "" {
		old := epoch
		epoch = ""
		j.log.Warn("journal history unreadable: starting a new epoch", keyReason, reason, keyOldEpoch, old)
		if err := j.moveAside(); err != nil {
			return nil, st, err
		}
		j.segs, j.total, prev, head, lostFrom, lostTo = nil, 0, 0, 0, 0, 0
	}
	if epoch == "" {
		epoch = newEpoch()
	}
	j.epoch = epoch

	// Reserve this run's first block before any seq is given.
	if j.mark, err = openMark(j.dir); err == nil {
		err = j.mark.set(markState{Epoch: epoch, Reserved: prev + cfg.reserveBlock}, true)
	}
	if err != nil {
		// Without a saved mark, a crash could reuse this run's seqs: number
		// this run in an epoch of its own and keep its records in memory.
		j.log.Error("cannot save the journal's seq mark: records of this run are kept in memory only, under a new epoch",
			keyErr, err)
		if j.mark != nil {
			_ = j.mark.close()
			j.mark = nil
		}
		j.disabled, j.writeErrs, j.segs, j.total = true, 1, nil, 0
		j.epoch = newEpoch()
		return j, journalStart{epoch: j.epoch}, nil
	}
	if len(legacy) > 0 {
		_ = os.Remove(filepath.Join(j.dir, legacyEpoch))
	}
	j.retain()

	st = journalStart{head: prev, epoch: epoch}
	if n := len(j.segs); n > 0 {
		st.lastTime = j.segs[n-1].lastTime
	}
	known := max(head, lostTo) // every seq up to it is journaled or lost
	if lostTo > 0 {
		j.log.Error("records were not journaled before the last stop (write errors): they are lost",
			keyFrom, lostFrom, keyTo, lostTo, keyCount, lostTo-lostFrom+1)
	}
	if prev > known {
		j.log.Warn("unclean stop: numbering continues past the reserved seqs; a client that saw a lost record gets a reset",
			keyFrom, known+1, keyTo, prev, keyEpoch, epoch)
	}
	if prev > head || len(j.segs) == 0 {
		// The next record does not follow the newest one on disk: it
		// starts a segment whose name declares the skipped seqs empty.
		first := known + 1
		if len(j.segs) == 0 && lostTo == 0 {
			// Nothing retained: no seq up to prev can be vouched empty.
			first = prev + 1
		}
		j.segs = append(j.segs, &segment{path: filepath.Join(j.dir, segmentName(first)),
			first: first, firstRec: prev + 1, last: prev})
		return j, st, nil
	}
	// Appending to the newest segment keeps the segment count low across
	// restarts; it is gapless with what comes next.
	f, err := os.OpenFile(j.segs[len(j.segs)-1].path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		j.log.Warn("cannot reopen newest journal segment; the next record starts a new one", keyErr, err)
	} else {
		j.f = f
	}
	return j, st, nil
}

// newestRecord is the seq of the newest record on disk, 0 if none.
func (j *journal) newestRecord() uint64 {
	for i := len(j.segs) - 1; i >= 0; i-- {
		if !j.segs[i].empty() {
			return j.segs[i].last
		}
	}
	return 0
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
			// A segment whose first write failed: nothing to keep.
			if err := os.Remove(path); err != nil {
				j.log.Warn("cannot remove empty journal segment", keyFile, path, keyErr, err)
			}
			continue
		}
		segs = append(segs, &segment{path: path, first: first, firstRec: first, size: info.Size(), onDisk: true})
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
		if _, ok := parseSegmentName(e.Name()); !ok && e.Name() != markFile {
			continue
		}
		if err := os.Rename(filepath.Join(j.dir, e.Name()), filepath.Join(lost, e.Name())); err != nil {
			return fmt.Errorf("move unreadable journal segment aside: %w", err)
		}
	}
	return syncDir(j.dir)
}

func newEpoch() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return hex.EncodeToString(b[:])
}

func syncDir(dir string) error { return sectorfile.SyncDir(dir) }

// appendLocked takes one record just published; j.mu is held. ringFirst is
// the oldest seq the ring still holds: a record waiting for the disk that
// is no longer in memory is lost. Errors are counted and logged once per
// outage; the record stays in memory and is written when the disk takes
// writes again.
func (j *journal) appendLocked(r *Record, ringFirst uint64) {
	if j.closed || j.disabled {
		return
	}
	if len(j.backlog) == 0 {
		if err := j.write(r); err != nil {
			j.backlog = append(j.backlog, r)
			j.fail(err)
		}
		return
	}
	j.backlog = append(j.backlog, r)
	j.dropBefore(ringFirst)
	if j.now().Before(j.retryAt) {
		j.noteBacklog()
		return
	}
	j.flushLocked(len(j.backlog))
}

// retryLocked writes what waits, when its time has come; j.mu is held.
func (j *journal) retryLocked(ringFirst uint64, force bool) {
	if j.closed || j.disabled || len(j.backlog) == 0 {
		return
	}
	j.dropBefore(ringFirst)
	if len(j.backlog) > 0 && (force || !j.now().Before(j.retryAt)) {
		j.flushLocked(flushBatch)
	}
}

// waiting reports whether records wait for the disk.
func (j *journal) waiting() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.backlog) > 0 && !j.closed
}

// flushLocked writes up to limit waiting records, in order.
func (j *journal) flushLocked(limit int) {
	n := 0
	for len(j.backlog) > 0 && n < limit {
		if err := j.write(j.backlog[0]); err != nil {
			j.fail(err)
			return
		}
		j.backlog[0] = nil
		j.backlog = j.backlog[1:]
		n++
	}
	if len(j.backlog) > 0 {
		j.noteBacklog()
		return
	}
	j.backlog = nil
	j.log.Info("journal writes recovered: the records kept in memory are written", keyCount, j.failures)
	j.failures = 0
	if err := j.mark.setLost(0, 0); err != nil {
		j.log.Warn("cannot update the journal's seq mark", keyErr, err)
	}
}

// dropBefore forgets the waiting records the ring no longer holds: they
// are lost, and the journal has a hole where they were.
func (j *journal) dropBefore(ringFirst uint64) {
	k := 0
	for k < len(j.backlog) && j.backlog[k].Seq < ringFirst {
		k++
	}
	if k == 0 {
		return
	}
	from, to := j.backlog[0].Seq, j.backlog[k-1].Seq
	clear(j.backlog[:k])
	j.backlog = j.backlog[k:]
	j.dropped += uint64(k)
	// The next record written starts a new segment: every segment stays
	// gapless, and the hole is where one segment ends and the next begins.
	j.broken = true
	if n := len(j.segs); n > 0 && j.segs[n-1].empty() && !j.segs[n-1].onDisk {
		// The segment that would have declared this run's skipped seqs
		// empty lost its first record: the hole takes them too.
		j.segs = j.segs[:n-1]
	}
	j.log.Error("journal still failing and the ring is full: records never reach the disk",
		keyFrom, from, keyTo, to, keyCount, k)
}

// noteBacklog records in the seq mark which records are not journaled, so
// that a restart knows them lost rather than empty.
func (j *journal) noteBacklog() {
	if len(j.backlog) == 0 {
		return
	}
	if err := j.mark.setLost(j.backlog[0].Seq, j.backlog[len(j.backlog)-1].Seq); err != nil && j.failures == 1 {
		j.log.Error("cannot record the unjournaled records in the seq mark", keyErr, err)
	}
}

// write appends one record to the active segment, starting a segment when
// needed. On error nothing of the record stays in the file when the file
// can be cut back; otherwise the next record starts a new segment.
func (j *journal) write(r *Record) error {
	j.line = append(append(j.line[:0], r.JSON()...), '\n')
	var active *segment
	if n := len(j.segs); n > 0 {
		active = j.segs[n-1]
	}
	switch {
	case active != nil && !active.onDisk && active.firstRec == r.Seq:
		// This run's first segment, named after the seqs it declares empty.
		f, err := j.create(active.path)
		if err != nil {
			return fmt.Errorf("create journal segment: %w", err)
		}
		active.onDisk, j.f, j.broken, j.dirDirty = true, f, false, true
	case active == nil || j.f == nil || j.broken || (!active.empty() && active.last+1 != r.Seq) ||
		(active.empty() && active.firstRec != r.Seq):
		if err := j.rotate(r.Seq); err != nil {
			return err
		}
	case active.size >= j.segBytes:
		if err := j.rotate(r.Seq); err != nil {
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
			// Keep the file made of whole records; if that fails too, the
			// next record starts a new segment and Open drops the torn tail.
			if terr := j.f.Truncate(active.size); terr != nil {
				j.broken = true
			}
		}
		return fmt.Errorf("write record %d to %s: %w", r.Seq, active.path, err)
	}
	active.size += int64(n)
	j.total += int64(n)
	if active.empty() {
		active.firstTime = r.Time
	}
	active.last, active.lastTime = r.Seq, r.Time
	j.dirty = true
	return nil
}

func (j *journal) fail(err error) {
	j.writeErrs++
	j.failures++
	j.retryAt = j.now().Add(retryInterval)
	j.noteBacklog()
	if j.failures == 1 {
		j.log.Error("journal write failed; records stay in memory and are written once the disk takes them again",
			keySeq, j.backlog[0].Seq, keyErr, err)
	}
}

// rotate starts a segment whose first record is seq, then applies
// retention. The rotated file is fsynced and closed by the sync goroutine,
// outside the locks Publish is called under.
func (j *journal) rotate(seq uint64) error {
	if n := len(j.segs); n > 0 && j.segs[n-1].empty() {
		// A segment that never took a record (its writes failed, or its
		// first record was lost): drop it rather than leave one empty file
		// per attempt, or a declaration of empty seqs that lost records
		// now follow.
		s := j.segs[n-1]
		if !s.onDisk {
			j.segs = j.segs[:n-1]
		} else {
			if j.f != nil {
				j.rotated = append(j.rotated, j.f)
				j.f = nil
			}
			if err := os.Remove(s.path); err == nil || errors.Is(err, os.ErrNotExist) {
				j.segs = j.segs[:n-1]
				j.dirDirty = true
			}
		}
	}
	path := filepath.Join(j.dir, segmentName(seq))
	f, err := j.create(path)
	if err != nil {
		return fmt.Errorf("create journal segment: %w", err)
	}
	if j.f != nil {
		j.rotated = append(j.rotated, j.f)
	}
	j.f = f
	j.broken = false
	j.dirty = false
	j.dirDirty = true
	j.segs = append(j.segs, &segment{path: path, first: seq, firstRec: seq, last: seq - 1, onDisk: true})
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
		j.dirDirty = true
	}
}

// sync fsyncs what was written since the last call: the rotated files
// (then closed), the active one, the directory and the seq mark. It runs
// without the journal lock, so a slow disk does not hold up Publish.
func (j *journal) sync() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	var f segmentFile
	if j.dirty {
		f = j.f
	}
	rotated, dirDirty := j.rotated, j.dirDirty
	j.rotated, j.dirDirty, j.dirty = nil, false, false
	j.mu.Unlock()
	var errs []error
	for _, rf := range rotated {
		if err := rf.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync rotated journal segment: %w", err))
		}
		_ = rf.Close()
	}
	if f != nil {
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("fsync journal: %w", err))
		}
	}
	if dirDirty {
		if err := syncDir(j.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if j.mark != nil {
		if err := j.mark.syncIfDirty(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		j.mu.Lock()
		j.writeErrs += uint64(len(errs))
		j.mu.Unlock()
		j.log.Warn("journal fsync failed", keyErr, errors.Join(errs...))
	}
	return errors.Join(errs...)
}

// close writes what it can, fsyncs, and leaves a mark that tells the next
// start whether this stop was clean: head is the newest seq given.
func (j *journal) close(head uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	if j.disabled {
		return nil
	}
	if len(j.backlog) > 0 {
		j.flushLocked(len(j.backlog))
	}
	var errs []error
	for _, rf := range j.rotated {
		if err := rf.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync journal in %s: %w", j.dir, err))
		}
		_ = rf.Close()
	}
	j.rotated = nil
	if j.f != nil {
		if err := j.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync journal in %s: %w", j.dir, err))
		}
		if err := j.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close journal in %s: %w", j.dir, err))
		}
		j.f = nil
	}
	if err := syncDir(j.dir); err != nil {
		errs = append(errs, err)
	}
	// Every seq up to head is now in the journal, or in the lost range the
	// mark keeps: the next start continues at head+1 without a jump.
	st := markState{Epoch: j.epoch, Reserved: head}
	if len(j.backlog) > 0 {
		st.LostFrom, st.LostTo = j.backlog[0].Seq, j.backlog[len(j.backlog)-1].Seq
	}
	if err := j.mark.set(st, true); err != nil {
		errs = append(errs, err)
	}
	if err := j.mark.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// extendBack returns the oldest seq from which every record up to cur-1 is
// in the journal (passing over declared empty seqs), or cur when the
// journal does not reach cur-1.
func (j *journal) extendBack(cur uint64) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.segs) - 1; i >= 0; i-- {
		s := j.segs[i]
		if s.first >= cur {
			continue
		}
		if s.last+1 < cur {
			break
		}
		cur = s.first
	}
	return max(cur, j.lostBelow)
}

// locate returns a copy of the segment covering seq (holding it, or
// declaring it empty).
func (j *journal) locate(seq uint64) (segment, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.segs) - 1; i >= 0; i-- {
		s := j.segs[i]
		if s.first <= seq && seq <= max(s.last, s.firstRec-1) {
			return *s, true
		}
		if s.first <= seq {
			break
		}
	}
	return segment{}, false
}

// declaredEmpty reports whether seq was declared empty: skipped by the
// numbering after an unclean stop, never given to a record.
func (j *journal) declaredEmpty(seq uint64) (from, to uint64, ok bool) {
	s, found := j.locate(seq)
	if !found || seq >= s.firstRec {
		return 0, 0, false
	}
	return s.first, s.firstRec - 1, true
}

// nextCovered returns the first seq at or after seq that a segment covers,
// or 0 when none does.
func (j *journal) nextCovered(seq uint64) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range j.segs {
		if max(s.last, s.firstRec-1) >= seq {
			return max(seq, s.first, j.lostBelow)
		}
	}
	return 0
}

// firstRecordFrom returns the seq of the first record at or after seq in
// the journal, or 0 when there is none.
func (j *journal) firstRecordFrom(seq uint64) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range j.segs {
		if !s.empty() && s.last >= seq {
			return max(seq, s.firstRec)
		}
	}
	return 0
}

// holeBelow describes the records lost before seq: walking back from seq
// over what the journal covers without a break (records and seqs declared
// empty), the first break with records before it is a hole.
func (j *journal) holeBelow(seq uint64) (from, to uint64, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	cur := seq
	for i := len(j.segs) - 1; i >= 0; i-- {
		s := j.segs[i]
		if s.first >= cur {
			continue
		}
		end := max(s.last, s.firstRec-1)
		if end+1 >= cur {
			cur = s.first
			continue
		}
		return end + 1, cur - 1, true
	}
	return 0, 0, false
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
	waiting   int
	dropped   uint64
}

func (j *journal) stats() journalStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := journalStats{bytes: j.total, writeErrs: j.writeErrs, waiting: len(j.backlog), dropped: j.dropped}
	for _, s := range j.segs {
		if s.onDisk {
			st.segments++
		}
	}
	return st
}
