package monitor

import (
	"encoding/json"
	"testing"
	"time"
)

// bootAt is an ordered boot id of a run started at second sec.
func bootAt(sec int64) string { return NewBootID("", time.Unix(sec, 0)) }

func TestBootOrder(t *testing.T) {
	early, late := bootAt(100), bootAt(200)
	tests := []struct {
		a, b string
		want int
	}{
		{early, late, -1},
		{late, early, 1},
		{early, early, 0},
		{"0123456789abcdef", early, -1}, // the unordered form is older
		{early, "0123456789abcdef", 1},
		{"0123456789abcdef", "fedcba9876543210", 0}, // two unordered: unknown
		{"", early, -1},
	}
	for _, tt := range tests {
		if got := CompareBoot(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareBoot(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	// Two runs started in the same nanosecond are still ordered, one way.
	a, b := NewBootID("", time.Unix(5, 0)), NewBootID("", time.Unix(5, 0))
	if a != b && CompareBoot(a, b) == 0 {
		t.Errorf("%s and %s not ordered", a, b)
	}
	if CompareBoot(a, b) != -CompareBoot(b, a) {
		t.Errorf("order of %s and %s not antisymmetric", a, b)
	}
}

func TestBootAfterPreviousRun(t *testing.T) {
	prev := bootAt(1000)
	// The clock went back a minute between the runs.
	next := NewBootID(prev, time.Unix(940, 0))
	if CompareBoot(next, prev) != 1 {
		t.Fatalf("boot %s after %s with the clock set back: not newer", next, prev)
	}
}

func TestBootPersisted(t *testing.T) {
	var saved PersistentState
	s, _, _ := newTestStore(t, "n1", func(c *Config) {
		c.Persist = func(st PersistentState) error { saved = st; return nil }
	})
	if saved.Boot != s.Boot() {
		t.Fatalf("saved boot %q, want %q", saved.Boot, s.Boot())
	}
	again, _, _ := newTestStore(t, "n1", func(c *Config) {
		c.Restored = saved
		c.Now = func() time.Time { return time.Unix(1, 0) } // clock far behind
	})
	if CompareBoot(again.Boot(), s.Boot()) != 1 {
		t.Fatalf("restarted boot %s not after %s", again.Boot(), s.Boot())
	}
}

func TestDiverges(t *testing.T) {
	s, _, _ := newTestStore(t, "n1", nil)
	p := newPeer(t, s, "p1")
	own, _ := p.Digest("p1")
	if held, _ := s.Digest("p1"); held != own {
		t.Fatalf("held digest %+v, owner's %+v", held, own)
	}
	if why := s.Diverges("p1", own); why != "" {
		t.Fatalf("same data diverges: %q", why)
	}
	if why := s.Diverges("p2", own); why != DivergeUnknown {
		t.Fatalf("unknown node: %q", why)
	}
	if why := s.Diverges("n1", own); why != "" {
		t.Fatalf("own name: %q", why)
	}
	// The owner changes: the held copy is behind until the delta lands.
	base, gen, ops, _ := peerDelta(t, p, func(d *NodeData) { d.Labels["x"] = "1" })
	newer, _ := p.Digest("p1")
	if newer.Hash == own.Hash || newer.Gen != gen {
		t.Fatalf("digest after a change %+v, before %+v", newer, own)
	}
	if why := s.Diverges("p1", newer); why != DivergeBehind {
		t.Fatalf("behind: %q", why)
	}
	if res, why := s.ApplyDelta("p1", p.Boot(), base, gen, ops); res != Applied {
		t.Fatalf("ApplyDelta = %v %s", res, why)
	}
	if why := s.Diverges("p1", newer); why != "" {
		t.Fatalf("after the delta: %q", why)
	}
	if why := s.Diverges("p1", own); why != "" {
		t.Fatalf("an older digest: %q", why)
	}
	// Same gen, other bytes: something went wrong; ask for the data.
	bad := newer
	bad.Hash++
	if why := s.Diverges("p1", bad); why != DivergeDiffers {
		t.Fatalf("other bytes: %q", why)
	}
	// A newer run diverges; an older one does not.
	if why := s.Diverges("p1", Digest{Boot: NewBootID(p.Boot(), time.Now()), Gen: 1}); why != DivergeRestart {
		t.Fatalf("newer run: %q", why)
	}
	if why := s.Diverges("p1", Digest{Boot: "0123456789abcdef", Gen: 99}); why != "" {
		t.Fatalf("older run: %q", why)
	}
}

func TestDigestFollowsData(t *testing.T) {
	s, _, _ := newTestStore(t, "n1", nil)
	before, _ := s.Digest("n1")
	if _, _, err := s.UpdateLocal("cli", func(d *NodeData) { d.Labels["a"] = "b" }); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Digest("n1")
	_, raw, _ := s.Local()
	if after == before || after.Hash != hashData(raw) {
		t.Fatalf("digest %+v after a change (before %+v), hash of data %d", after, before, hashData(raw))
	}
	var round Digest
	b, _ := json.Marshal(after)
	if err := json.Unmarshal(b, &round); err != nil || round != after {
		t.Fatalf("digest JSON %s round trip: %+v, %v", b, round, err)
	}
}
