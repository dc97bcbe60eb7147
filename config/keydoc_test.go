package config

import (
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const regenerate = "go run ./cmd/agent docs config > docs/configuration.md"

// sourceWords returns the string literals of the package's own (non-test)
// source that could be a section or key name: the candidates the parsers
// are probed with. A key the parsers accept is spelled somewhere in them.
func sourceWords(t *testing.T) (words []string, prefixes []string) {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	ident := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	prefix := regexp.MustCompile(`^[a-z][a-z0-9_]*#$`)
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || seen[s] {
				return true
			}
			seen[s] = true
			switch {
			case ident.MatchString(s):
				words = append(words, s)
			case prefix.MatchString(s):
				prefixes = append(prefixes, s)
			}
			return true
		})
	}
	return words, prefixes
}

// probe reports how the parser of file takes key in section: accepted
// (whatever it thinks of the empty value), or refused as an unknown key or
// an unknown section.
func probe(file, section, key string) (unknownSection, unknownKey bool) {
	text := "[" + section + "]\n"
	if key != "" {
		text += key + " =\n"
	}
	var err error
	if file == "node.conf" {
		_, err = ParseNode("/etc/agent/node.conf", []byte(text), "host")
	} else {
		_, err = ParseService("/etc/agent/svc/probe.conf", []byte(text))
	}
	if err == nil {
		return false, false
	}
	var ce *Error
	if errors.As(err, &ce) && strings.HasPrefix(ce.Msg, "unknown section") {
		return true, false
	}
	return false, errors.Is(err, errUnknownKey) || (errors.As(err, &ce) && ce.Msg == "unknown key")
}

// sectionProbe is the section name written in a probe file: NAME becomes
// a valid name.
func sectionProbe(section string) string { return strings.ReplaceAll(section, "NAME", "probe") }

// TestReferenceCoversParser: every section and key the parsers accept is
// documented in Reference, and every documented one is accepted. Other
// work adds keys: this is the test that asks for their documentation.
func TestReferenceCoversParser(t *testing.T) {
	words, prefixes := sourceWords(t)
	documented := map[string]map[string]bool{} // "node.conf [hb]" -> keys
	var sections []SectionDoc
	for _, s := range Reference() {
		id := s.File + " [" + s.Section + "]"
		if documented[id] != nil {
			t.Errorf("%s is documented twice in Reference", id)
			continue
		}
		documented[id] = map[string]bool{}
		sections = append(sections, s)
		for _, k := range s.Keys {
			if documented[id][k.Key] {
				t.Errorf("%s %s is documented twice in Reference", id, k.Key)
			}
			documented[id][k.Key] = true
			if strings.TrimSpace(k.Doc) == "" {
				t.Errorf("%s %s has no Doc", id, k.Key)
			}
		}
	}

	// Sections the parsers accept, found by probing every candidate word.
	type sec struct{ file, section string }
	var accepted []sec
	for _, file := range []string{"node.conf", "svc/NAME.conf"} {
		for _, w := range words {
			if unknown, _ := probe(file, w, ""); !unknown {
				accepted = append(accepted, sec{file, w})
			}
		}
		for _, p := range prefixes {
			if unknown, _ := probe(file, p+"probe", ""); !unknown {
				accepted = append(accepted, sec{file, p + "NAME"})
			}
		}
	}
	for _, s := range accepted {
		id := s.file + " [" + s.section + "]"
		if documented[id] == nil {
			t.Errorf("%s: the parser accepts this section but Reference (config/keydoc.go) does not document it; add it, then run %s", id, regenerate)
		}
	}
	for _, s := range sections {
		id := s.File + " [" + s.Section + "]"
		if !slices.Contains(accepted, sec{s.File, s.Section}) {
			t.Errorf("%s is documented in Reference but the parser refuses it as an unknown section", id)
			continue
		}
		name := sectionProbe(s.Section)
		if _, unknownKey := probe(s.File, name, "no_such_key_for_probe"); !unknownKey {
			t.Errorf("%s: a made-up key is not refused as an unknown key, so this test cannot tell which keys the parser accepts", id)
			continue
		}
		for _, w := range words {
			if _, unknownKey := probe(s.File, name, w); !unknownKey && !documented[id][w] {
				t.Errorf("%s %s: the parser accepts this key but Reference (config/keydoc.go) does not document it; add it, then run %s", id, w, regenerate)
			}
		}
		for _, k := range s.Keys {
			if _, unknownKey := probe(s.File, name, k.Key); unknownKey {
				t.Errorf("%s %s is documented in Reference but the parser refuses it as an unknown key", id, k.Key)
			}
		}
	}
}

// TestConfigurationDocIsCurrent: docs/configuration.md is what `agent docs
// config` writes.
func TestConfigurationDocIsCurrent(t *testing.T) {
	var want bytes.Buffer
	if err := WriteReference(&want); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatalf("%v; generate it with: %s", err, regenerate)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("docs/configuration.md is not what the config package generates; regenerate it from the repository root with:\n\t%s\n(or: go generate ./config)", regenerate)
	}
}

// TestReferenceDefaultsMatchCode checks the defaults the reference states
// against the values the parser uses when a key is absent.
func TestReferenceDefaultsMatchCode(t *testing.T) {
	n := DefaultNode("host.example.com")
	s := DefaultService("web")
	checks := map[string]string{
		"node.conf [hb] port":                    strconv.Itoa(n.HB.Port),
		"node.conf [hb] profile":                 string(n.HB.Profile),
		"node.conf [cluster] split_action":       string(n.Cluster.SplitAction),
		"node.conf [listener] auth":              string(n.Listener.Auth),
		"svc/NAME.conf [service] topology":       string(s.Topology),
		"svc/NAME.conf [service] orchestrate":    string(s.Orchestrate),
		"svc/NAME.conf [service] flex_target":    strconv.Itoa(s.FlexTarget),
		"svc/NAME.conf [service] nodes":          strings.Join(s.Nodes, " "),
		"svc/NAME.conf [service] check_interval": s.CheckInterval.String(),
		"svc/NAME.conf [service] timeout":        s.Timeout.String(),
		"node.conf [hook#NAME] timeout":          DefaultHookTimeout.String(),
		"node.conf [trigger#NAME] timeout":       DefaultTriggerTimeout.String(),
		"node.conf [trigger#NAME] window":        DefaultTriggerWindow.String(),
		"node.conf [trigger#NAME] count":         strconv.Itoa(DefaultTriggerCount),
		"node.conf [trigger#NAME] retries":       strconv.Itoa(DefaultTriggerRetries),
	}
	durations := map[string]string{"10s": "10s", "1m0s": "60s", "30s": "30s", "10m0s": "10m"}
	for _, sd := range Reference() {
		for _, k := range sd.Keys {
			id := sd.File + " [" + sd.Section + "] " + k.Key
			want, ok := checks[id]
			if !ok {
				continue
			}
			if d, ok := durations[want]; ok {
				want = d
			}
			if k.Default != want {
				t.Errorf("%s: Reference says default %q, the code uses %q", id, k.Default, want)
			}
		}
	}
}
