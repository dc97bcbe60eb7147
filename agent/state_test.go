package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"agent/internal/sectorfile"
	"agent/monitor"
)

// longNames is n node names of 40 bytes each: far more than one sector.
func longNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("node-%03d.rack-12.eu-west.example.internal", i)[:40]
	}
	slices.Sort(names)
	return names
}

// A cluster of a hundred nodes with long names: the quorum members do not
// fit in state.json's sector, and once they did not, no freeze, thaw or
// generation block could be saved (found with 100 real agents: a freeze
// answered 500). They live in quorum.json now.
func TestStateKeepsManyQuorumMembers(t *testing.T) {
	dir := t.TempDir()
	names := longNames(150)
	s := newStateFiles(dir)
	want := monitor.PersistentState{Frozen: 1700000000, GenReserved: 4096, QuorumMembers: names, Boot: "b1"}
	if err := s.save(want); err != nil {
		t.Fatalf("save with %d members: %v", len(names), err)
	}
	// A freeze with the same members: the sector alone is rewritten.
	before, _ := os.Stat(filepath.Join(dir, "quorum.json"))
	want.Frozen = 1700000001
	if err := s.save(want); err != nil {
		t.Fatalf("save a freeze: %v", err)
	}
	after, _ := os.Stat(filepath.Join(dir, "quorum.json"))
	if !after.ModTime().Equal(before.ModTime()) || !os.SameFile(before, after) {
		t.Error("quorum.json rewritten although its members did not change")
	}
	if fi, err := os.Stat(filepath.Join(dir, "state.json")); err != nil || fi.Size() != sectorfile.Size {
		t.Fatalf("state.json: %v, size %d, want one sector", err, fi.Size())
	}

	got, err := newStateFiles(dir).load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Frozen != want.Frozen || got.GenReserved != want.GenReserved || got.Boot != want.Boot || !slices.Equal(got.QuorumMembers, names) {
		t.Fatalf("restored %+v, want %+v", got, want)
	}
}

// A state.json written by an older version holds the members itself: they
// are read, and moved to quorum.json at the next save.
func TestStateOldFormatMoves(t *testing.T) {
	dir := t.TempDir()
	old := `{"frozen":0,"gen_reserved":2048,"quorum_members":["n1","n2","n3"],"boot":"b0"}`
	if err := sectorfile.WriteFile(filepath.Join(dir, "state.json"), []byte(old)); err != nil {
		t.Fatal(err)
	}
	s := newStateFiles(dir)
	st, err := s.load()
	if err != nil || !slices.Equal(st.QuorumMembers, []string{"n1", "n2", "n3"}) || st.GenReserved != 2048 {
		t.Fatalf("load = %+v, %v", st, err)
	}
	if err := s.save(st); err != nil {
		t.Fatal(err)
	}
	b, err := sectorfile.Read(filepath.Join(dir, "state.json"))
	if err != nil || strings.Contains(string(b), "quorum_members") {
		t.Fatalf("state.json after save: %s, %v", b, err)
	}
	again, err := newStateFiles(dir).load()
	if err != nil || !slices.Equal(again.QuorumMembers, st.QuorumMembers) {
		t.Fatalf("reloaded %+v, %v", again, err)
	}
}

// A damaged quorum.json stops the start with the file's name: starting
// with no members would shrink the quorum base.
func TestStateDamagedQuorumFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "quorum.json"), []byte(`{"quorum_members":["n1",`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := newStateFiles(dir).load()
	if err == nil || !strings.Contains(err.Error(), "quorum.json") || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("load = %v, want an error naming quorum.json", err)
	}
}

// Through the store, as the agent wires it: many members saved, then a
// freeze, then a restart that finds both.
func TestStoreFreezeWithManyMembers(t *testing.T) {
	dir := t.TempDir()
	names := longNames(120)
	open := func() *monitor.Store {
		s := newStateFiles(dir)
		restored, err := s.load()
		if err != nil {
			t.Fatal(err)
		}
		st, err := monitor.New(monitor.Config{Name: names[0], ClusterName: "c", Restored: restored, Persist: s.save,
			Publish: func(string, string, json.RawMessage) {}})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	if err := st.SaveQuorumMembers(names); err != nil {
		t.Fatalf("SaveQuorumMembers(%d names): %v", len(names), err)
	}
	if _, _, err := st.UpdateLocal("test", func(d *monitor.NodeData) { d.Frozen = 1700000000 }); err != nil {
		t.Fatalf("freeze with %d members: %v", len(names), err)
	}
	st2 := open()
	if got := st2.QuorumMembers(); !slices.Equal(got, names) {
		t.Fatalf("restored %d members, want %d", len(got), len(names))
	}
	if _, _, d := st2.Local(); d.Frozen != 1700000000 {
		t.Fatalf("restored frozen = %d", d.Frozen)
	}
}
