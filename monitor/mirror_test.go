package monitor

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
)

// Awkward keys: JSON pointer escapes and JSON string escapes. Not "":
// json-patch v5 cannot apply "/a//b" (an empty key inside an object), so a
// record touching such a key could not be applied by a subscriber using it.
var mirrorKeys = []string{"zone", "a/b", "c~d", "~1", "k8s.io/zone", "é", `q"uote`, "<tag>"}

// mirrorPeer is a peer as a receiver sees it: the peer's own store and what
// its heartbeat last sent.
type mirrorPeer struct {
	name    string
	store   *Store
	persist *persisted
	sentGen uint64
	sentRaw []byte
}

func (p *mirrorPeer) start(t *testing.T) {
	t.Helper()
	p.store, _, _ = newTestStore(t, p.name, func(c *Config) {
		c.Restored = p.persist.get()
		c.GenBlock = 5
		c.Persist = p.persist.save
	})
	p.sentGen, p.sentRaw, _ = p.store.Local()
}

// randomChange changes node data at random; sometimes it changes nothing.
func randomChange(rng *rand.Rand) func(d *NodeData) {
	key := mirrorKeys[rng.IntN(len(mirrorKeys))]
	switch rng.IntN(9) {
	case 0:
		return func(d *NodeData) {}
	case 1:
		return func(d *NodeData) { d.Labels[key] = fmt.Sprint(rng.IntN(3)) }
	case 2:
		return func(d *NodeData) { delete(d.Labels, key) }
	case 3:
		st := []string{StatusInit, StatusIdle, StatusRejoin, StatusShuttingDown}[rng.IntN(4)]
		return func(d *NodeData) { d.Status = st }
	case 4:
		f := []int64{0, 0, 1795341601, 1795341700}[rng.IntN(4)]
		return func(d *NodeData) { d.Frozen = f }
	case 5:
		l, m := float64(rng.IntN(30))/10, rng.IntN(100)
		return func(d *NodeData) { d.Stats = Stats{Load15m: l, MemAvailPct: m} }
	case 6:
		return func(d *NodeData) { delete(d.Services, key) }
	default:
		avail := []string{"up", "down", "warn"}[rng.IntN(3)]
		ms := []string{"idle", "starting", "ready", "start failed"}[rng.IntN(4)]
		return func(d *NodeData) {
			i := d.Services[key]
			i.Avail = avail
			i.Monitor.Status = ms
			if rng.IntN(2) == 0 {
				i.Monitor.Placement = "leader"
			}
			d.Services[key] = i
		}
	}
}

// TestMirror keeps a mirror document by applying every published patch in
// order, from an empty document before the store exists, and checks after
// every random change that it equals the store's document (SPEC 4: the
// patches applied to a snapshot give exactly the later document).
func TestMirror(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			testMirror(t, seed, 400)
		})
	}
}

