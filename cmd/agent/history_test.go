package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agent/events"
	"agent/history"
)

// historyRoot makes an agent root whose node.conf has sinks and whose
// first sink's SQLite database holds recs (no agent runs).
func historyRoot(t *testing.T, conf string, recs ...*events.Record) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "node.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		return root
	}
	db, err := history.Open(history.Target{Dialect: history.SQLite, Path: filepath.Join(root, "var", "h.db"), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Migrate(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Insert(ctx, history.Origin{Cluster: "c", Agent: "n1"}, recs); err != nil {
		t.Fatal(err)
	}
	return root
}

func histEvent(seq uint64, at time.Time, node, id string, extra string) *events.Record {
	return events.NewRecord(seq, "e1", at, node, events.KindEvent, json.RawMessage(fmt.Sprintf(`{"id":%q,"reason":"test"%s}`, id, extra)))
}

func TestHistoryCommand(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	recs := []*events.Record{
		histEvent(1, now.Add(-3*time.Hour), "n1", "node_up", `,"node":"n2"`),
		histEvent(2, now.Add(-90*time.Minute), "n2", "node_down", `,"node":"n3"`),
		events.NewRecord(3, "e1", now.Add(-30*time.Minute), "n1", events.KindPatch, json.RawMessage(`[{"op":"replace","path":"/monitor/nodes/n1/gen","value":3}]`)),
		histEvent(4, now.Add(-20*time.Minute), "n1", "instance_start", `,"svcname":"web"`),
		histEvent(5, now.Add(-time.Minute), "n2", "node_down", `,"node":"n1"`),
	}
	root := historyRoot(t, "[sink#h]\nkinds = event,patch\n", recs...)
	raw := func(idx ...int) string {
		var b strings.Builder
		for _, i := range idx {
			b.Write(recs[i-1].JSON())
			b.WriteByte('\n')
		}
		return b.String()
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-o", "json"}, raw(1, 2, 3, 4, 5)},
		{[]string{"-o", "json", "--since", "1h"}, raw(3, 4, 5)},
		{[]string{"-o", "json", "--since", "2h", "--until", now.Add(-10 * time.Minute).Format(time.RFC3339Nano)}, raw(2, 3, 4)},
		{[]string{"-o", "json", "--event", "node_down"}, raw(2, 5)},
		{[]string{"-o", "json", "--event", "node_down", "--event", "node_up", "--limit", "2"}, raw(2, 5)},
		{[]string{"-o", "json", "--node", "n2"}, raw(2, 5)},
		{[]string{"-o", "json", "--agent", "n1", "--kind", "patch"}, raw(3)},
		{[]string{"-o", "json", "--agent", "n9"}, ""},
		{[]string{"-o", "json", "--filter", "data.node=n3", "--filter", "data.svcname=web"}, raw(2, 4)},
		{[]string{"-o", "json", "--filter", "data.node~^n", "--limit", "1"}, raw(5)},
		{[]string{"-o", "json", "--sink", "h", "--since", "0"}, raw(1, 2, 3, 4, 5)},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errs := cli(root, append([]string{"history"}, tt.args...)...)
			if code != 0 || out != tt.want {
				t.Fatalf("exit %d, stderr %q\ngot:\n%s\nwant:\n%s", code, errs, out, tt.want)
			}
		})
	}
	// Text: as agent events prints.
	code, out, _ := cli(root, "history", "--event", "instance_start")
	if code != 0 || strings.TrimSpace(out) != textRecord(recs[3]) {
		t.Fatalf("text: %d %q, want %q", code, out, textRecord(recs[3]))
	}
	code, _, errs := cli(root, "history", "--timing", "--since", "1h")
	if code != 0 || !strings.Contains(errs, "3 records in ") {
		t.Fatalf("--timing: %d %q", code, errs)
	}
}

func TestHistoryCommandErrors(t *testing.T) {
	root := historyRoot(t, "[sink#h]\n[sink#other]\npath = /nonexistent/dir/x.db\n", histEvent(1, time.Now(), "n1", "x", ""))
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--filter", "data.id=("}, `filter "data.id=(" column 9`},
		{[]string{"--since", "yesterday"}, `--since: "yesterday": want a duration ago`},
		{[]string{"--kind", "full"}, `--kind: "full": want event or patch`},
		{[]string{"--limit", "-1"}, `--limit: "-1"`},
		{[]string{"-o", "yaml"}, `-o "yaml"`},
		{[]string{"--sink", "nope"}, "has no [sink#nope] (sinks: h, other)"},
		{[]string{"--sink", "other"}, "/nonexistent/dir/x.db does not exist: no history database: an agent running with [sink#other] creates it"},
		{[]string{"--since", "1h", "--until", "2h"}, "--until: must be after since"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errs := cli(root, append([]string{"history"}, tt.args...)...)
			if code != 2 || out != "" || !strings.Contains(errs, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and %q", code, out, errs, tt.want)
			}
		})
	}
	// No sink at all.
	bare := historyRoot(t, "[node]\nname = n1\n")
	if code, _, errs := cli(bare, "history"); code != 2 || !strings.Contains(errs, "no [sink#NAME] section") {
		t.Fatalf("no sink: %d %q", code, errs)
	}
	// A database without the schema says so, and who creates it.
	empty := historyRoot(t, "[sink#h]\n")
	if err := os.MkdirAll(filepath.Join(empty, "var"), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := history.Open(history.Target{Dialect: history.SQLite, Path: filepath.Join(empty, "var", "h.db")})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if code, _, errs := cli(empty, "history"); code != 2 || !strings.Contains(errs, "no agent history schema yet: an agent running with this sink creates it") {
		t.Fatalf("no schema: %d %q", code, errs)
	}
	// A DSN file others can read is refused, naming it.
	dsn := filepath.Join(t.TempDir(), "pg.dsn")
	if err := os.WriteFile(dsn, []byte("postgres://u:pw9x7@127.0.0.1:1/db"), 0o644); err != nil {
		t.Fatal(err)
	}
	pg := historyRoot(t, "[sink#pg]\ntype = postgres\ndsn_file = "+dsn+"\n")
	if code, _, errs := cli(pg, "history"); code != 2 || !strings.Contains(errs, dsn) || !strings.Contains(errs, "mode 0644") || strings.Contains(errs, "pw9x7") {
		t.Fatalf("loose dsn_file: %d %q", code, errs)
	}
	// An unreachable server is one clear line, without the password.
	if err := os.Chmod(dsn, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := cli(pg, "history"); code != 2 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || strings.Contains(errs, "pw9x7") || !strings.Contains(errs, "[sink#pg]") {
		t.Fatalf("unreachable server: %d %q", code, errs)
	}
}
