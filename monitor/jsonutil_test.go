package monitor

import (
	"encoding/json"
	"testing"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "sorts keys", in: `{"b":1,"a":2}`, want: `{"a":2,"b":1}`},
		{name: "sorts nested keys", in: `{"z":{"y":1,"x":[{"d":1,"c":2}]}}`, want: `{"z":{"x":[{"c":2,"d":1}],"y":1}}`},
		{name: "drops whitespace", in: " {\n\t\"a\" : [ 1 , 2 ] } \n", want: `{"a":[1,2]}`},
		{name: "keeps numbers as written", in: `{"f":1.0,"e":1e3,"n":-0.50}`, want: `{"e":1e3,"f":1.0,"n":-0.50}`},
		{name: "keeps big integers exact", in: `{"g":18446744073709551615}`, want: `{"g":18446744073709551615}`},
		{name: "unescapes keys", in: `{"a\u002fb":1,"c~d":2}`, want: `{"a/b":1,"c~d":2}`},
		{name: "last duplicate key wins", in: `{"a":1,"a":2}`, want: `{"a":2}`},
		{name: "scalar", in: `"x"`, want: `"x"`},
		{name: "null", in: `null`, want: `null`},
		{name: "empty object", in: `{}`, want: `{}`},
		{name: "empty input", in: ``, wantErr: true},
		{name: "truncated", in: `{"a":`, wantErr: true},
		{name: "trailing value", in: `{} {}`, wantErr: true},
		{name: "trailing garbage", in: `{"a":1}x`, wantErr: true},
		{name: "bad number", in: `{"a":01}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Canonical(%q) = %s, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Canonical(%q): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Canonical(%q) = %s, want %s", tt.in, got, tt.want)
			}
			again, err := Canonical(got)
			if err != nil || string(again) != string(got) {
				t.Fatalf("Canonical is not idempotent: %s -> %s (%v)", got, again, err)
			}
		})
	}
}

func TestPointer(t *testing.T) {
	tests := []struct {
		tokens []string
		want   string
	}{
		{nil, ""},
		{[]string{""}, "/"},
		{[]string{"monitor", "nodes", "n1"}, "/monitor/nodes/n1"},
		{[]string{"a/b"}, "/a~1b"},
		{[]string{"a~b"}, "/a~0b"},
		// "~1" must become "~01", not "~1" read back as "/".
		{[]string{"~1"}, "/~01"},
		{[]string{"~/"}, "/~0~1"},
		{[]string{"topology.kubernetes.io/zone", "x"}, "/topology.kubernetes.io~1zone/x"},
	}
	for _, tt := range tests {
		if got := Pointer(tt.tokens...); got != tt.want {
			t.Errorf("Pointer(%q) = %q, want %q", tt.tokens, got, tt.want)
		}
	}
}

// TestPointerResolves checks that a pointer Pointer builds reaches the key
// it was built from, by replacing that key with json-patch.
func TestPointerResolves(t *testing.T) {
	keys := []string{"plain", "a/b", "a~b", "~1", "~0", "/", "~", "a~1b/~0"}
	for _, k := range keys {
		doc := map[string]any{"top": map[string]any{}}
		for _, other := range keys {
			doc["top"].(map[string]any)[other] = "old"
		}
		raw, _ := json.Marshal(doc)
		op, _ := json.Marshal([]map[string]any{{"op": "replace", "path": Pointer("top", k), "value": "new"}})
		out := applyPatch(t, raw, op)
		var got map[string]map[string]string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		for _, other := range keys {
			want := "old"
			if other == k {
				want = "new"
			}
			if got["top"][other] != want {
				t.Errorf("replace %q: key %q = %q, want %q", Pointer("top", k), other, got["top"][other], want)
			}
		}
	}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name   string
		a, b   string
		prefix string
		want   string // exact operation list, when not ""
	}{
		{name: "equal", a: `{"a":1}`, b: `{"a":1}`, want: `[]`},
		{name: "equal with prefix", a: `{"a":1}`, b: `{"a":1}`, prefix: "/x", want: `[]`},
		{name: "replace", a: `{"a":1}`, b: `{"a":2}`, want: `[{"op":"replace","path":"/a","value":2}]`},
		{name: "add", a: `{}`, b: `{"a":1}`, want: `[{"op":"add","path":"/a","value":1}]`},
		{name: "remove", a: `{"a":1}`, b: `{}`, want: `[{"op":"remove","path":"/a"}]`},
		{name: "prefixed", a: `{"a":1}`, b: `{"a":2}`, prefix: "/monitor/nodes/n1", want: `[{"op":"replace","path":"/monitor/nodes/n1/a","value":2}]`},
		{name: "slash key", a: `{"l":{}}`, b: `{"l":{"k8s.io/zone":"a"}}`, want: `[{"op":"add","path":"/l/k8s.io~1zone","value":"a"}]`},
		{name: "tilde key", a: `{"l":{"a~b":1}}`, b: `{"l":{"a~b":2}}`, want: `[{"op":"replace","path":"/l/a~0b","value":2}]`},
		{name: "escaped prefix", a: `{"a":1}`, b: `{"a":2}`, prefix: Pointer("nodes", "n/1~"), want: `[{"op":"replace","path":"/nodes/n~11~0/a","value":2}]`},
		{name: "root replace", a: `{"a":1}`, b: `[1]`},
		{name: "nested mix", a: `{"a":{"b":[1,2,3],"c":"x"},"d":null}`, b: `{"a":{"b":[1,3],"e":true},"d":{"f":1}}`},
		{name: "arrays", a: `{"s":[{"n":1},{"n":2}]}`, b: `{"s":[{"n":2},{"n":1},{"n":3}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := Diff([]byte(tt.a), []byte(tt.b), tt.prefix)
			if err != nil {
				t.Fatalf("Diff: %v", err)
			}
			if tt.want != "" && canon(t, ops) != canon(t, []byte(tt.want)) {
				t.Fatalf("Diff = %s, want %s", ops, tt.want)
			}
			// Applied under the prefix, the operations give b.
			doc := []byte(tt.a)
			if tt.prefix != "" {
				doc = nest(t, tt.prefix, tt.a)
			}
			got := applyPatch(t, doc, ops)
			want := []byte(tt.b)
			if tt.prefix != "" {
				want = nest(t, tt.prefix, tt.b)
			}
			if canon(t, got) != canon(t, want) {
				t.Fatalf("a + Diff(a, b) = %s, want %s", got, want)
			}
		})
	}
}

