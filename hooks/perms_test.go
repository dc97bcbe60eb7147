package hooks

import (
	"os"
	"path/filepath"
	"testing"

	"agent/events"
)

// TestLooseProgramRefusedAtRun: a hook program loosened after node.conf
// was read does not run; the run counts as a failure.
func TestLooseProgramRefusedAtRun(t *testing.T) {
	dir := t.TempDir()
	bus := openBus(t, events.Config{})
	r := newRunner(t, Config{Bus: bus, Dir: filepath.Join(dir, "hooks"), Nodename: "n1"})
	marker := filepath.Join(dir, "ran")
	cmd := script(t, dir, "h.sh", `touch "`+marker+`"`)
	if err := os.Chmod(cmd, 0o757); err != nil {
		t.Fatal(err)
	}
	update(t, r, hook("loose", cmd))
	rec := publishEvent(bus, "node_freeze", map[string]any{"node": "n1"})
	waitDone(t, r, "loose", rec.Seq)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a program others can write ran")
	}
	if h, _ := statsOf(r, "loose"); h.Failures != 1 {
		t.Fatalf("stats = %+v, want one failure", h)
	}
}
