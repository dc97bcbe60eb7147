package filter

import (
	"errors"
	"testing"
)

// fuzzDocs are the documents every parsed filter is evaluated on, beside the fuzzer's own.
var fuzzDocs = [][]byte{
	[]byte(`{"a": 1, "b": "x", "c": [1, {"d": null}], "e": {"f": true}}`),
	[]byte(`{"kind": "event", "data": {"id": "instance_start"}}`),
	[]byte(`[{"a": 1}]`),
	[]byte(`{`),
	nil,
}

// FuzzParse checks that Parse never panics, that a filter that parses has a stable canonical
// form, and that Match never panics, on the fuzzer's documents as on well-formed ones.
func FuzzParse(f *testing.F) {
	for _, tt := range parseGood {
		f.Add(tt.in, []byte(`{"a": 1}`))
	}
	for _, tt := range parseBad {
		f.Add(tt.in, []byte(`{"a": "x"}`))
	}
	f.Add("monitor.nodes.n2.frozen=0", readCluster(f))
	f.Fuzz(func(t *testing.T, s string, doc []byte) {
		e, err := Parse(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T, want *SyntaxError", s, err)
			}
			if se.Col < 1 || se.Col > len([]rune(s))+1 {
				t.Fatalf("Parse(%q) error column %d out of range", s, se.Col)
			}
			return
		}
		canon := e.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) gives %q, which does not parse: %v", s, canon, err)
		}
		if again.String() != canon {
			t.Fatalf("Parse(%q) gives %q, then %q", s, canon, again.String())
		}
		want := e.Match(doc)
		if again.Match(doc) != want {
			t.Fatalf("%q and its canonical form %q disagree on %q", s, canon, doc)
		}
		for _, d := range fuzzDocs {
			e.Match(d)
		}
		for _, p := range e.Paths() {
			Get(doc, p)
		}
	})
}
