package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// markFile is the journal's seq high-water mark: DIR/seqmark.
const markFile = "seqmark"

// markSize is the fixed size of the mark file. It is rewritten in place,
// never through a new file and a rename: a full disk still takes the
// write, and 256 bytes fit in one disk sector, which is written whole or
// not at all.
const markSize = 256

// markState is what the mark file holds.
type markState struct {
	// Epoch is the numbering the mark belongs to.
	Epoch string `json:"epoch"`
	// Reserved is the highest seq this agent may give in Epoch before it
	// writes a higher mark: no record has a seq above it. It is fsynced
	// before any seq above the previous mark is given.
	Reserved uint64 `json:"reserved"`
	// LostFrom..LostTo are records published but not yet in the journal
	// (the journal's writes failed): if the agent stops now, they are lost,
	// not empty. LostTo is rewritten with each record of the outage
	// without an fsync: exact after a crash of the process alone.
	LostFrom uint64 `json:"lost_from,omitempty"`
	LostTo   uint64 `json:"lost_to,omitempty"`
}

// seqMark keeps the mark file. Lock order: Bus.mu, journal.mu, seqMark.mu.
type seqMark struct {
	path string

	// reserved is st.Reserved once written (fsynced when sync asked);
	// Publish reads it without the lock.
	reserved atomic.Uint64

	mu    sync.Mutex
	f     *os.File
	st    markState
	dirty bool // written without an fsync since the last one
	buf   [markSize]byte
}

// errMarkUnreadable: the mark file exists but does not decode.
var errMarkUnreadable = errors.New("seq mark unreadable")

// readMark reads DIR/seqmark. ok is false when there is none.
func readMark(dir string) (st markState, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, markFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("read %s: %w", markFile, err)
	}
	if err := json.Unmarshal(bytes.TrimRight(b, " \n\x00"), &st); err != nil || st.Epoch == "" {
		return st, false, fmt.Errorf("%w: %q", errMarkUnreadable, bytes.TrimRight(b, " \n\x00"))
	}
	return st, true, nil
}

// openMark opens (creating) the mark file for rewriting. The caller writes
// the first state with set before it gives any seq.
func openMark(dir string) (*seqMark, error) {
	path := filepath.Join(dir, markFile)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", markFile, err)
	}
	m := &seqMark{path: path, f: f}
	if errors.Is(statErr, os.ErrNotExist) {
		// A new file: its name must survive a power loss too.
		if err := syncDir(dir); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	return m, nil
}

// set replaces the state and writes it in place; with sync, fsynced before
// it returns. Reserved is published to readers only once written.
func (m *seqMark) set(st markState, sync bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writeLocked(st, sync)
}

func (m *seqMark) writeLocked(st markState, sync bool) error {
	if m.f == nil {
		return fmt.Errorf("write %s: %w", markFile, os.ErrClosed)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if len(raw) > markSize-1 {
		return fmt.Errorf("write %s: %d bytes do not fit in %d", markFile, len(raw), markSize)
	}
	n := copy(m.buf[:], raw)
	for i := n; i < markSize-1; i++ {
		m.buf[i] = ' '
	}
	m.buf[markSize-1] = '\n'
	if _, err := m.f.WriteAt(m.buf[:], 0); err != nil {
		return fmt.Errorf("write %s: %w", markFile, err)
	}
	m.st = st
	m.dirty = true
	if sync {
		if err := m.f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", markFile, err)
		}
		m.dirty = false
		m.reserved.Store(st.Reserved)
	} else if st.Reserved <= m.reserved.Load() {
		m.reserved.Store(st.Reserved)
	}
	return nil
}

// reserve raises Reserved to at least seq, fsynced.
func (m *seqMark) reserve(seq uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq <= m.reserved.Load() && !m.dirty {
		return nil
	}
	st := m.st
	st.Reserved = max(st.Reserved, seq)
	return m.writeLocked(st, true)
}

// setLost records the range of published records missing from the journal
// (0, 0: none). Not fsynced: the sync goroutine does it.
func (m *seqMark) setLost(from, to uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st.LostFrom == from && m.st.LostTo == to {
		return nil
	}
	st := m.st
	st.LostFrom, st.LostTo = from, to
	return m.writeLocked(st, false)
}

// syncIfDirty fsyncs writes not yet synced.
func (m *seqMark) syncIfDirty() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirty || m.f == nil {
		return nil
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", markFile, err)
	}
	m.dirty = false
	m.reserved.Store(m.st.Reserved)
	return nil
}

func (m *seqMark) state() markState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

func (m *seqMark) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("close %s: %w", markFile, err)
	}
	return nil
}