func testMirror(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 42))
	s, rec, clk := newTestStore(t, "n1", func(c *Config) { c.Labels = map[string]string{"a/b": "1"} })
	mirror := []byte(`{"cluster":{"name":"test","nodes":{}},"monitor":{"nodes":{},"services":{}}}`)
	var peers []*mirrorPeer
	for _, name := range []string{"p1", "p/2", "p~3"} {
		peers = append(peers, &mirrorPeer{name: name, persist: &persisted{}})
	}
	for _, p := range peers {
		p.start(t)
	}
	results := map[string]int{}

	// full sends p's whole data to s, as after a NeedFull.
	full := func(p *mirrorPeer, why string) {
		gen, raw, _ := p.store.Local()
		taken, err := s.ApplyFull(p.name, p.store.Boot(), gen, raw, why)
		if err != nil {
			t.Fatalf("ApplyFull(%s): %v", p.name, err)
		}
		if taken {
			results["full"]++
		}
		p.sentGen, p.sentRaw = gen, raw
	}
	// send sends p's changes since its last send, as its heartbeat does.
	send := func(p *mirrorPeer, lose bool) {
		gen, raw, _ := p.store.Local()
		if gen == p.sentGen {
			return
		}
		ops, err := Diff(p.sentRaw, raw, "")
		if err != nil {
			t.Fatal(err)
		}
		base := p.sentGen
		p.sentGen, p.sentRaw = gen, raw
		if lose {
			results["lost"]++
			return
		}
		res, why := s.ApplyDelta(p.name, p.store.Boot(), base, gen, ops)
		results[[]string{"applied", "stale", "need_full "}[res]+why]++
		if res == NeedFull {
			full(p, why)
		}
	}

	for _, p := range peers {
		full(p, "")
	}
	for step := range steps {
		clk.Advance(1)
		p := peers[rng.IntN(len(peers))]
		before := s.Document()
		localGen, _, _ := s.Local()
		what := ""
		switch rng.IntN(12) {
		case 0, 1, 2:
			what = "local change"
			gen, changed, err := s.UpdateLocal("cli", randomChange(rng))
			if err != nil {
				t.Fatal(err)
			}
			if want := localGen + map[bool]uint64{true: 1}[changed]; gen != want {
				t.Fatalf("step %d: local gen %d -> %d (changed %v)", step, localGen, gen, changed)
			}
		case 3, 4, 5:
			what = "peer change"
			if _, _, err := p.store.UpdateLocal("cli", randomChange(rng)); err != nil {
				t.Fatal(err)
			}
			if rng.IntN(3) > 0 { // else coalesced with the next
				send(p, rng.IntN(15) == 0)
			}
		case 6:
			what = "peer restart"
			p.start(t)
			if _, _, err := p.store.UpdateLocal("", func(d *NodeData) { d.Status = StatusIdle }); err != nil {
				t.Fatal(err)
			}
			p.sentGen = 0 // the new run has sent nothing
			gen, _, _ := p.store.Local()
			res, why := s.ApplyDelta(p.name, p.store.Boot(), p.sentGen, gen, json.RawMessage(`[]`))
			results[[]string{"applied", "stale", "need_full "}[res]+why]++
			if res == NeedFull {
				full(p, why)
			}
		case 7:
			what = "bad delta"
			held, _, ok := s.Held(p.name)
			if ok {
				res, why := s.ApplyDelta(p.name, p.store.Boot(), held, held+1,
					json.RawMessage(fmt.Sprintf(`[{"op":"replace","path":"/gen","value":%d},{"op":"remove","path":"/labels/nope"}]`, held+1)))
				if res != NeedFull || why != "apply_failed" {
					t.Fatalf("step %d: bad delta: %v %q", step, res, why)
				}
				if string(s.Document()) != string(before) {
					t.Fatalf("step %d: bad delta half-applied", step)
				}
			}
		case 8:
			what = "forget"
			s.Forget(p.name, "timeout")
			if rng.IntN(2) == 0 {
				full(p, "")
			}
		case 9:
			what = "member"
			node := []string{"n1", peers[0].name, peers[1].name, peers[2].name, "m/4~"}[rng.IntN(5)]
			state := []string{StateAlive, StateSuspect, StateDead, StateLeft}[rng.IntN(4)]
			s.SetMember(node, state, fmt.Sprintf("10.0.0.%d:10000", rng.IntN(3)))
		case 10:
			what = "service"
			name := mirrorKeys[rng.IntN(len(mirrorKeys))]
			var raw json.RawMessage
			if rng.IntN(3) > 0 {
				raw = json.RawMessage(fmt.Sprintf(`{"avail":"up","overall":"up","up":[%q],"frozen":"thawed"}`, peers[rng.IntN(3)].name))
			}
			if err := s.SetService(name, raw); err != nil {
				t.Fatal(err)
			}
		case 11:
			what = "resync all"
			for _, q := range peers {
				send(q, false)
			}
		}
		recs := rec.take()
		for _, r := range recs {
			if r.kind == KindPatch {
				mirror = applyPatch(t, mirror, r.data)
			}
		}
		if got, want := canon(t, mirror), canon(t, s.Document()); got != want {
			t.Fatalf("step %d (%s): mirror\n%s\nwant\n%s\nrecords %s", step, what, got, want, recs)
		}
	}
	// Once every peer's last changes are sent, the held copies are the
	// peers' own data.
	for _, p := range peers {
		if _, _, ok := s.Held(p.name); !ok {
			full(p, "")
		}
		send(p, false)
		_, raw, _ := p.store.Local()
		n, _ := s.Node(p.name)
		got, _ := marshalCanonical(n)
		if string(got) != string(raw) {
			t.Fatalf("held copy of %s = %s, want %s", p.name, got, raw)
		}
	}
	t.Logf("outcomes: %v", results)
}
