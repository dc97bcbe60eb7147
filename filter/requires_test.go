package filter

import (
	"reflect"
	"testing"
)

func TestRequires(t *testing.T) {
	for _, tc := range []struct {
		filter string
		vals   []string // nil: not constrained
	}{
		{"data.id=node_down", []string{"node_down"}},
		{`data.id == "node_down"`, []string{"node_down"}},
		{`data.id in ["node_down","node_up"]`, []string{"node_down", "node_up"}},
		{"data.id=instance_start and data.reason=restart", []string{"instance_start"}},
		{"data.id=instance_start or (data.id=instance_status_change and data.avail=up)", []string{"instance_start", "instance_status_change"}},
		{`data.id in ["a","b"] and data.id in ["b","c"]`, []string{"b"}},
		{"data.id=a and data.id=b", []string{}}, // never holds
		{"data.id=true", []string{"true"}},
		{"data.id=null", []string{"null"}},
		{"data.id=a or data.svcname=web", nil},
		{"not data.id=a", nil},
		{"data.id!=a", nil},
		{"data.id~^instance_", nil},
		{"data.id", nil},
		{"data.id=5", nil},
		{`data.id in ["a",5]`, nil},
		{"kind=event", nil},
		{"data.idx=a", nil},
	} {
		e, err := Parse(tc.filter)
		if err != nil {
			t.Fatalf("%q: %v", tc.filter, err)
		}
		vals, ok := e.Requires("data.id")
		if ok != (tc.vals != nil) || (ok && !reflect.DeepEqual(vals, tc.vals)) {
			t.Errorf("%q: Requires = %q, %v; want %q", tc.filter, vals, ok, tc.vals)
		}
	}
}

// TestRequiresIsSound: on documents whose value is not in the set, the
// expression never holds.
func TestRequiresIsSound(t *testing.T) {
	docs := []string{
		`{"data":{"id":"a"}}`, `{"data":{"id":"b","x":1}}`, `{"data":{"id":"c"}}`, `{"data":{"id":true}}`,
		`{"data":{"id":null}}`, `{"data":{"id":5}}`, `{"data":{}}`, `{"data":[1]}`, `{}`,
	}
	for _, f := range []string{
		"data.id=a", `data.id in ["a","b"]`, "data.id=a or (data.id=b and data.x=1)", "data.id=true", "data.id=null",
		"data.id=a and data.id=b", `(data.id=a or data.id=c) and data.id in ["c"]`,
	} {
		e, _ := Parse(f)
		vals, ok := e.Requires("data.id")
		if !ok {
			t.Fatalf("%q: not constrained", f)
		}
		for _, d := range docs {
			id, exists := Get([]byte(d), "data.id")
			form := id
			if len(id) > 1 && id[0] == '"' {
				form = id[1 : len(id)-1]
			}
			in := false
			for _, v := range vals {
				in = in || (exists && v == form)
			}
			if e.Match([]byte(d)) && !in {
				t.Errorf("%q holds on %s, whose data.id is not in %q", f, d, vals)
			}
		}
	}
}
