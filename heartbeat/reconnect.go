package heartbeat

import (
	"context"
	"time"

	"agent/monitor"
)

func (h *Heartbeat) join(ctx context.Context) error {
	if len(h.cfg.Seeds) == 0 {
		return nil
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := h.ml.Join(h.cfg.Seeds)
		if p := h.conflict.Load(); p != nil {
			return *p
		}
		if n > 0 {
			h.log.Info("joined cluster", "cluster", h.cfg.ClusterName, "contacted", n)
			return nil
		}
		// Nobody answered yet: we may be the first node up. Keep trying
		// in the background of an otherwise working agent.
		if attempt == 1 || attempt%10 == 0 {
			h.log.Warn("no seed answered, retrying", "seeds", h.cfg.Seeds, "attempt", attempt, "err", err)
		}
		if len(h.ml.Members()) > 1 {
			return nil // someone joined us meanwhile
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if backoff < 10*time.Second {
			backoff *= 2
		}
	}
}

// rejoinDead tries, every few seconds, to join the peers failure detection
// declared dead (not those that left), and the seeds when this node has no
// peer left at all. memberlist stops gossiping to a dead node after
// GossipToTheDeadTime and never probes it again, so without this the two
// sides of a healed partition would stay apart for good, and a node whose
// peers were forgotten (past ForgetAfter) would never look for them again.
func (h *Heartbeat) rejoinDead(now time.Time) {
	h.mu.Lock()
	alone := len(h.peers) == 0
	if now.Sub(h.lastRejoin) < 2*time.Second || (len(h.gone) == 0 && !alone) {
		h.mu.Unlock()
		return
	}
	h.lastRejoin = now
	names := make([]string, 0, len(h.gone))
	for name := range h.gone {
		names = append(names, name)
	}
	h.mu.Unlock()
	members := h.store.Members()
	var addrs []string
	for _, name := range names {
		if m, ok := members[name]; ok && m.State == monitor.StateDead && m.Addr != "" {
			addrs = append(addrs, m.Addr)
		}
	}
	if alone && h.joined.Load() {
		// Not this node, and not a peer that left gracefully: joining a
		// node that is shutting down would bring it back for a moment and
		// make its leave look like a death.
		skip := map[string]bool{h.Addr(): true}
		for _, m := range members {
			if m.State == monitor.StateLeft {
				skip[m.Addr] = true
			}
		}
		for _, seed := range h.cfg.Seeds {
			if !skip[seed] {
				addrs = append(addrs, seed)
			}
		}
	}
	if len(addrs) == 0 || !h.rejoining.CompareAndSwap(false, true) {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer h.rejoining.Store(false)
		if n, err := h.ml.Join(addrs); n > 0 {
			h.log.Info("rejoined dead peers", "contacted", n)
		} else {
			h.log.Debug("dead peers still unreachable", "err", err)
		}
	}()
}
