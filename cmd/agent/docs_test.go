package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"agent/config"
)

// TestDocsManAndMarkdown: agent docs man|markdown DIR write one page per
// command, with the examples of the help.
func TestDocsManAndMarkdown(t *testing.T) {
	for _, tc := range []struct{ kind, page, want string }{
		{"man", "agent-wait.1", `agent wait --filter`},
		{"markdown", "agent_wait.md", "agent wait --filter"},
	} {
		dir := filepath.Join(t.TempDir(), tc.kind)
		var o, e bytes.Buffer
		if code := run([]string{"docs", tc.kind, dir}, &o, &e); code != 0 {
			t.Fatalf("docs %s: exit %d: %s", tc.kind, code, e.String())
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) < 15 {
			t.Errorf("docs %s: %d pages, want one per command", tc.kind, len(ents))
		}
		page, err := os.ReadFile(filepath.Join(dir, tc.page))
		if err != nil {
			t.Fatalf("docs %s: %v", tc.kind, err)
		}
		if !strings.Contains(string(page), tc.want) {
			t.Errorf("docs %s: %s lacks %q:\n%s", tc.kind, tc.page, tc.want, page)
		}
	}
}

// TestDocsConfig: agent docs config prints the reference the config
// package generates.
func TestDocsConfig(t *testing.T) {
	var o, e, want bytes.Buffer
	if code := run([]string{"docs", "config"}, &o, &e); code != 0 {
		t.Fatalf("docs config: exit %d: %s", code, e.String())
	}
	if err := config.WriteReference(&want); err != nil {
		t.Fatal(err)
	}
	if o.String() != want.String() {
		t.Fatal("agent docs config differs from config.WriteReference")
	}
}

// TestVersion: the text and JSON forms carry the version, the commit and
// the Go version.
func TestVersion(t *testing.T) {
	var o, e bytes.Buffer
	if code := run([]string{"version", "-o", "json"}, &o, &e); code != 0 {
		t.Fatalf("version: exit %d: %s", code, e.String())
	}
	var v buildVersion
	if err := json.Unmarshal(o.Bytes(), &v); err != nil || v.Version == "" || v.Commit == "" || !strings.HasPrefix(v.Go, "go") {
		t.Fatalf("version -o json: %q (%v)", o.String(), err)
	}
	o.Reset()
	if code := run([]string{"version"}, &o, &e); code != 0 || !strings.HasPrefix(o.String(), "agent "+v.Version+" (commit ") {
		t.Fatalf("version: %d %q", code, o.String())
	}
}

// TestCommandsDocumented: every command has a heading in docs/commands.md
// (words of its path, like "agent svc start|stop|freeze|thaw NAME").
func TestCommandsDocumented(t *testing.T) {
	page, err := os.ReadFile(filepath.Join("..", "..", "docs", "commands.md"))
	if err != nil {
		t.Fatal(err)
	}
	var headings []map[string]bool
	split := func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '-') }
	for _, l := range strings.Split(string(page), "\n") {
		if strings.HasPrefix(l, "#") {
			words := map[string]bool{}
			for _, w := range strings.FieldsFunc(l, split) {
				words[w] = true
			}
			headings = append(headings, words)
		}
	}
	walk(newRootCmd(&globals{}), func(c *cobra.Command) {
		if !c.HasParent() || !c.IsAvailableCommand() || c.Parent().Name() == "completion" {
			return
		}
		path := strings.Fields(c.CommandPath())
		for _, h := range headings {
			all := true
			for _, w := range path {
				all = all && h[w]
			}
			if all {
				return
			}
		}
		t.Errorf("%s has no heading in docs/commands.md: add one (with its synopsis, what it does, an example)", c.CommandPath())
	})
}
