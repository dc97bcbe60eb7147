package heartbeat

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/internal/faultnet"
	"agent/internal/testutil"
	"agent/monitor"
)

// bigLabel changes n's data by a value too large for one UDP packet: the
// delta goes through the peer queues (TCP).
func bigLabel(t *testing.T, n *testNode, v string) uint64 {
	t.Helper()
	gen, _, err := n.store.UpdateLocal("cli", func(d *monitor.NodeData) { d.Labels["big"] = v + strings.Repeat("x", 3000) })
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

// holds says whether n holds owner's data at gen or later.
func holds(n *testNode, owner string, gen uint64) bool {
	g, _, ok := n.store.Held(owner)
	return ok && g >= gen
}

// TestBlackholedPeerDelaysNobody: n4 is cut off but not judged dead (the
// suspicion never expires here), and a stream dial to it hangs as long as
// the test runs. Large deltas from n1 must still reach n2 and n3, and n4's
// queue must stay within its bound.
func TestBlackholedPeerDelaysNobody(t *testing.T) {
	fn := faultnet.New(faultSeed(t), faultnet.Options{})
	defer fn.Close()
	nodes := startCluster(t, 4, func(c *Config) {
		c.QueueLimit = 3
		c.Tune = func(mc *memberlist.Config) {
			testutil.FastTimings(mc)
			mc.SuspicionMult = 1000
			mc.TCPTimeout = time.Hour
			fn.Install(mc)
		}
	})
	n1 := nodes[0]
	fn.Isolate("n4")
	var gen uint64
	for i := range 8 {
		gen = bigLabel(t, n1, string(rune('a'+i)))
		for _, n := range nodes[1:3] {
			testutil.Eventually(t, 30*time.Second, func() bool { return holds(n, "n1", gen) },
				"%s never got n1's gen %d while n4 is a black hole", n.name, gen)
		}
	}
	n1.hb.mu.Lock()
	q := n1.hb.queues["n4"]
	queued := len(q.items)
	n1.hb.mu.Unlock()
	if queued > 3 {
		t.Errorf("n4's queue holds %d messages, limit 3", queued)
	}
	if s := n1.hb.Stats(); s.QueueOverflows == 0 {
		t.Errorf("n4's queue never overflowed: %+v", s)
	}
	if holds(nodes[3], "n1", gen) {
		t.Error("n4, cut off, holds n1's last data")
	}
}

// TestQueueDiesWithPeer: when a peer is judged dead its queue goes, with
// what it held; when it is back it gets a new queue and the data whole.
func TestQueueDiesWithPeer(t *testing.T) {
	fn := faultnet.New(faultSeed(t), faultnet.Options{})
	defer fn.Close()
	nodes := startCluster(t, 3, func(c *Config) {
		c.Tune = func(mc *memberlist.Config) {
			testutil.FastTimings(mc)
			mc.TCPTimeout = time.Hour // a dial to n3 hangs until Close
			fn.Install(mc)
		}
	})
	n1 := nodes[0]
	fn.Isolate("n3")
	bigLabel(t, n1, "a")
	bigLabel(t, n1, "b")
	testutil.Eventually(t, 30*time.Second, func() bool {
		n1.hb.mu.Lock()
		defer n1.hb.mu.Unlock()
		_, queued := n1.hb.queues["n3"]
		return n1.store.Members()["n3"].State == monitor.StateDead && !queued
	}, "n3's queue outlived its death")
	fn.Heal()
	gen := bigLabel(t, n1, "c")
	waitConverged(t, nodes)
	if !holds(nodes[2], "n1", gen) {
		t.Fatal("n3 back without n1's data")
	}
}

func TestSuperseded(t *testing.T) {
	var c counters
	delta := outMsg{kind: msgDelta, msg: []byte("d")}
	leave := outMsg{kind: msgLeave, msg: []byte("l")}
	relay := outMsg{kind: msgFull, of: "n9", why: "gap"}
	items := []outMsg{delta, {kind: msgFull, why: "gap"}, relay, leave, delta}
	got := superseded(items, outMsg{kind: msgFull}, &c)
	if len(got) != 3 || got[0].of != "n9" || got[1].kind != msgLeave || got[2].kind != msgFull || got[2].of != "" || got[2].why != "gap" {
		t.Fatalf("superseded = %+v, want the relayed copy, the leave, then one full copy with the reason gap", got)
	}
	if n := c.queueSuperseded.Load(); n != 3 {
		t.Fatalf("superseded count %d, want 3", n)
	}
	got = superseded([]outMsg{{kind: msgFull, why: "gap"}, delta}, outMsg{kind: msgFull, why: "digest"}, &c)
	if len(got) != 1 || got[0].why != "digest" {
		t.Fatalf("newer reason lost: %+v", got)
	}
	// A relayed copy replaces the older copy of the same node only.
	got = superseded([]outMsg{relay, delta}, outMsg{kind: msgFull, of: "n9"}, &c)
	if len(got) != 2 || got[0].kind != msgDelta || got[1].of != "n9" || got[1].why != "gap" {
		t.Fatalf("relayed copy: %+v", got)
	}
}
