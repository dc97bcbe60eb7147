package web_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"agent/filter"
)

// The page's JavaScript must agree with the Go code the agent uses: its
// RFC 6902 implementation with evanphx/json-patch (what stream.Mirror
// applies), its filter evaluator with package filter.

type patchCase struct {
	Doc   json.RawMessage `json:"doc"`
	Patch json.RawMessage `json:"patch"`
	// RFC, when set, is the RFC 6902 outcome ("error" or the document)
	// where evanphx/json-patch departs from it; the agent's documents
	// never meet these cases (no empty keys, no leading zeros).
	RFC string `json:"-"`
}

type patchResult struct {
	Doc   json.RawMessage `json:"doc"`
	Err   string          `json:"err"`
	Panic bool            `json:"-"`
}

var fixedPatchCases = []patchCase{
	// RFC 6902 appendix A.
	{Doc: json.RawMessage(`{"foo":"bar"}`), Patch: json.RawMessage(`[{"op":"add","path":"/baz","value":"qux"}]`)},
	{Doc: json.RawMessage(`{"foo":["bar","baz"]}`), Patch: json.RawMessage(`[{"op":"add","path":"/foo/1","value":"qux"}]`)},
	{Doc: json.RawMessage(`{"baz":"qux","foo":"bar"}`), Patch: json.RawMessage(`[{"op":"remove","path":"/baz"}]`)},
	{Doc: json.RawMessage(`{"foo":["bar","qux","baz"]}`), Patch: json.RawMessage(`[{"op":"remove","path":"/foo/1"}]`)},
	{Doc: json.RawMessage(`{"baz":"qux","foo":"bar"}`), Patch: json.RawMessage(`[{"op":"replace","path":"/baz","value":"boo"}]`)},
	{Doc: json.RawMessage(`{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}`), Patch: json.RawMessage(`[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]`)},
	{Doc: json.RawMessage(`{"foo":["all","grass","cows","eat"]}`), Patch: json.RawMessage(`[{"op":"move","from":"/foo/1","path":"/foo/3"}]`)},
	{Doc: json.RawMessage(`{"baz":"qux","foo":["a",2,"c"]}`), Patch: json.RawMessage(`[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]`)},
	{Doc: json.RawMessage(`{"baz":"qux"}`), Patch: json.RawMessage(`[{"op":"test","path":"/baz","value":"bar"}]`)},
	{Doc: json.RawMessage(`{"foo":"bar"}`), Patch: json.RawMessage(`[{"op":"add","path":"/child","value":{"grandchild":{}}}]`)},
	{Doc: json.RawMessage(`{"foo":"bar"}`), Patch: json.RawMessage(`[{"op":"add","path":"/baz/bat","value":"qux"}]`)},
	{Doc: json.RawMessage(`{"/":9,"~1":10}`), Patch: json.RawMessage(`[{"op":"test","path":"/~01","value":10}]`)},
	{Doc: json.RawMessage(`{"foo":["bar"]}`), Patch: json.RawMessage(`[{"op":"add","path":"/foo/-","value":["abc","def"]}]`)},
	// Edges.
	{Doc: json.RawMessage(`{"a":[1,2]}`), Patch: json.RawMessage(`[{"op":"add","path":"/a/3","value":1}]`)},
	{Doc: json.RawMessage(`{"a":[1,2]}`), Patch: json.RawMessage(`[{"op":"add","path":"/a/01","value":1}]`), RFC: "error"},
	{Doc: json.RawMessage(`{"a":{"b":1}}`), Patch: json.RawMessage(`[{"op":"move","from":"/a","path":"/a/c"}]`)},
	{Doc: json.RawMessage(`{"a":{"b":1}}`), Patch: json.RawMessage(`[{"op":"copy","from":"/a","path":"/c"},{"op":"replace","path":"/c/b","value":2}]`)},
	{Doc: json.RawMessage(`{"a":1}`), Patch: json.RawMessage(`[{"op":"replace","path":"","value":{"b":2}}]`)},
	{Doc: json.RawMessage(`{"a":1}`), Patch: json.RawMessage(`[{"op":"remove","path":"/b"}]`)},
	{Doc: json.RawMessage(`{"a":1}`), Patch: json.RawMessage(`[{"op":"replace","path":"/b","value":1}]`)},
	{Doc: json.RawMessage(`{"":{"":1}}`), Patch: json.RawMessage(`[{"op":"replace","path":"//","value":2}]`), RFC: `{"":{"":2}}`},
	{Doc: json.RawMessage(`{"a":1}`), Patch: json.RawMessage(`[{"op":"replace","path":"","value":"s"}]`), RFC: `"s"`},
	{Doc: json.RawMessage(`{"a":[{"x":1},{"x":2}]}`), Patch: json.RawMessage(`[{"op":"test","path":"/a","value":[{"x":1},{"x":2}]},{"op":"remove","path":"/a/0/x"}]`)},
	{Doc: json.RawMessage(`{"a":1}`), Patch: json.RawMessage(`[{"op":"frob","path":"/a"}]`)},
}