// nest wraps the JSON value v in objects along pointer, which must be made
// of plain or escaped tokens.
func nest(t *testing.T, pointer, v string) []byte {
	t.Helper()
	var val any
	if err := json.Unmarshal([]byte(v), &val); err != nil {
		t.Fatal(err)
	}
	toks := splitPointer(pointer)
	for i := len(toks) - 1; i >= 0; i-- {
		val = map[string]any{toks[i]: val}
	}
	raw, _ := json.Marshal(val)
	return raw
}

func splitPointer(p string) []string {
	var toks []string
	cur := ""
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			toks = append(toks, unescapeToken(cur))
			cur = ""
			continue
		}
		cur += string(p[i])
	}
	return toks
}

func unescapeToken(s string) string {
	out := ""
	for i := 0; i < len(s); i++ {
		if s[i] == '~' && i+1 < len(s) {
			switch s[i+1] {
			case '1':
				out += "/"
				i++
				continue
			case '0':
				out += "~"
				i++
				continue
			}
		}
		out += string(s[i])
	}
	return out
}

func TestDiffInvalid(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{`{`, `{}`},
		{`{}`, `{"a":}`},
	} {
		if ops, err := Diff([]byte(tt.a), []byte(tt.b), ""); err == nil {
			t.Errorf("Diff(%s, %s) = %s, want an error", tt.a, tt.b, ops)
		}
	}
}

func TestPrefix(t *testing.T) {
	tests := []struct {
		name    string
		ops     string
		prefix  string
		want    string
		wantErr bool
	}{
		{name: "empty list", ops: `[]`, prefix: "/p", want: `[]`},
		{name: "path", ops: `[{"op":"replace","path":"/a","value":1}]`, prefix: "/p", want: `[{"op":"replace","path":"/p/a","value":1}]`},
		{name: "from too", ops: `[{"op":"move","from":"/a","path":"/b"}]`, prefix: "/p", want: `[{"from":"/p/a","op":"move","path":"/p/b"}]`},
		{name: "root path", ops: `[{"op":"replace","path":"","value":{}}]`, prefix: "/p", want: `[{"op":"replace","path":"/p","value":{}}]`},
		{name: "escaped prefix", ops: `[{"op":"remove","path":"/a~1b"}]`, prefix: Pointer("monitor", "nodes", "n/1~x"), want: `[{"op":"remove","path":"/monitor/nodes/n~11~0x/a~1b"}]`},
		{name: "value kept as written", ops: `[{"op":"add","path":"/a","value":{"z":1.0,"y":[1e3]}}]`, prefix: "/p", want: `[{"op":"add","path":"/p/a","value":{"z":1.0,"y":[1e3]}}]`},
		{name: "several", ops: `[{"op":"add","path":"/a","value":1},{"op":"remove","path":"/b"},{"op":"copy","from":"/a","path":"/c"}]`, prefix: "/p",
			want: `[{"op":"add","path":"/p/a","value":1},{"op":"remove","path":"/p/b"},{"from":"/p/a","op":"copy","path":"/p/c"}]`},
		{name: "not a list", ops: `{"op":"add"}`, prefix: "/p", wantErr: true},
		{name: "invalid JSON", ops: `[{"op":`, prefix: "/p", wantErr: true},
		{name: "path not a string", ops: `[{"op":"remove","path":3}]`, prefix: "/p", wantErr: true},
		{name: "from not a string", ops: `[{"op":"move","from":["/a"],"path":"/a"}]`, prefix: "/p", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Prefix(json.RawMessage(tt.ops), tt.prefix)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Prefix(%s) = %s, want an error", tt.ops, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Prefix(%s): %v", tt.ops, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Prefix(%s) = %s, want %s", tt.ops, got, tt.want)
			}
		})
	}
}
