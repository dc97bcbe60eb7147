package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"agent/internal/agenttest"
	"agent/internal/testutil"
	"agent/monitor"
	"agent/triggers"
)

func TestTriggerLs(t *testing.T) {
	nodes := agenttest.StartCluster(t, 1, agenttest.Options{Extra: `[trigger#frozen-long]
match = data.id=node_freeze
distinct = data.node
count = 3
window = 1h
expire_command = /bin/true
[trigger#quiet]
match = data.id=never
fire_command = /bin/true
`})
	n := nodes[0]
	if _, _, err := n.Store().UpdateLocal("cli", func(d *monitor.NodeData) { d.Frozen = 1 }); err != nil {
		t.Fatal(err)
	}
	var list []triggers.Listed
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, out, _ := cli(n.Root, "trigger", "ls", "-o", "json")
		return code == 0 && json.Unmarshal([]byte(out), &list) == nil && len(list) == 2 && len(list[0].Open) == 1
	}, "trigger ls -o json never showed the open stream: %v", func() any { return list })
	s := list[0].Open[0]
	if list[0].Name != "frozen-long" || list[1].Name != "quiet" || s.Key != "data.node=n1" || s.Count != 1 ||
		s.ExpiresInSeconds <= 0 || s.ExpiresInSeconds > 3600 || s.AgeSeconds < 0 || list[0].WindowSeconds != 3600 {
		t.Fatalf("listed %+v", list)
	}
	code, out, errs := cli(n.Root, "trigger", "ls")
	if code != 0 {
		t.Fatalf("trigger ls: %d %s", code, errs)
	}
	t.Logf("agent trigger ls:\n%s", out)
	for _, want := range []string{"TRIGGER", "frozen-long", "quiet", "data.node=n1", "EXPIRES IN", "1h0m0s"} {
		if !strings.Contains(out, want) {
			t.Errorf("trigger ls lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := cli(n.Root, "trigger", "ls", "-o", "yaml"); code != 2 || !strings.Contains(errs, "-o") {
		t.Errorf("-o yaml: %d %q", code, errs)
	}
}

func TestSeconds(t *testing.T) {
	for in, want := range map[float64]string{0: "0s", -3: "0s", 0.0004: "0s", 0.25: "250ms", 1.5: "1.5s", 62.4: "1m2s", 3600: "1h0m0s"} {
		if got := seconds(in); got != want {
			t.Errorf("seconds(%v) = %q, want %q", in, got, want)
		}
	}
}
