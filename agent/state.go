package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"agent/internal/atomicfile"
	"agent/internal/sectorfile"
	"agent/monitor"
)

// stateFiles keeps what a node saves across restarts in two files of
// var/: state.json, one sector rewritten in place (freeze, reserved
// generations, boot id: small and bounded), and quorum.json, the quorum
// members, whose list grows with the cluster (a hundred names do not fit
// in a sector), replaced whole through a new file renamed over the old.
// The two hold independent facts, so they need not change together.
type stateFiles struct {
	path, quorumPath string

	mu     sync.Mutex
	quorum []string // the members quorum.json holds
}

func newStateFiles(varDir string) *stateFiles {
	return &stateFiles{path: filepath.Join(varDir, "state.json"), quorumPath: filepath.Join(varDir, "quorum.json")}
}

// quorumFile is quorum.json's content.
type quorumFile struct {
	Members []string `json:"quorum_members"`
}

// load reads the state kept from the previous run. A missing file is a
// first start; a damaged one is an error naming the file, because starting
// over would make this node's generations go backwards, or shrink the
// quorum base its orchestration counts on.
func (s *stateFiles) load() (monitor.PersistentState, error) {
	var st monitor.PersistentState
	data, err := sectorfile.Read(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err == nil:
		if err := json.Unmarshal(data, &st); err != nil {
			return st, fmt.Errorf("%s: damaged node state (%v); move it aside to start with a fresh generation block", s.path, err)
		}
	default:
		return st, fmt.Errorf("%s: damaged node state (%v); move it aside to start with a fresh generation block", s.path, err)
	}
	data, err = os.ReadFile(s.quorumPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// None yet, or kept in state.json by an older version.
	case err != nil:
		return st, fmt.Errorf("%s: %w", s.quorumPath, err)
	default:
		var q quorumFile
		if err := json.Unmarshal(data, &q); err != nil {
			return st, fmt.Errorf("%s: damaged quorum members (%v); move it aside to start counting the quorum from the nodes seen from now on", s.quorumPath, err)
		}
		st.QuorumMembers = q.Members
		s.quorum = slices.Clone(q.Members)
	}
	return st, nil
}

// save writes the state durably: quorum.json first when its members
// changed, then state.json in place (one fsynced write of one sector, see
// package sectorfile). Unlike a new file renamed over the old one, the
// sector needs no free space (a freeze order still works on a full disk)
// and no directory fsync: a power loss leaves the old state or the new
// one, never a lower generation.
func (s *stateFiles) save(st monitor.PersistentState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(st.QuorumMembers, s.quorum) {
		if err := s.saveQuorum(st.QuorumMembers); err != nil {
			return err
		}
	}
	st.QuorumMembers = nil
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return sectorfile.WriteFile(s.path, data)
}

// saveQuorum replaces quorum.json whole (see package atomicfile). s.mu
// is held.
func (s *stateFiles) saveQuorum(members []string) error {
	data, err := json.Marshal(quorumFile{Members: members})
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.quorumPath, data); err != nil {
		return fmt.Errorf("save quorum members: %w", err)
	}
	s.quorum = slices.Clone(members)
	return nil
}
