package filter

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// parseGood lists filters that parse, with their canonical form and the paths they read. The
// fuzz target is seeded with these and with parseBad.
var parseGood = []struct {
	in, want string
	paths    []string
}{
	{"monitor.nodes.n2.frozen=0", "monitor.nodes.n2.frozen=0", []string{"monitor.nodes.n2.frozen"}},
	{"monitor.nodes.n2.frozen!=0", "monitor.nodes.n2.frozen!=0", nil},
	{"a == 1", "a=1", nil},
	{"  a\t>=\n-1.5  ", "a>=-1.5", nil},
	{"a>1e3", "a>1e3", nil},
	{"a<1E+3", "a<1E+3", nil},
	{"a<=0.5", "a<=0.5", nil},
	{"a<b", "a<b", nil},
	{`a="a b"`, `a="a b"`, nil},
	{`a="idle"`, "a=idle", nil},
	{`a="10"`, `a="10"`, nil},
	{`a="true"`, `a="true"`, nil},
	{`a=""`, `a=""`, nil},
	{`a="\u00e9t\u00e9"`, "a=été", nil},
	{`a="<&>"`, `a="<&>"`, nil},
	{"a=true", "a=true", nil},
	{"a=false", "a=false", nil},
	{"a=null", "a=null", nil},
	{"a=n1.example.com", "a=n1.example.com", nil},
	{"a=10.0.0.1:10000", "a=10.0.0.1:10000", nil},
	{"a=2026-11-22T10:00:00Z", "a=2026-11-22T10:00:00Z", nil},
	{"a=user@host/x_y", "a=user@host/x_y", nil},
	{"a=01", "a=01", nil},
	{"a=1and", "a=1and", nil},
	{"a=-", "a=-", nil},
	{"a=été", "a=été", nil},
	{"a", "a", []string{"a"}},
	{"a.b.c and d", "a.b.c and d", []string{"a.b.c", "d"}},
	{`monitor.nodes.db1\.example\.com.status=idle`, `monitor.nodes.db1\.example\.com.status=idle`,
		[]string{`monitor.nodes.db1\.example\.com.status`}},
	{`a\ b\=c=1`, `a\ b\=c=1`, []string{`a\ b\=c`}},
	{`\in=1`, `\in=1`, []string{`\in`}},
	{"in.x=1", "in.x=1", []string{"in.x"}},
	{"notes", "notes", []string{"notes"}},
	{"android=1", "android=1", []string{"android"}},
	{"a in [1, 2]", "a in [1,2]", nil},
	{`a in["up","warn"]`, `a in ["up","warn"]`, nil},
	{`a in [true,false,null,"x y",-0.5]`, `a in [true,false,null,"x y",-0.5]`, nil},
	{"a in []", "a in []", nil},
	{"data.id~^instance_", "data.id~^instance_", nil},
	{"data.id !~ ^instance_", "data.id!~^instance_", nil},
	{`data.id~"^a b$"`, `data.id~"^a b$"`, nil},
	{`data.id~"^instance_"`, "data.id~^instance_", nil},
	{"data.id~[0-9]+$", "data.id~[0-9]+$", nil},
	{`a~""`, `a~""`, nil},
	{"a~(x|y)", `a~"(x|y)"`, nil},
	{"(a~^(x|y))", `a~"^(x|y)"`, nil},
	{"((a~x))", "a~x", nil},
	{"(a~x) and b", "a~x and b", nil},
	{`a~"x\\)"`, `a~"x\\)"`, nil},
	{`a~x\)`, `a~"x\\)"`, nil},
	{`a~"\"q"`, `a~"\"q"`, nil},
	{"kind=event and data.id~^instance_", "kind=event and data.id~^instance_", []string{"kind", "data.id"}},
	{"not a", "not a", nil},
	{"not not a", "not not a", nil},
	{"not(a)", "not a", nil},
	{"not (a and b)", "not (a and b)", nil},
	{"not a=1 or b and c", "not a=1 or b and c", nil},
	{"a or b and c", "a or b and c", nil},
	{"(a or b) and c", "(a or b) and c", nil},
	{"a and (b or c) and d", "a and (b or c) and d", nil},
	{"(a and b) and c", "a and b and c", nil},
	{"(a or b) or (c or d)", "a or b or c or d", nil},
	{"a=1 and(b=2)", "a=1 and b=2", nil},
	{"a and b and a", "a and b and a", []string{"a", "b"}},
	{"(((a)))", "a", nil},
	{`data.#(path%"*/frozen").value>0`, `data.#(path%"*/frozen").value>0`, []string{`data.#(path%"*/frozen").value`}},
	{`(not data.#(op == "remove" and x\)"(" ")"))`, `not data.#(op == "remove" and x\)"(" ")")`, nil},
}

