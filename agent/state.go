package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"agent/internal/sectorfile"
	"agent/monitor"
)

// loadState reads the state kept from the previous run. A missing file is
// a first start; a damaged one is an error naming the file, because
// starting over would make this node's generations go backwards.
func loadState(path string) (monitor.PersistentState, error) {
	var st monitor.PersistentState
	data, err := sectorfile.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil {
		return st, fmt.Errorf("%s: damaged node state (%v); move it aside to start with a fresh generation block", path, err)
	}
	return st, nil
}

// saveState writes the state durably, in place: one fsynced write of one
// sector (see package sectorfile). Unlike a new file renamed over the old
// one, it needs no free space (a freeze order still works on a full disk)
// and no directory fsync: a power loss leaves the old state or the new
// one, never a lower generation.
func saveState(path string, st monitor.PersistentState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return sectorfile.WriteFile(path, data)
}
