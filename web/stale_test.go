package web_test

import (
	"testing"
)

// TestBrowserStaleInstances: when a node is dead, its instances show as
// stale (unknown, marked), never as up nor as leader, as
// monitor.services.NAME.up leaves them out.
func TestBrowserStaleInstances(t *testing.T) {
	f := newFakeAgent(t, threeNodes(), "")
	b := openPage(t, f.srv.URL+"/")
	b.waitFor("connected", jsLive)
	b.waitFor("n1 leader of web", `document.querySelector('#matrix tr[data-service="web"] td[data-node="n1"]')?.dataset.leader === "1"`)
	f.patch("n1", `[{"op":"replace","path":"/cluster/nodes/n1/state","value":"dead"}]`)
	cell := `document.querySelector('#matrix tr[data-service="web"] td[data-node="n1"]')`
	b.waitFor("n1 stale", cell+`.dataset.stale === "1"`)
	if got := eval[string](b, cell+`.dataset.avail`); got != "unknown" {
		t.Errorf("stale cell avail %q, want unknown", got)
	}
	if got := eval[string](b, cell+`.className`); got != "cell stale" {
		t.Errorf("stale cell class %q", got)
	}
	if eval[bool](b, cell+`.dataset.leader === "1"`) {
		t.Error("a dead node's instance shown as leader")
	}
	if got := eval[string](b, cell+`.textContent`); !contains(got, "unknown") || !contains(got, "last up") {
		t.Errorf("stale cell text %q", got)
	}
	b.screenshot("stale")
	f.patch("n1", `[{"op":"replace","path":"/cluster/nodes/n1/state","value":"alive"}]`)
	b.waitFor("n1 back", cell+`.dataset.leader === "1"`)
}