var parseBad = []struct {
	in  string
	col int
	msg string // a part of the message
}{
	{"", 1, "empty filter"},
	{"   ", 1, "empty filter"},
	{"a=", 3, `expected a value after "="`},
	{"a= ", 4, `expected a value after "="`},
	{"a!=", 4, `expected a value after "!="`},
	{"(a= )", 5, `expected a value after "="`},
	{"a=,", 3, `expected a value after "=", found ","`},
	{"=1", 1, `expected a condition, found "=1"`},
	{"a and", 6, "unexpected end of the filter"},
	{"a or ", 6, "unexpected end of the filter"},
	{"not", 4, "unexpected end of the filter"},
	{"()", 2, `expected a condition, found ")"`},
	{"(a", 1, `unclosed "("`},
	{"x and ((a or b)", 7, `unclosed "("`},
	{"a)", 2, `unexpected ")" without a matching "("`},
	{"(a b)", 4, `expected "and", "or" or ")", found "b"`},
	{"a b", 3, `expected "and", "or" or the end of the filter, found "b"`},
	{"a=1 andx", 5, `found "andx"`},
	{"a=1 AND b", 5, `found "AND"`},
	{"a=b,c", 4, `unexpected ',' after the value`},
	{`a="x"y`, 6, `unexpected 'y' after the value`},
	{"a=[1]", 3, `an array is a value only after "in"`},
	{`a={"x":1}`, 3, "a JSON object cannot be compared"},
	{`a="x`, 3, "unterminated string"},
	{`a="\x"`, 3, "bad JSON string"},
	{"a=\"x\ty\"", 3, "bad JSON string"},
	{"a in", 5, `expected a JSON array after "in"`},
	{"a in up", 6, `expected a JSON array after "in"`},
	{`a in "up"`, 6, `expected a JSON array after "in"`},
	{"a in [up]", 6, "bad JSON array"},
	{"a in [1,", 6, `unclosed "["`},
	{"a in [1,]", 6, "bad JSON array"},
	{"a in [[1]]", 6, "not arrays or objects"},
	{"a~", 3, `expected a regular expression after "~"`},
	{"(a!~)", 5, `expected a regular expression after "!~"`},
	{"a~(x", 3, "bad regular expression: missing closing )"},
	{"a and b~x) or c", 9, "bad regular expression: unexpected )"},
	{`a~"x\q"`, 3, "bad JSON string"},
	{"a~*", 3, "bad regular expression: missing argument to repetition operator"},
	{"a ! b", 3, `unexpected "!", expected "!=" or "!~"`},
	{"a=1 and in=2", 9, `"in" is a keyword, not a path`},
	{"not=1", 1, `"not" is a keyword, not a path (write \not`},
	{"a and or", 7, `"or" is a keyword`},
	{`a\`, 2, "backslash at the end"},
	{"a.#(b=1", 4, `unclosed "(" in the path`},
	{`a.#(b=")"`, 4, `unclosed "(" in the path`},
	{"été=1 é", 7, `found "é"`},
	{strings.Repeat("(", maxNest+1) + "a" + strings.Repeat(")", maxNest+1), maxNest + 1, "nested too deeply"},
	{strings.Repeat("not ", maxNest+1) + "a", 4*maxNest + 1, "nested too deeply"},
}

func TestParseGood(t *testing.T) {
	for _, tt := range parseGood {
		e, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := e.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		again, err := Parse(e.String())
		if err != nil {
			t.Errorf("Parse(%q) of the canonical form of %q: %v", e.String(), tt.in, err)
		} else if again.String() != e.String() {
			t.Errorf("canonical form of %q is not stable: %q then %q", tt.in, e.String(), again.String())
		}
		if tt.paths != nil && !slices.Equal(e.Paths(), tt.paths) {
			t.Errorf("Parse(%q).Paths() = %q, want %q", tt.in, e.Paths(), tt.paths)
		}
	}
}

func TestParseBad(t *testing.T) {
	for _, tt := range parseBad {
		e, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = %q, want an error at column %d", tt.in, e, tt.col)
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) error %T, want *SyntaxError", tt.in, err)
			continue
		}
		if se.Expr != tt.in || se.Col != tt.col || !strings.Contains(se.Msg, tt.msg) {
			t.Errorf("Parse(%q) = column %d %q, want column %d containing %q", tt.in, se.Col, se.Msg, tt.col, tt.msg)
		}
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	_, err := Parse("a=")
	const want = `filter "a=" column 3: expected a value after "="`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse(%q) error = %v, want %s", "a=", err, want)
	}
	_, err = Parse("a=1\nb")
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error for a filter with a newline is not one line: %q", err)
	}
}

func TestPathsIsACopy(t *testing.T) {
	e, err := Parse("a and b")
	if err != nil {
		t.Fatal(err)
	}
	e.Paths()[0] = "x"
	if got := e.Paths()[0]; got != "a" {
		t.Fatalf("changing the result of Paths changed the expression: %q", got)
	}
}
