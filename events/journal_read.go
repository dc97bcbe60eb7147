package events

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// errTorn: the input ends inside a line (a write cut short).
var errTorn = errors.New("torn last line")

// lineReader reads newline-terminated lines and counts the bytes consumed.
type lineReader struct {
	r   *bufio.Reader
	off int64 // offset of the next line
	acc []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next complete line without its newline; it is valid until
// the next call. io.EOF at a clean end, errTorn when the input ends inside a
// line (off then stays at the start of that line).
func (lr *lineReader) next() ([]byte, error) {
	lr.acc = lr.acc[:0]
	for {
		chunk, err := lr.r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			lr.acc = append(lr.acc, chunk...)
			continue
		case errors.Is(err, io.EOF):
			if len(chunk)+len(lr.acc) == 0 {
				return nil, io.EOF
			}
			return nil, errTorn
		case err != nil:
			return nil, err
		}
		line := chunk
		if len(lr.acc) > 0 {
			lr.acc = append(lr.acc, chunk...)
			line = lr.acc
		}
		lr.off += int64(len(line))
		return line[:len(line)-1], nil
	}
}

// seqPrefix reads the seq of a line written by this package without decoding
// it all, to skip quickly to a resume point.
func seqPrefix(line []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"seq":`))
	if !ok || len(rest) == 0 {
		return 0, false
	}
	var n uint64
	i := 0
	for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
		if n > (1<<64-1)/10-1 {
			return 0, false
		}
		n = n*10 + uint64(rest[i]-'0')
	}
	if i == 0 || i == len(rest) || rest[i] != ',' {
		return 0, false
	}
	return n, true
}

// scanNewest reads the newest segment whole: it drops a torn last line and
// reports the epoch, or a reason when the segment is corrupt. ok is false
// when nothing of the segment remains (it is then removed).
func (j *journal) scanNewest(s *segment) (epoch string, ok bool, reason string) {
	name := filepath.Base(s.path)
	f, err := os.Open(s.path)
	if err != nil {
		return "", false, fmt.Sprintf("open %s: %v", name, err)
	}
	defer f.Close()
	lr := newLineReader(f)
	s.firstRec, s.last = s.first, s.first-1
	var badAt int64 = -1 // offset of an undecodable line, kept if it is the last
	for {
		start := lr.off
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errTorn) {
			if badAt < 0 {
				badAt = start
			}
			break
		}
		if err != nil {
			return "", false, fmt.Sprintf("read %s: %v", name, err)
		}
		if badAt >= 0 {
			return "", false, fmt.Sprintf("undecodable record at offset %d of %s", badAt, name)
		}
		r, err := ParseRecord(line)
		if err != nil {
			badAt = start
			continue
		}
		if epoch == "" {
			if r.Seq < s.first {
				return "", false, fmt.Sprintf("first record of %s is seq %d, before the seq %d of its name", name, r.Seq, s.first)
			}
			// A first record after the name's seq declares the seqs
			// between them empty (a jump past a reserved block).
			epoch, s.firstRec, s.last = r.Epoch, r.Seq, r.Seq-1
			s.firstTime = r.Time
		}
		if r.Epoch != epoch || r.Seq != s.last+1 {
			return "", false, fmt.Sprintf("record at offset %d of %s is seq %d of epoch %q, want seq %d of epoch %q",
				start, name, r.Seq, r.Epoch, s.last+1, epoch)
		}
		s.last, s.lastTime = r.Seq, r.Time
	}
	if badAt >= 0 {
		j.log.Warn("dropping torn last line of journal", keyFile, s.path, keyOffset, badAt)
		if err := os.Truncate(s.path, badAt); err != nil {
			return "", false, fmt.Sprintf("truncate torn line of %s: %v", name, err)
		}
		s.size = badAt
	} else {
		s.size = lr.off
	}
	if s.empty() {
		if err := os.Remove(s.path); err != nil {
			return "", false, fmt.Sprintf("remove empty %s: %v", name, err)
		}
		return "", false, ""
	}
	return epoch, true, ""
}

// checkEnds reads the first and last records of an older segment. keep is
// false when nothing of it remains.
func (j *journal) checkEnds(s *segment, epoch string) (keep bool, reason string) {
	name := filepath.Base(s.path)
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("open %s: %v", name, err)
	}
	defer f.Close()
	// A write that failed in a former run may have left a partial line here.
	end, err := lastNewline(f, s.size)
	if err != nil {
		return false, fmt.Sprintf("read %s: %v", name, err)
	}
	if end+1 != s.size {
		j.log.Warn("dropping torn last line of journal", keyFile, s.path, keyOffset, end+1)
		if err := f.Truncate(end + 1); err != nil {
			return false, fmt.Sprintf("truncate torn line of %s: %v", name, err)
		}
		s.size = end + 1
	}
	if s.size == 0 {
		if err := os.Remove(s.path); err != nil {
			return false, fmt.Sprintf("remove empty %s: %v", name, err)
		}
		return false, ""
	}
	first, err := newLineReader(io.NewSectionReader(f, 0, s.size)).next()
	if err != nil {
		return false, fmt.Sprintf("read first record of %s: %v", name, err)
	}
	r, err := ParseRecord(first)
	if err != nil || r.Seq < s.first || r.Epoch != epoch {
		return false, fmt.Sprintf("first record of %s is not a record of epoch %q from seq %d", name, epoch, s.first)
	}
	s.firstRec, s.firstTime = r.Seq, r.Time
	start, err := lastNewline(f, s.size-1)
	if err != nil {
		return false, fmt.Sprintf("read %s: %v", name, err)
	}
	last := make([]byte, s.size-1-(start+1))
	if _, err := f.ReadAt(last, start+1); err != nil {
		return false, fmt.Sprintf("read last record of %s: %v", name, err)
	}
	r, err = ParseRecord(last)
	if err != nil || r.Seq < s.firstRec || r.Epoch != epoch {
		return false, fmt.Sprintf("last record of %s is not a record of epoch %q after seq %d", name, epoch, s.firstRec)
	}
	s.last, s.lastTime = r.Seq, r.Time
	return true, ""
}

// lastNewline returns the offset of the last '\n' before size, or -1.
func lastNewline(f io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i), nil
		}
		end -= n
	}
	return -1, nil
}

// cursor reads one segment for a subscription that is catching up from disk.
type cursor struct {
	path  string
	f     *os.File
	lr    *lineReader
	limit int64  // bytes known to hold complete records
	next  uint64 // seq expected next
}

func openCursor(path string) (*cursor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &cursor{path: path, f: f, lr: newLineReader(io.NewSectionReader(f, 0, 0))}, nil
}

// extend lets the cursor read up to limit: the active segment grows while it
// is read, and only bytes of whole records (as the journal reports under its
// lock) may be read.
func (c *cursor) extend(limit int64) {
	if limit <= c.limit {
		return
	}
	c.limit = limit
	c.lr.r.Reset(io.NewSectionReader(c.f, c.lr.off, limit-c.lr.off))
}

func (c *cursor) close() {
	_ = c.f.Close() // read-only: nothing to lose
}

// findTime returns the first record at or after t among the segments from
// seq from on, or found false when every record there is older than t.
func (j *journal) findTime(t time.Time, from uint64) (uint64, bool, error) {
	var segs []segment
	for _, s := range j.snapshot() {
		if !s.empty() && s.last >= from {
			segs = append(segs, s)
		}
	}
	if len(segs) == 0 {
		return 0, false, nil
	}
	// The segment to scan is the last one starting before t.
	i := len(segs) - 1
	for ; i >= 0 && !segs[i].firstTime.Before(t); i-- {
	}
	if i < 0 {
		return max(segs[0].firstRec, from), true, nil
	}
	s := segs[i]
	f, err := os.Open(s.path)
	if err != nil {
		return 0, false, fmt.Errorf("find time in journal: %w", err)
	}
	defer f.Close()
	lr := newLineReader(io.NewSectionReader(f, 0, s.size))
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, false, fmt.Errorf("find time in journal %s: %w", s.path, err)
		}
		r, err := ParseRecord(line)
		if err != nil {
			return 0, false, fmt.Errorf("find time in journal %s at offset %d: %w", s.path, lr.off, err)
		}
		if r.Seq >= from && !r.Time.Before(t) {
			return r.Seq, true, nil
		}
	}
	if i+1 < len(segs) {
		return segs[i+1].firstRec, true, nil
	}
	return 0, false, nil
}
