package monitor

import (
	"testing"
)

// TestFirstPatchReplacesSections: a client that resumes across a restart
// holds the previous run's document. The new run's first patch must turn it
// into the new run's document exactly, dropping a peer and a service the new
// run does not hold, instead of leaving them in the client's copy for good.
func TestFirstPatchReplacesSections(t *testing.T) {
	old := []byte(`{"cluster":{"name":"test","nodes":{"n1":{"state":"alive"},"gone":{"state":"dead"}}},` +
		`"monitor":{"nodes":{"n1":{"gen":7},"gone":{"gen":3}},"services":{"web":{"avail":"up"}}}}`)
	s, rec, _ := newTestStore(t, "n1", nil)
	ps := patches(rec.take())
	if len(ps) != 1 {
		t.Fatalf("a new store published %d patches, want 1", len(ps))
	}
	got := applyPatch(t, old, ps[0].data)
	if canon(t, got) != canon(t, s.Document()) {
		t.Fatalf("previous run's copy after the first patch:\n%s\nwant the new run's document:\n%s", got, s.Document())
	}
}
