package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestStaleInstancesNotShownUp: the instances of a dead or departed node
// show as stale (unknown, marked ~), never as up or leader: the view
// agrees with monitor.services.NAME.up.
func TestStaleInstancesNotShownUp(t *testing.T) {
	doc := `{
  "cluster": {"name": "c", "nodes": {
    "n1": {"state": "dead"}, "n2": {"state": "alive"}, "n3": {"state": "left"}}},
  "monitor": {
    "nodes": {
      "n1": {"status": "idle", "services": {"web": {"avail": "up", "monitor": {"status": "idle", "placement": "leader"}}}},
      "n2": {"status": "idle", "services": {"web": {"avail": "up", "monitor": {"status": "idle", "placement": "leader"}}}},
      "n3": {"status": "idle", "services": {"web": {"avail": "down", "monitor": {"status": "idle"}}}}
    },
    "services": {"web": {"avail": "up", "overall": "up", "frozen": "thawed", "placement": "optimal", "up": ["n2"]}}
  }
}`
	var out bytes.Buffer
	if err := printServices(&out, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	lines := strings.Split(got, "\n")
	var row []string
	for _, l := range lines {
		if strings.HasPrefix(l, "web ") {
			row = strings.Fields(l)
		}
	}
	// SERVICE AVAIL FROZEN PLACEMENT n1 n2 n3
	want := []string{"web", "up", "thawed", "optimal", "unknown~", "(last", "up)", "up^", "unknown~", "(last", "down)"}
	if strings.Join(row, " ") != strings.Join(want, " ") {
		t.Errorf("row %q, want %q\n%s", row, want, got)
	}
	if strings.Count(got, "^") != 2 || !strings.Contains(got, "~ stale") {
		t.Errorf("legend or leaders wrong:\n%s", got)
	}
}

// TestLeftRunningExplained: a node that left gracefully with web running
// blocks its failover; svc ls says so, and what ends it.
func TestLeftRunningExplained(t *testing.T) {
	doc := `{
  "cluster": {"name": "c", "nodes": {"n1": {"state": "left"}, "n2": {"state": "alive"}}},
  "monitor": {
    "nodes": {
      "n1": {"status": "shutting down", "services": {"web": {"avail": "down", "monitor": {"status": "starting", "placement": "leader"}}}},
      "n2": {"status": "idle", "services": {"web": {"avail": "down", "monitor": {"status": "idle", "left_running": {"n1": "2026-12-01T10:00:00Z"}}}}}
    },
    "services": {"web": {"avail": "down", "overall": "down", "frozen": "thawed", "placement": "n/a", "up": []}}
  }
}`
	var out bytes.Buffer
	if err := printServices(&out, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	want := "web: n1 left with it running; not placed elsewhere until n1 is back, forgotten (agent node forget n1) or web is ordered again\n"
	if got := out.String(); !strings.Contains(got, want) || !strings.Contains(got, "unknown~ (last down, starting)") {
		t.Errorf("no explanation of the block:\n%s", got)
	}
}
