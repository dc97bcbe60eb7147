package heartbeat

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/internal/testutil"
)

// TestLostFirstCopyAsked: n2 loses n3's full data, sent when they met,
// and every digest n3 sends; probes are too rare and push/pull is off, so
// nothing would bring n3's data to n2 but n2 noticing that it holds
// nothing of an alive peer and asking for it.
func TestLostFirstCopyAsked(t *testing.T) {
	var mu sync.Mutex
	dropped := 0
	tweak := func(c *Config) {
		c.Tune = func(mc *memberlist.Config) {
			testutil.FastTimings(mc)
			mc.ProbeInterval = time.Hour
			mc.PushPullInterval = 0
		}
		if c.Name != "n2" {
			return
		}
		c.DropIncoming = func(msg []byte) bool {
			if len(msg) == 0 || !bytes.Contains(msg, []byte(`"n":"n3"`)) {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case msg[0] == msgDigest:
				return true
			case msg[0] == msgFull && dropped == 0:
				dropped++
				return true
			}
			return false
		}
	}
	n1 := startNode(t, "n1", 0, nil, tweak)
	seed := []string{n1.hb.Addr()}
	n2 := startNode(t, "n2", 0, seed, tweak)
	testutil.Eventually(t, 10*time.Second, func() bool { _, _, ok := n2.store.Held("n1"); return ok }, "n2 never joined")
	n3 := startNode(t, "n3", 0, seed, tweak)
	nodes := []*testNode{n1, n2, n3}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.kill()
		}
	})
	testutil.Eventually(t, 20*time.Second, func() bool {
		_, _, ok := n2.store.Held("n3")
		return ok
	}, "n2 never got n3's data; stats %+v", func() any { return n2.hb.Stats() })
	mu.Lock()
	defer mu.Unlock()
	if dropped == 0 {
		t.Fatal("n3's first full copy to n2 was not dropped: the test tested nothing")
	}
}
