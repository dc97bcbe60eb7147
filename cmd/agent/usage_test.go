package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestUnknownAndMissingSubcommands: a typo must never look like success.
func TestUnknownAndMissingSubcommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "frezee"}, `unknown command "frezee" for agent node (did you mean freeze?)`},
		{[]string{"svc", "bogus", "web"}, `unknown command "bogus" for agent svc`},
		{[]string{"daemon", "bogus"}, `unknown command "bogus" for agent daemon`},
		{[]string{"daemon"}, "missing command for agent daemon (run, status)"},
		{[]string{"node"}, "missing command for agent node (forget, freeze, thaw)"},
		{[]string{"completion"}, "missing command for agent completion"},
		{[]string{"frobnicate"}, `unknown command "frobnicate" for agent`},
		{[]string{"svc", "start"}, "missing NAME for agent svc start"},
		{[]string{"svc", "start", "a", "b"}, `unexpected argument "b" for agent svc start`},
		{[]string{"docs", "man"}, "missing DIR for agent docs man"},
		{[]string{"status", "extra"}, `unknown command "extra" for "agent status"`},
		{[]string{"status", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"help", "bogus"}, `unknown help topic "bogus" for agent`},
		{[]string{"help", "node", "frezee"}, `unknown help topic "frezee" for agent node (did you mean freeze?)`},
	} {
		var o, e bytes.Buffer
		code := run(tc.args, &o, &e)
		lines := strings.Split(strings.TrimRight(e.String(), "\n"), "\n")
		if code != exitUsage || len(lines) != 1 || !strings.Contains(e.String(), tc.want) || o.Len() != 0 {
			t.Errorf("agent %s: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q",
				strings.Join(tc.args, " "), code, o.String(), e.String(), tc.want)
		}
	}
	var o, e bytes.Buffer
	if code := run(nil, &o, &e); code != 0 || !strings.Contains(o.String(), "Available Commands") {
		t.Errorf("agent alone: exit %d, %q; want the help, exit 0", code, o.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "Available Commands"},
		{[]string{"help", "node", "freeze"}, "agent node freeze [flags]"},
		{[]string{"help", "svc"}, "agent svc [command]"},
	} {
		o.Reset()
		e.Reset()
		if code := run(tc.args, &o, &e); code != 0 || !strings.Contains(o.String(), tc.want) || e.Len() != 0 {
			t.Errorf("agent %s: exit %d, stdout %q, stderr %q; want exit 0 and the help with %q",
				strings.Join(tc.args, " "), code, o.String(), e.String(), tc.want)
		}
	}
}

// genericPlaceholders are pflag's type names, shown when a flag's usage
// names no `PLACEHOLDER`.
var genericPlaceholders = map[string]bool{"string": true, "int": true, "strings": true, "stringArray": true,
	"uint": true, "uint64": true, "int64": true, "float": true, "float64": true, "duration": true}

// TestHelpIsComplete: every command has examples, and every flag that
// takes a value names what it holds (--server URL, --node NODE).
func TestHelpIsComplete(t *testing.T) {
	root := newRootCmd(&globals{})
	goIdent := regexp.MustCompile(`\b[a-z]+[A-Z][A-Za-z]*\b`) // demoService, runEvents
	walk(root, func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == cobra.ShellCompRequestCmd || c.Name() == cobra.ShellCompNoDescRequestCmd {
			return
		}
		path := c.CommandPath()
		if c.HasParent() && strings.TrimSpace(c.Example) == "" && c.Parent().Name() != "completion" {
			t.Errorf("%s: no examples in its help", path)
		}
		for _, text := range []string{c.Short, c.Long, c.Example} {
			if strings.HasPrefix(path, "agent completion") {
				break // cobra's own text
			}
			if m := goIdent.FindString(text); m != "" {
				t.Errorf("%s: help mentions %q, a Go identifier", path, m)
			}
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() == "bool" || f.Name == "help" {
				return
			}
			name, _ := pflag.UnquoteUsage(f)
			if genericPlaceholders[name] {
				t.Errorf("%s --%s: placeholder %q says its type, not what it holds: put a `WORD` in its usage", path, f.Name, name)
			}
		})
	})
}
