package filter

import (
	"os"
	"sync"
	"testing"
)

func readCluster(tb testing.TB) []byte {
	tb.Helper()
	doc, err := os.ReadFile("testdata/cluster.json")
	if err != nil {
		tb.Fatal(err)
	}
	return doc
}

type matchCase struct {
	filter string
	want   bool
}

func checkMatches(t *testing.T, doc []byte, cases []matchCase) {
	t.Helper()
	for _, tt := range cases {
		e, err := Parse(tt.filter)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.filter, err)
			continue
		}
		if got := e.Match(doc); got != tt.want {
			t.Errorf("%q matched %v, want %v", tt.filter, got, tt.want)
		}
		// The canonical form must mean the same thing, not only read back the same.
		if again, err := Parse(e.String()); err != nil || again.Match(doc) != tt.want {
			t.Errorf("canonical form %q of %q does not evaluate the same (err %v)", e.String(), tt.filter, err)
		}
	}
}

// TestMatchCluster evaluates filters of `agent wait` on the cluster data of SPEC section 3,
// five nodes of which two have dots in their names (testdata/cluster.json).
func TestMatchCluster(t *testing.T) {
	checkMatches(t, readCluster(t), []matchCase{
		// frozen numbers, as in the SPEC's wait examples
		{"monitor.nodes.n2.frozen=0", true},
		{"monitor.nodes.n2.frozen==0", true},
		{"monitor.nodes.n2.frozen!=0", false},
		{"monitor.nodes.n3.frozen!=0", true},
		{"monitor.nodes.n3.frozen>1795341600", true},
		{"monitor.nodes.n3.frozen>=1795341601", true},
		{"monitor.nodes.n3.frozen<1795341601", false},
		{"monitor.nodes.n3.frozen<=1.795341601e9", true},
		{"monitor.nodes.n2.frozen", false},
		{"monitor.nodes.n3.frozen", true},
		{"not monitor.nodes.n3.frozen", false},
		// status strings, bare and quoted
		{"monitor.nodes.n1.status=idle", true},
		{`monitor.nodes.n1.status="idle"`, true},
		{"monitor.nodes.n1.status=rejoin", false},
		{"monitor.nodes.n1.status!=rejoin", true},
		{`monitor.nodes.n3.services.web.monitor.status="start failed"`, true},
		{`monitor.nodes.n3.services.web.monitor.status~failed$`, true},
		{`monitor.nodes.n3.services.web.monitor.status~^failed`, false},
		{"cluster.nodes.n3.state in [\"suspect\",\"dead\"]", true},
		{"cluster.nodes.n1.state in [\"suspect\",\"dead\"]", false},
		{"cluster.nodes.n1.addr=10.0.0.1:10000", true},
		{"cluster.nodes.n1.since<2026-11-23T00:00:00Z", true},
		// node names with dots
		{`monitor.nodes.db1\.example\.com.status=idle`, true},
		{`monitor.nodes.db2\.example\.com.status=rejoin`, true},
		{`monitor.nodes.db1\.example\.com.services.db.monitor.placement=leader`, true},
		{`monitor.nodes.db1.example.com.status=idle`, false},     // no node "db1"
		{`monitor.services.db.up in ["db1.example.com"]`, false}, // the array is not an element
		{`monitor.services.db.up.0=db1.example.com`, true},
		{`monitor.services.db.up.#(=="db1.example.com")`, true},
		{`monitor.services.db.up.#(=="n1")`, false},
		{`monitor.services.cache.up.#(%"db*")#|# = 2`, true},
		{`monitor.services.db.up~"\"db1\\.example\\.com\""`, true},
		// labels: present, absent, empty object
		{"monitor.nodes.n1.labels.zone=a", true},
		{"monitor.nodes.n2.labels.zone=a", false},
		{"monitor.nodes.n1.labels", true},
		{`monitor.nodes.db2\.example\.com.labels`, false},
		{`not monitor.nodes.db2\.example\.com.labels.zone`, true},
		// services
		{"monitor.services.web.avail=up and monitor.services.web.overall=up", true},
		{"monitor.services.db.overall in [\"up\",\"warn\"]", true},
		{"monitor.services.db.frozen=frozen", true},
		{"monitor.services.web.up.#=2", true},
		{"monitor.services.cache.up.#>=5", true},
		{"monitor.nodes.n1.services.web.monitor.placement=leader and monitor.nodes.n2.services.web.avail=up", true},
		// stats: numbers in both forms
		{"monitor.nodes.n3.stats.mem_avail_pct<20", true},
		{"monitor.nodes.n1.stats.load_15m<0.5", true},
		{"monitor.nodes.n3.stats.load_15m", false}, // 0
		{"monitor.nodes.n3.stats.load_15m=0.0", true},
		// truthiness of the other empty values
		{"monitor.nodes.n1.note", false},
		{"monitor.nodes.n1.tags", false},
		{"monitor.nodes.n1.maintenance", false},
		{"monitor.nodes.n1.stats", true},
		{"monitor.services.web.up", true},
		{"monitor.nodes.n1.note=null", true},
		{"monitor.nodes.n1.maintenance=false", true},
		// precedence
		{"monitor.nodes.n3.frozen=0 and monitor.nodes.n1.status=idle or monitor.nodes.n2.status=idle", true},
		{"monitor.nodes.n3.frozen=0 and (monitor.nodes.n1.status=idle or monitor.nodes.n2.status=idle)", false},
		{"not monitor.nodes.n3.frozen=0 and monitor.nodes.n1.status=idle", true},
		{"not (monitor.nodes.n3.frozen=0 or monitor.nodes.n1.status=idle)", false},
		{"not not monitor.nodes.n1.status=idle", true},
	})
}

