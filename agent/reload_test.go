package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agent/internal/testutil"
	"agent/monitor"
)

// hookConf is a [hook#NAME] section appending the records of events to
// the file out.
func hookConf(name, events, out string) string {
	return fmt.Sprintf("[hook#%s]\nevents = %s\ncommand = /bin/sh -c \"cat >> %s\"\ntimeout = 5s\n", name, events, out)
}

// countIn counts the lines of file that contain s.
func countIn(file, s string) int {
	b, _ := os.ReadFile(file)
	return bytes.Count(b, []byte(s))
}

// TestVanishedNodeConfKeepsConfig: an emptied, then removed node.conf is
// refused; the labels and the hook stay, the hook runs every event in
// between, and restoring the file applies nothing and skips nothing.
func TestVanishedNodeConfKeepsConfig(t *testing.T) {
	root := shortTemp(t)
	out := filepath.Join(root, "hook.out")
	conf := strings.Replace(nodeConf("n1", hookConf("one", "node_freeze,node_thaw", out)), "name = n1\n", "name = n1\nlabels = zone=a\n", 1)
	writeConf(t, root, conf)
	a := startAgent(t, root)
	path := a.Paths().NodeConf
	invalids := func() int { return bytes.Count(eventsOf(t, a.Agent), []byte(`"reason":"invalid"`)) }

	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return invalids() == 1 }, "emptied node.conf: no invalid event")
	setFrozen(t, a, 1)
	testutil.Eventually(t, 30*time.Second, func() bool { return countIn(out, `"node_freeze"`) == 1 }, "the hook did not run while node.conf was empty")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return invalids() == 2 }, "removed node.conf: no invalid event")
	setFrozen(t, a, 0)
	testutil.Eventually(t, 30*time.Second, func() bool { return countIn(out, `"node_thaw"`) == 1 }, "the hook did not run while node.conf was gone")
	if _, _, d := a.Store().Local(); d.Labels["zone"] != "a" {
		t.Fatalf("labels changed by a vanished node.conf: %v", d.Labels)
	}

	writeConf(t, root, conf)
	testutil.Eventually(t, 30*time.Second, func() bool {
		return bytes.Contains(eventsOf(t, a.Agent), []byte(`"applied":[],"id":"node_config_change"`))
	}, "restored node.conf: no reload event applying nothing: %s", func() any { return eventsOf(t, a.Agent) })
	setFrozen(t, a, 2)
	testutil.Eventually(t, 30*time.Second, func() bool { return countIn(out, `"node_freeze"`) == 2 }, "the hook stopped after the restore")
	if evs := eventsOf(t, a.Agent); bytes.Contains(evs, []byte("hook_skipped")) {
		t.Fatalf("a hook that stayed configured skipped records:\n%s", evs)
	}
}

// TestChmodReappliesHooks: node.conf made group-writable is refused, an
// edit made meanwhile is refused with it, and chmod 600 applies the edit
// without restart; each event's applied list says what really changed.
func TestChmodReappliesHooks(t *testing.T) {
	root := shortTemp(t)
	out1, out2 := filepath.Join(root, "one.out"), filepath.Join(root, "two.out")
	writeConf(t, root, nodeConf("n1", hookConf("one", "node_freeze", out1)))
	a := startAgent(t, root)
	path := a.Paths().NodeConf

	if err := os.Chmod(path, 0o664); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return bytes.Contains(eventsOf(t, a.Agent), []byte(`writable by group (mode 0664)`))
	}, "chmod 664: no invalid event naming the mode")
	// The edit keeps the file's 0664 mode: refused as well.
	if err := os.WriteFile(path, []byte(nodeConf("n1", hookConf("one", "node_freeze", out1)+hookConf("two", "node_thaw", out2))), 0o664); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return bytes.Count(eventsOf(t, a.Agent), []byte(`"reason":"invalid"`)) == 2
	}, "edit while loose: no second invalid event")
	if _, _, err := a.Store().UpdateLocal("cli", func(d *monitor.NodeData) { d.Frozen = 1 }); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return countIn(out1, "node_freeze") == 1 }, "hook one stopped while node.conf was loose")
	if _, err := os.Stat(out2); err == nil {
		t.Fatal("hook two of a refused node.conf ran")
	}

	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return bytes.Contains(eventsOf(t, a.Agent), []byte(`"applied":["hooks"],"id":"node_config_change"`))
	}, "chmod 600: hooks not applied")
	if _, _, err := a.Store().UpdateLocal("cli", func(d *monitor.NodeData) { d.Frozen = 0 }); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return countIn(out2, "node_thaw") == 1 }, "hook two never ran after chmod 600")

	// Loose and fixed again without an edit: nothing to apply, and the
	// event says so.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return bytes.Count(eventsOf(t, a.Agent), []byte(`"reason":"invalid"`)) == 3
	}, "chmod 666: no invalid event")
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return bytes.Contains(eventsOf(t, a.Agent), []byte(`"applied":[],"id":"node_config_change"`))
	}, "chmod 600 without an edit: the event does not say nothing was applied")
}

// TestLooseNodeConfRefusedAtStart: the agent does not start on a node.conf
// others can write, nor on one others can read that holds the secret.
func TestLooseNodeConfRefusedAtStart(t *testing.T) {
	for _, tc := range []struct {
		mode  os.FileMode
		extra string
		want  string
	}{
		{0o666, "", "writable by group and others (mode 0666)"},
		{0o644, "[cluster]\nsecret = " + strings.Repeat("A", 22) + "==\n", "readable by group or others (mode 0644)"},
	} {
		root := shortTemp(t)
		conf := "[node]\nname = n1\n[hb]\naddr = 127.0.0.1\nport = 0\n" + tc.extra
		writeConf(t, root, conf)
		path := filepath.Join(root, "etc", "node.conf")
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		_, err := openAgent(root)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mode %04o: err = %v, want the path and %q", tc.mode, err, tc.want)
		}
	}
}

// TestReload: Reload re-reads the files, applies what changed and
// returns once it is applied.
func TestReload(t *testing.T) {
	root := shortTemp(t)
	writeConf(t, root, nodeConf("n1", ""))
	a := startAgent(t, root)
	// The root is not watched: a loose root is seen by Reload.
	if err := os.Chmod(root, 0o777); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(root, 0o700)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if evs := eventsOf(t, a.Agent); !bytes.Contains(evs, []byte(`"reason":"invalid"`)) || !bytes.Contains(evs, []byte("directory "+root)) {
		t.Fatalf("reload did not refuse node.conf under a loose root:\n%s", evs)
	}
}
