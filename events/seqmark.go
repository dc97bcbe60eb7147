package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"agent/internal/sectorfile"
)

// markFile is the journal's seq high-water mark: DIR/seqmark.
const markFile = "seqmark"

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

// seqMark keeps the mark file, rewritten in place (package sectorfile):
// a full disk still takes the write. Lock order: Bus.mu, journal.mu,
// seqMark.mu.
type seqMark struct {
	// reserved is st.Reserved once written (fsynced when sync asked);
	// Publish reads it without the lock.
	reserved atomic.Uint64

	mu    sync.Mutex
	f     *sectorfile.File
	st    markState
	dirty bool // written without an fsync since the last one
}

// errMarkUnreadable: the mark file exists but does not decode.
var errMarkUnreadable = errors.New("seq mark unreadable")

// readMark reads DIR/seqmark. ok is false when there is none.
func readMark(dir string) (st markState, ok bool, err error) {
	b, err := sectorfile.Read(filepath.Join(dir, markFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil || st.Epoch == "" {
		return st, false, fmt.Errorf("%w: %v", errMarkUnreadable, err)
	}
	return st, true, nil
}

// openMark opens (creating) the mark file for rewriting. The caller writes
// the first state with set before it gives any seq.
func openMark(dir string) (*seqMark, error) {
	f, err := sectorfile.Open(filepath.Join(dir, markFile))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", markFile, err)
	}
	return &seqMark{f: f}, nil
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
	if err := m.f.Write(raw, false); err != nil {
		return err
	}
	m.st = st
	m.dirty = true
	if sync {
		if err := m.f.Sync(); err != nil {
			return err
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
		return err
	}
	m.dirty = false
	m.reserved.Store(m.st.Reserved)
	return nil
}

func (m *seqMark) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", markFile, err)
	}
	return nil
}