// TestMatchNumbersAndStrings pins down when values compare as numbers.
func TestMatchNumbersAndStrings(t *testing.T) {
	doc := []byte(`{"n": 10, "s": "10", "f": 1.5, "neg": -3, "big": 1e3, "t": true, "ts": "true", "z": "", "nul": null, "ns": "null", "arr": [1, 2], "obj": {"k": "v"}}`)
	checkMatches(t, doc, []matchCase{
		{"n>9", true}, // numerically
		{"n<9", false},
		{`s>9`, false},   // the document holds a string: "10" < "9" as strings
		{`s>"9"`, false}, // both strings
		{`s<"9"`, true},
		{`n>"9"`, false}, // the value is a string: "10" < "9"
		{"n=10", true},
		{"n=10.0", true}, // numbers compare as numbers, whatever their spelling
		{"n=1e1", true},
		{`n="10"`, true}, // equal as strings
		{`s=10`, true},
		{`n="10.0"`, false},
		{"f>1", true},
		{"f<2", true},
		{"neg<-2.5", true},
		{"neg>=-3", true},
		{"big=1000", true},
		{"t=true", true},
		{`t="true"`, true},
		{"ts=true", true}, // not numbers, so compared as strings
		{"t!=false", true},
		{"z", false},
		{`z=""`, true},
		{`z!=""`, false},
		{"nul=null", true},
		{`ns=null`, true},
		{`nul=""`, false},
		{"nul", false},
		{`arr~^\[1,`, true},
		{"arr.1=2", true},
		{"arr in [1,2]", false},
		{"obj.k=v", true},
		{`obj~"\"k\""`, true},
		{"n in [9, 10]", true},
		{`n in ["10"]`, true},
		{`s in [10]`, true},
		{`s in [9, "x"]`, false},
		{"n in []", false},
		{"t in [true]", true},
		{"nul in [null]", true},
		{"n~^1", true}, // a number's text
		{"n!~^1", false},
	})
}

// TestMatchMissing pins down that every comparison on a missing path is false, and that
// `not` is how a filter says "not there or different".
func TestMatchMissing(t *testing.T) {
	doc := []byte(`{"a": 1, "nul": null}`)
	checkMatches(t, doc, []matchCase{
		{"x", false},
		{"x=1", false},
		{"x!=1", false},
		{"x>0", false},
		{"x<0", false},
		{"x>=0", false},
		{"x<=0", false},
		{"x~.", false},
		{"x~^", false},
		{"x!~.", false},
		{"x in [1]", false},
		{"x=null", false},
		{`x=""`, false},
		{"not x", true},
		{"not x=1", true},
		{"not a=1", false},
		{"not x!=1", true},
		{"a.b", false},
		{"nul!=1", true}, // null is a value, not a missing path
		{"x=1 or a=1", true},
		{"x!=1 or a!=1", false},
	})
	// Documents that are not JSON objects, or not JSON, still give an answer.
	for _, doc := range []string{"", "null", "[]", "1", `"a"`, "{", `{"a":`, "\x00\xff"} {
		for _, f := range []string{"a", "a=1", "not a!=1", "a~x", "a in [1]"} {
			e, err := Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			_ = e.Match([]byte(doc))
		}
	}
}