// randomPatchCases makes documents and patches like the agent's: nested
// objects with awkward keys, arrays, and operations on paths that mostly
// exist.
func randomPatchCases(n int) []patchCase {
	r := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "b", "n1", "a/b", "m~n", "~1", "services", "0"}
	var value func(depth int) any
	value = func(depth int) any {
		switch k := r.IntN(7); {
		case depth > 2 || k == 0:
			return r.IntN(5)
		case k == 1:
			return []string{"up", "down", "warn"}[r.IntN(3)]
		case k == 2:
			return nil
		case k == 3:
			a := []any{}
			for range r.IntN(4) {
				a = append(a, value(depth+1))
			}
			return a
		default:
			m := map[string]any{}
			for range r.IntN(4) {
				m[keys[r.IntN(len(keys))]] = value(depth + 1)
			}
			return m
		}
	}
	esc := strings.NewReplacer("~", "~0", "/", "~1")
	var paths func(v any, p string, out *[]string)
	paths = func(v any, p string, out *[]string) {
		*out = append(*out, p)
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				paths(c, p+"/"+esc.Replace(k), out)
			}
		case []any:
			for i, c := range v {
				paths(c, fmt.Sprintf("%s/%d", p, i), out)
			}
		}
	}
	var cases []patchCase
	for range n {
		doc := map[string]any{"monitor": value(0), "x": value(1)}
		var ps []string
		paths(doc, "", &ps)
		ps = ps[1:] // not the root: the agent never patches it whole
		pick := func() string {
			if r.IntN(6) == 0 {
				return ps[r.IntN(len(ps))] + "/" + []string{"-", "new", "9", "a"}[r.IntN(4)]
			}
			return ps[r.IntN(len(ps))]
		}
		var ops []map[string]any
		for range 1 + r.IntN(3) {
			op := []string{"add", "remove", "replace", "move", "copy", "test"}[r.IntN(6)]
			o := map[string]any{"op": op, "path": pick()}
			switch op {
			case "add", "replace":
				o["value"] = value(1)
			case "test":
				// evanphx/json-patch lets a test of null pass on a missing
				// path; RFC 6902 does not.
				if o["value"] = value(1); o["value"] == nil {
					o["value"] = 0
				}
			case "move", "copy":
				o["from"] = pick()
			}
			ops = append(ops, o)
		}
		d, _ := json.Marshal(doc)
		p, _ := json.Marshal(ops)
		cases = append(cases, patchCase{Doc: d, Patch: p})
	}
	return cases
}

