package orchestrator

import (
	"context"
	"sync"
	"time"
)

// Prober asks a peer for an answer now: one round trip, bounded by the
// prober's own timeout. The agent probes over the heartbeat (a memberlist
// ping), so a peer answers only while the path works both ways.
type Prober interface {
	Probe(ctx context.Context, node string) error
}

// minFailures is how many probes in a row must go unanswered, over a whole
// lease, before a peer stops counting.
const minFailures = 3

// contacts keeps, for each present peer, whether it answers the probes.
// It exists only with a Prober and quorum = true: failure detection alone
// is too slow on the minority side of a partition (a node that cannot
// reach anyone gets no confirmation of its suspicions, and memberlist then
// waits its longest suspicion timeout), and the minority must stop its
// instances before the majority starts them.
//
// A peer is out of contact when at least minFailures probes in a row went
// unanswered, the first sent at least a lease ago and the latest within
// half a lease: unanswered probes must span the lease. After this node
// itself was paused (SIGSTOP, a stall), the probes in flight across the
// pause fail, but the ones sent after it are answered, so a pause alone
// does not make the node think it is cut off.
type contacts struct {
	prober Prober
	lease  time.Duration
	every  time.Duration
	now    func() time.Time

	mu    sync.Mutex
	peers map[string]*peerContact
}

// peerContact is what the probes told of one peer. Guarded by contacts.mu.
type peerContact struct {
	inFlight  bool
	lastAck   time.Time // when the latest answered probe was sent
	failSince time.Time // when the first unanswered probe since then was sent
	lastFail  time.Time // when the latest unanswered probe was sent
	fails     int       // unanswered probes in a row
}

func newContacts(cfg Config) *contacts {
	if cfg.Prober == nil || !cfg.Quorum {
		return nil
	}
	every := cfg.Lease / 6
	if every < time.Millisecond {
		every = time.Millisecond
	}
	return &contacts{prober: cfg.Prober, lease: cfg.Lease, every: every, now: cfg.Now, peers: map[string]*peerContact{}}
}

// inContact reports whether node counts as reachable: true without
// probes, or until its probes have gone unanswered for a lease.
func (c *contacts) inContact(node string, now time.Time) bool {
	if c == nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[node]
	return p == nil || !c.out(p, now)
}

func (c *contacts) out(p *peerContact, now time.Time) bool {
	return p.fails >= minFailures && now.Sub(p.failSince) >= c.lease && now.Sub(p.lastFail) <= c.lease/2
}

// answeredWithin reports whether node answered a probe sent within d
// before now. False without probes.
func (c *contacts) answeredWithin(node string, d time.Duration, now time.Time) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[node]
	return p != nil && !p.lastAck.IsZero() && now.Sub(p.lastAck) < d
}

// run probes each peer that peers returns, every c.every, one probe in
// flight per peer, until ctx ends; it calls changed when a peer's contact
// flips. It waits for the probes in flight before it returns.
func (c *contacts) run(ctx context.Context, peers func() []string, changed func()) {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		present := peers()
		c.mu.Lock()
		keep := make(map[string]bool, len(present))
		for _, n := range present {
			keep[n] = true
			p := c.peers[n]
			if p == nil {
				p = &peerContact{}
				c.peers[n] = p
			}
			if p.inFlight {
				continue
			}
			p.inFlight = true
			wg.Add(1)
			go func(n string) {
				defer wg.Done()
				c.probe(ctx, n, changed)
			}(n)
		}
		// A peer no longer present keeps its last answer (a failover
		// start reads it) but stops accumulating failures.
		for n, p := range c.peers {
			if !keep[n] && !p.inFlight {
				p.fails, p.failSince, p.lastFail = 0, time.Time{}, time.Time{}
			}
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe runs one probe of node and records its outcome.
func (c *contacts) probe(ctx context.Context, node string, changed func()) {
	sent := c.now()
	err := c.prober.Probe(ctx, node)
	if ctx.Err() != nil {
		c.mu.Lock()
		c.peers[node].inFlight = false
		c.mu.Unlock()
		return
	}
	now := c.now()
	c.mu.Lock()
	p := c.peers[node]
	before := c.out(p, now)
	p.inFlight = false
	if err == nil {
		p.lastAck, p.fails, p.failSince, p.lastFail = sent, 0, time.Time{}, time.Time{}
	} else {
		if p.fails == 0 {
			p.failSince = sent
		}
		p.fails++
		p.lastFail = sent
	}
	after := c.out(p, now)
	c.mu.Unlock()
	if before != after {
		changed()
	}
}