// TestMatchRecords evaluates filters of `agent events --filter` and hooks on the records of
// SPEC section 4.
func TestMatchRecords(t *testing.T) {
	patch := []byte(`{"seq": 1201, "epoch": "9f2c", "time": "2026-11-22T10:00:01.123456Z", "nodename": "n2", "kind": "patch",
 "data": [{"op": "replace", "path": "/monitor/nodes/n2/frozen", "value": 1795341601}]}`)
	event := []byte(`{"seq": 1202, "epoch": "9f2c", "time": "2026-11-22T10:00:01.123501Z", "nodename": "n1", "kind": "event",
 "data": {"id": "node_freeze", "reason": "peer", "node": "n2"}}`)
	instance := []byte(`{"seq": 1203, "epoch": "9f2c", "time": "2026-11-22T10:00:02Z", "nodename": "n1", "kind": "event",
 "data": {"id": "instance_start", "reason": "failover", "svcname": "web", "instance": "web@n1"}}`)

	cases := []struct {
		filter                 string
		patch, event, instance bool
	}{
		{"kind=event", false, true, true},
		{"kind=event and data.id~^instance_", false, false, true},
		{"kind=event and data.id!~^instance_", false, true, false},
		{"data.id~^node_", false, true, false},
		{"data.id in [\"node_freeze\",\"node_thaw\"] and data.reason=peer", false, true, false},
		{"kind=patch and data.0.path~^/monitor/nodes/n2/", true, false, false},
		{"kind=patch and data.#(path%\"*/frozen\").value>0", true, false, false},
		{"nodename=n1", false, true, true},
		{"seq>1201", false, true, true},
		{"seq>1201 and not data.svcname=web", false, true, false},
		{"data.instance=web@n1 or kind=patch", true, false, true},
		{"epoch=9f2c", true, true, true},
		{"time>=2026-11-22T10:00:01.2", false, false, true},
	}
	for _, tt := range cases {
		e, err := Parse(tt.filter)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.filter, err)
			continue
		}
		for _, r := range []struct {
			name string
			doc  []byte
			want bool
		}{{"patch", patch, tt.patch}, {"event", event, tt.event}, {"instance", instance, tt.instance}} {
			if got := e.Match(r.doc); got != r.want {
				t.Errorf("%q on the %s record matched %v, want %v", tt.filter, r.name, got, r.want)
			}
		}
	}
}

func TestAny(t *testing.T) {
	doc := []byte(`{"kind": "event", "data": {"id": "node_up"}}`)
	parse := func(s string) *Expr {
		e, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, tt := range []struct {
		name string
		any  Any
		want bool
	}{
		{"empty", nil, true},
		{"one that holds", Any{parse("kind=event")}, true},
		{"one that does not", Any{parse("kind=patch")}, false},
		{"the second holds", Any{parse("kind=patch"), parse("data.id=node_up")}, true},
		{"none holds", Any{parse("kind=patch"), parse("data.id=node_down")}, false},
	} {
		if got := tt.any.Match(doc); got != tt.want {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestGet(t *testing.T) {
	doc := readCluster(t)
	for _, tt := range []struct {
		path, raw string
		ok        bool
	}{
		{"monitor.nodes.n2.frozen", "0", true},
		{"monitor.nodes.n1.status", `"idle"`, true},
		{`monitor.nodes.db1\.example\.com.labels`, `{
          "zone": "b"
        }`, true},
		{"monitor.nodes.n1.note", "null", true},
		{"monitor.services.web.up.#", "2", true},
		{"monitor.nodes.n9", "", false},
		{"", "", false},
	} {
		raw, ok := Get(doc, tt.path)
		if raw != tt.raw || ok != tt.ok {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", tt.path, raw, ok, tt.raw, tt.ok)
		}
	}
}

// TestMatchConcurrent lets the race detector check that an Expr may be shared.
func TestMatchConcurrent(t *testing.T) {
	doc := readCluster(t)
	e, err := Parse(`monitor.nodes.n2.frozen=0 and monitor.nodes.db1\.example\.com.status~^id`)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				if !e.Match(doc) {
					t.Error("no match")
					return
				}
				_ = e.String()
			}
		})
	}
	wg.Wait()
}