// goPatch applies c as stream.Mirror does. evanphx/json-patch v5.9.11
// panics in test operations comparing nested nulls: that is reported as
// Panic and the case is not compared.
func goPatch(c patchCase) (res patchResult) {
	defer func() {
		if r := recover(); r != nil {
			res = patchResult{Err: fmt.Sprint("panic: ", r), Panic: true}
		}
	}()
	p, err := jsonpatch.DecodePatch(c.Patch)
	if err != nil {
		return patchResult{Err: err.Error()}
	}
	opts := jsonpatch.NewApplyOptions()
	opts.SupportNegativeIndices = false // the page refuses them, the agent never sends them
	doc, err := p.ApplyWithOptions(c.Doc, opts)
	if err != nil {
		return patchResult{Err: err.Error()}
	}
	return patchResult{Doc: doc}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// loadScripts opens the page's scripts in an empty page (no websocket).
func loadScripts(t *testing.T) *browser {
	f := newFakeAgent(t, threeNodes(), "")
	b := openPage(t, f.srv.URL+"/")
	b.waitFor("scripts", `window.AgentPatch && window.AgentFilter`)
	return b
}

func TestBrowserPatchAgreesWithGo(t *testing.T) {
	b := loadScripts(t)
	cases := append(append([]patchCase(nil), fixedPatchCases...), randomPatchCases(2000)...)
	in, _ := json.Marshal(cases)
	got := eval[[]patchResult](b, `(`+string(in)+`).map(c => {
		try { return {doc: AgentPatch.apply(c.doc, c.patch), err: ""}; }
		catch (e) { return {doc: null, err: e.name + ": " + e.message}; }
	})`)
	if len(got) != len(cases) {
		t.Fatalf("%d results for %d cases", len(got), len(cases))
	}
	var failures, errs, panics int
	for i, c := range cases {
		want := goPatch(c)
		if want.Panic {
			panics++
			continue
		}
		js := got[i]
		if c.RFC == "error" {
			want = patchResult{Err: "RFC 6902"}
		} else if c.RFC != "" {
			want = patchResult{Doc: json.RawMessage(c.RFC)}
		}
		if want.Err != "" {
			errs++
		}
		switch {
		case want.Err != "" && js.Err == "":
			t.Errorf("case %d: %s on %s: Go fails (%s), page gives %s", i, c.Patch, c.Doc, want.Err, js.Doc)
			failures++
		case want.Err == "" && js.Err != "":
			t.Errorf("case %d: %s on %s: Go gives %s, page fails (%s)", i, c.Patch, c.Doc, want.Doc, js.Err)
			failures++
		case want.Err == "" && !sameJSON(want.Doc, js.Doc):
			t.Errorf("case %d: %s on %s:\n Go   %s\n page %s", i, c.Patch, c.Doc, want.Doc, js.Doc)
			failures++
		}
		if failures > 10 {
			t.Fatal("too many differences")
		}
	}
	t.Logf("%d patches, %d of them failing in both, %d not compared (evanphx/json-patch panics)", len(cases), errs, panics)
}

type filterCase struct {
	Expr string          `json:"expr"`
	Doc  json.RawMessage `json:"doc"`
}

type filterResult struct {
	Match bool   `json:"match"`
	Err   string `json:"err"`
}

func TestBrowserFilterAgreesWithGo(t *testing.T) {
	b := loadScripts(t)
	docs := []json.RawMessage{
		json.RawMessage(`{"seq":1202,"epoch":"9f2c","time":"2026-11-22T10:00:01.123501Z","nodename":"n1","kind":"event","data":{"id":"node_freeze","reason":"peer","node":"n2"}}`),
		json.RawMessage(`{"seq":1203,"epoch":"9f2c","time":"2026-11-22T10:00:02Z","nodename":"n2","kind":"event","data":{"id":"instance_start","reason":"failover","svcname":"web","instance":"web@n2","up":["n1","n2"],"frozen":0,"flag":true,"n":10,"s":"10","e":"","z":null,"o":{},"a.b":{"c":1}}}`),
		json.RawMessage(`{"seq":1204,"epoch":"9f2c","nodename":"n2","kind":"patch","data":[{"op":"replace","path":"/monitor/nodes/n2/frozen","value":1795341601}]}`),
	}
	exprs := []string{
		"kind=event", "kind==patch", "kind!=event", "data.id~^node_", "data.id!~^node_",
		"kind=event and data.id~^instance_", "data.svcname=web or data.node=n2", "not data.svcname=web",
		"not data.svcname", "data.frozen", "data.flag", "data.flag=true", "data.e", "data.z", "data.z=null", "data.o",
		"data.up", "data.up.#=2", "data.up.1=n2", `data.up in ["n1"]`, `data.svcname in ["web","db"]`, `data.n in [10, 11]`,
		"data.n>9", "data.n>=10", "data.n<10", "data.n<=10", "data.s>9", "data.s<9", "data.n=10", `data.n="10"`,
		"seq>1202", "seq~^120", "data.a\\.b.c=1", "data.missing!=1", "data.missing!~x", "(kind=event)", "((kind=event) and (data.id~^(node|instance)_))",
		"data.0.op=replace", "data.0.value>0", "data.#=1", `data.reason="peer"`, "time>2026-11-22T10:00:01Z", "nodename=n1 and not (data.id=node_thaw or data.id=node_down)",
		"data.id~node", `data.id~"^node_(freeze|thaw)$"`, "data.instance=web@n2", "data.id=", "and", "kind=", "(kind=event", "kind=event)", "data.id~(", "kind in x",
		"data.up=[1]", "not not kind=event", "kind = event", "kind  ==  event",
	}
	var cases []filterCase
	for _, e := range exprs {
		for _, d := range docs {
			cases = append(cases, filterCase{e, d})
		}
	}
	in, _ := json.Marshal(cases)
	got := eval[[]filterResult](b, `(`+string(in)+`).map(c => {
		try { return {match: !!AgentFilter.parse(c.expr)(c.doc), err: ""}; }
		catch (e) { return {match: false, err: e.message}; }
	})`)
	for i, c := range cases {
		var want filterResult
		x, err := filter.Parse(c.Expr)
		if err != nil {
			want.Err = err.Error()
		} else {
			want.Match = x.Match(c.Doc)
		}
		js := got[i]
		if (want.Err == "") != (js.Err == "") {
			t.Errorf("%q: Go error %q, page error %q", c.Expr, want.Err, js.Err)
			continue
		}
		if want.Match != js.Match {
			t.Errorf("%q on %s: Go %v, page %v", c.Expr, c.Doc, want.Match, js.Match)
		}
	}
}
