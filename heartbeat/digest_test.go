package heartbeat

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/internal/testutil"
	"agent/monitor"
)

// dropper drops, at node n2, the messages its rule says, and counts them.
type dropper struct {
	mu      sync.Mutex
	on      bool
	kinds   string // message type bytes to drop
	dropped int
	kept    [][]byte // the dropped messages, to deliver later
}

func (d *dropper) drop(msg []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.on || len(msg) == 0 || !strings.ContainsRune(d.kinds, rune(msg[0])) {
		return false
	}
	d.dropped++
	d.kept = append(d.kept, append([]byte(nil), msg...))
	return true
}

func (d *dropper) set(on bool) {
	d.mu.Lock()
	d.on = on
	d.mu.Unlock()
}

// noPushPull disables memberlist's push/pull, so that only the digests
// can repair a loss.
func noPushPull(c *memberlist.Config) {
	testutil.FastTimings(c)
	c.PushPullInterval = 0
}

// lossyCluster starts three nodes, n2 dropping what d says, with tune on
// every node's memberlist.
func lossyCluster(t *testing.T, d *dropper, tune func(*memberlist.Config), more func(*Config)) []*testNode {
	return startCluster(t, 3, func(c *Config) {
		c.Tune = tune
		if more != nil {
			more(c)
		}
		if c.Name == "n2" {
			c.DropIncoming = d.drop
		}
	})
}

// loseLastDelta changes n1's data with n2 dropping deltas, waits until n3
// has the change (so the delta went out), and stops dropping.
func loseLastDelta(t *testing.T, nodes []*testNode, d *dropper) uint64 {
	t.Helper()
	d.mu.Lock()
	d.on, d.dropped, d.kept = true, 0, nil
	d.mu.Unlock()
	gen, _, _ := nodes[0].store.UpdateLocal("cli", func(nd *monitor.NodeData) { nd.Labels["last"] = fmt.Sprint("lost", nd.Gen) })
	testutil.Eventually(t, 30*time.Second, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return holds(nodes[2], "n1", gen) && d.dropped > 0
	}, "the delta never went out, or n2 never dropped it")
	d.set(false)
	if holds(nodes[1], "n1", gen) {
		t.Fatal("n2 holds the change it dropped")
	}
	return gen
}

// TestLostLastDeltaRepairedByDigest: the last delta of a burst is lost and
// nothing follows it; with push/pull off, the digest n1 sends after its
// last change makes n2 ask for the data.
func TestLostLastDeltaRepairedByDigest(t *testing.T) {
	d := &dropper{kinds: string(msgDelta)}
	nodes := lossyCluster(t, d, noPushPull, nil)
	gen := loseLastDelta(t, nodes, d)
	testutil.Eventually(t, 30*time.Second, func() bool { return holds(nodes[1], "n1", gen) },
		"n2 never repaired the lost delta")
	waitConverged(t, nodes)
	testutil.Eventually(t, 10*time.Second, func() bool {
		s := nodes[1].hb.Stats()
		return s.Resyncs > 0 && s.Divergences > 0
	}, "repair not counted: %+v", func() any { return nodes[1].hb.Stats() })
	if ids := fmt.Sprint(nodes[1].bus.eventIDs()); !strings.Contains(ids, "peer_resync:n1") {
		t.Errorf("no peer_resync event on n2: %s", ids)
	}
}

// TestLostDigestRepairedByAcks: the delta and the digests that follow it
// are lost; the digest on the acks of memberlist's probes repairs it.
func TestLostDigestRepairedByAcks(t *testing.T) {
	d := &dropper{kinds: string([]byte{msgDelta, msgDigest})}
	nodes := lossyCluster(t, d, noPushPull, nil)
	gen := loseLastDelta(t, nodes, d)
	d.set(true) // the trailing digests too, and for good
	testutil.Eventually(t, 30*time.Second, func() bool { return holds(nodes[1], "n1", gen) },
		"n2 never repaired the lost delta from ack payloads")
}

// TestPushPullRaceIsNoRepair: push/pull brings n1's newer data while the
// delta for it is still on its way. That is no loss: nothing is counted
// and no peer_resync is emitted once the delta lands within the grace.
// When no delta comes, the push/pull data is taken after the grace, as a
// repair.
func TestPushPullRaceIsNoRepair(t *testing.T) {
	d := &dropper{kinds: string([]byte{msgDelta, msgDigest})}
	nodes := lossyCluster(t, d, noPushPull, func(c *Config) { c.DigestGrace = 2 * time.Second })
	n2 := nodes[1]
	state := func() []byte { return (*delegate)(nodes[0].hb).LocalState(false) }

	// The race: the push/pull data first, then the delayed delta.
	gen := loseLastDelta(t, nodes, d)
	d.set(true)
	before := n2.hb.Stats()
	(*delegate)(n2.hb).MergeRemoteState(state(), false)
	d.mu.Lock()
	var delta *deltaMsg
	for _, m := range d.kept {
		if _, v, err := decodeMessage(m); err == nil {
			if dm, ok := v.(*deltaMsg); ok && dm.Node == "n1" && dm.Gen == gen {
				delta = dm
			}
		}
	}
	d.mu.Unlock()
	if delta == nil {
		t.Fatal("n1's dropped delta not found")
	}
	if res, why := n2.store.ApplyDelta(delta.Node, delta.Boot, delta.Base, delta.Gen, delta.Ops); res != monitor.Applied {
		t.Fatalf("the delayed delta: %v %s", res, why)
	}
	time.Sleep(2500 * time.Millisecond) // past the grace: the point is what did not happen
	if after := n2.hb.Stats(); after.Resyncs != before.Resyncs || after.FullApplied != before.FullApplied {
		t.Errorf("a race with a delta in flight counted as a repair: before %+v after %+v", before, after)
	}
	if ids := fmt.Sprint(n2.bus.eventIDs()); strings.Contains(ids, "peer_resync") {
		t.Errorf("peer_resync on a race: %s", ids)
	}

	// A real loss: no delta follows the push/pull data.
	d.set(false)
	gen = loseLastDelta(t, nodes, d)
	d.set(true)
	(*delegate)(n2.hb).MergeRemoteState(state(), false)
	testutil.Eventually(t, 30*time.Second, func() bool { return holds(n2, "n1", gen) },
		"push/pull data never taken after the grace")
	testutil.Eventually(t, 10*time.Second, func() bool { return n2.hb.Stats().Resyncs > before.Resyncs },
		"the repair was not counted")
	if ids := fmt.Sprint(n2.bus.eventIDs()); !strings.Contains(ids, "peer_resync:n1") {
		t.Errorf("no peer_resync for the repair: %s", ids)
	}
}

// TestOlderBootIgnored: a full copy from n1's previous run, delivered
// late, never replaces what n2 holds of the current one.
func TestOlderBootIgnored(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	n2 := nodes[1]
	gen, _, _ := n2.store.Held("n1")
	late := encode(msgFull, fullMsg{Node: "n1", Boot: monitor.NewBootID("", time.Unix(1, 0)), Gen: gen + 100,
		Data: []byte(fmt.Sprintf(`{"gen":%d,"status":"idle","frozen":0,"labels":{"old":"run"},"services":{}}`, gen+100))})
	n2.hb.receive(late)
	d, _ := n2.store.Node("n1")
	if d.Labels["old"] == "run" {
		t.Fatal("a full copy of an older run replaced the current data")
	}
}
