package heartbeat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"agent/internal/atomicfile"
	"agent/monitor"
)

// Reconnect timings: a dead peer is tried again after a backoff that
// starts at reconnectFirst, doubles at each failure up to reconnectMax,
// with a random part (between half and all of it) so that the nodes of a
// healed partition do not all knock at once.
const (
	reconnectFirst = time.Second
	reconnectMax   = 10 * time.Second
	// reconnectParallel bounds the attempts in flight. An attempt is a
	// UDP ping first (it costs ProbeTimeout when nobody answers), then,
	// when the peer answers, a join.
	reconnectParallel = 32
	// knownSaveEvery is how often the times peers were last seen alive
	// are brought up to date on disk.
	knownSaveEvery = 10 * time.Minute
)

// join joins the seeds at start, retrying with a backoff until one answers,
// someone joins this node, or ctx ends. It returns the name conflict found
// on the way, if any.
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
		backoff = min(2*backoff, reconnectMax)
	}
}

// knownPeer is one entry of the reconnect set: a peer seen alive, or a
// seed (no name).
type knownPeer struct {
	Name string    `json:"name,omitempty"`
	Addr string    `json:"addr"`
	Seen time.Time `json:"seen"` // last seen alive (zero for a seed never seen)

	seed    bool
	next    time.Time // next attempt, when dead
	backoff time.Duration
	trying  bool // an attempt is in flight
}

// key names the entry in attempts: the peer's name, or the seed's address.
func (p *knownPeer) key() string {
	if p.seed {
		return "seed " + p.Addr
	}
	return p.Name
}

// reconnectSet is the set of peers this node keeps trying when they are
// dead: those it has seen alive (persisted), and the seeds. Left peers and
// forgotten ones are removed; the set is bounded, the peers seen alive
// longest ago dropped first. Guarded by Heartbeat.mu.
type reconnectSet struct {
	path   string
	max    int
	peers  map[string]*knownPeer // by name
	seedsL []*knownPeer
	dirty  bool
	saving bool // a write is in flight
	saved  time.Time
}

// peersFile is the format of the reconnect set on disk.
type peersFile struct {
	Version int          `json:"version"`
	Peers   []*knownPeer `json:"peers"`
}

// loadReconnectSet reads the set kept at path (none when path is empty or
// the file does not exist yet). The peers read are due for an attempt at
// once: a node that restarts looks for them even when its seeds are down.
// A damaged file gives an empty set and an error to log.
func loadReconnectSet(path string, max int, now time.Time) (*reconnectSet, error) {
	s := &reconnectSet{path: path, max: max, peers: map[string]*knownPeer{}, saved: now}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read reconnect set: %w", err)
	}
	var f peersFile
	if err := json.Unmarshal(data, &f); err != nil {
		return s, fmt.Errorf("%s: damaged reconnect set: %v", path, err)
	}
	for _, p := range f.Peers {
		if p == nil || p.Name == "" || p.Addr == "" {
			continue
		}
		p.backoff = reconnectFirst
		s.peers[p.Name] = p
	}
	s.evict()
	return s, nil
}

// seeds adds the seeds, but this node's own address.
func (s *reconnectSet) seeds(addrs []string, self string) {
	for _, a := range addrs {
		if a != self {
			s.seedsL = append(s.seedsL, &knownPeer{Addr: a, seed: true, backoff: reconnectFirst})
		}
	}
}

// seen records name alive at addr.
func (s *reconnectSet) seen(name, addr string, now time.Time) {
	p := s.peers[name]
	if p == nil {
		p = &knownPeer{Name: name}
		s.peers[name] = p
		s.dirty = true
	}
	if p.Addr != addr {
		p.Addr = addr
		s.dirty = true
	}
	p.Seen, p.backoff, p.next = now, reconnectFirst, time.Time{}
	s.evict()
}

// died records name dead: last seen alive now, first attempt soon.
func (s *reconnectSet) died(name, addr string, now time.Time) {
	p := s.peers[name]
	if p == nil {
		p = &knownPeer{Name: name, Addr: addr}
		s.peers[name] = p
	}
	p.Seen, p.backoff = now, reconnectFirst
	p.next = now.Add(jitter(p.backoff))
	s.dirty = true
	s.evict()
}

// remove drops name (left, or forgotten); it reports whether it was there.
func (s *reconnectSet) remove(name string) bool {
	if _, ok := s.peers[name]; !ok {
		return false
	}
	delete(s.peers, name)
	s.dirty = true
	return true
}

// evict drops the entries seen alive longest ago while the set is over
// its bound.
func (s *reconnectSet) evict() {
	if len(s.peers) <= s.max {
		return
	}
	all := make([]*knownPeer, 0, len(s.peers))
	for _, p := range s.peers {
		all = append(all, p)
	}
	slices.SortFunc(all, func(a, b *knownPeer) int { return a.Seen.Compare(b.Seen) })
	for _, p := range all[:len(all)-s.max] {
		delete(s.peers, p.Name)
	}
	s.dirty = true
}

// jitter returns between half and all of d.
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// reconnect starts an attempt for each dead peer of the reconnect set that
// is due, and for each seed when this node is alone, and drops the peers
// dead longer than ReconnectTimeout. Main loop.
func (h *Heartbeat) reconnect(now time.Time) {
	members := h.store.Members()
	h.mu.Lock()
	s := h.known
	busy := 0
	var due []*knownPeer
	consider := func(p *knownPeer) {
		switch {
		case p.trying:
			busy++
		case !p.next.After(now):
			due = append(due, p)
		}
	}
	for name, p := range s.peers {
		if _, alive := h.peers[name]; alive {
			continue
		}
		if now.Sub(p.Seen) > h.cfg.ReconnectTimeout {
			h.log.Info("peer dead too long, no longer tried", "node", name, "addr", p.Addr, "last_seen", p.Seen)
			delete(s.peers, name)
			s.dirty = true
			continue
		}
		if p.next.IsZero() {
			p.next = now // restored from disk, or alive before
		}
		consider(p)
	}
	// The seeds are tried when this node is alone (and its first join is
	// over: until then join tries them): the peers seen alive are tried
	// by name above, and a seed named by a host name would never match a
	// member's address, to be joined again and again.
	if h.joined.Load() && len(h.peers) == 0 {
		taken := map[string]bool{h.Addr(): true}
		// A peer that left is not looked for, even at a seed address:
		// joining a node that is shutting down would bring it back for
		// a moment and make its leave look like a death.
		for _, m := range members {
			if m.State == monitor.StateLeft {
				taken[m.Addr] = true
			}
		}
		for _, p := range s.seedsL {
			if !taken[p.Addr] {
				consider(p)
			}
		}
	}
	slices.SortFunc(due, func(a, b *knownPeer) int { return a.next.Compare(b.next) })
	if room := reconnectParallel - busy; len(due) > room {
		due = due[:max(room, 0)]
	}
	if h.closed {
		due = nil
	}
	type attempt struct{ key, name, addr string }
	var start []attempt
	for _, p := range due {
		p.trying = true
		h.sendWG.Add(1)
		start = append(start, attempt{p.key(), p.Name, p.Addr})
	}
	h.mu.Unlock()
	for _, a := range start {
		go func() {
			defer h.sendWG.Done()
			ok := h.reach(a.name, a.addr)
			h.work.push(task{kind: taskAttempt, name: a.key, ok: ok})
		}()
	}
}

// reach tries to bring the peer at addr back: a ping (by name, so that
// another node now at that address does not answer for it), then, when it
// answers, a join, which merges the two sides' views.
func (h *Heartbeat) reach(name, addr string) bool {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		h.log.Debug("reconnect: bad address", "node", name, "addr", addr, "err", err)
		return false
	}
	if _, err := h.ml.Ping(name, ua); err != nil {
		return false
	}
	n, err := h.ml.Join([]string{addr})
	if n == 0 {
		h.log.Debug("reconnect: peer answers pings but the join failed", "node", name, "addr", addr, "err", err)
		return false
	}
	h.log.Info("reconnected to a dead peer", "node", name, "addr", addr)
	return true
}

// attempted records the end of an attempt: after a failure the next one
// waits twice as long, up to reconnectMax. Main loop.
func (h *Heartbeat) attempted(key string, ok bool) {
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	var p *knownPeer
	for _, q := range h.known.seedsL {
		if q.key() == key {
			p = q
		}
	}
	if p == nil {
		p = h.known.peers[key]
	}
	if p == nil {
		return // forgotten or left meanwhile
	}
	p.trying = false
	if ok {
		p.backoff = reconnectFirst
	} else {
		p.backoff = min(2*p.backoff, reconnectMax)
	}
	p.next = now.Add(jitter(p.backoff))
}

// saveKnown writes the reconnect set when it changed (at most once a
// second), when the times last seen alive are due for an update, or when
// forced. The write (and its fsync, which a busy disk can make slow) runs
// in a goroutine of its own, one at a time, so that the main loop never
// waits on the disk; forced (Close, after the loops), it runs in place.
func (h *Heartbeat) saveKnown(force bool) {
	if h.cfg.PeersFile == "" {
		return
	}
	now := h.cfg.Now()
	h.mu.Lock()
	s := h.known
	stale := now.Sub(s.saved) >= knownSaveEvery
	if !force && (h.closed || s.saving || (!stale && (!s.dirty || now.Sub(s.saved) < time.Second))) {
		h.mu.Unlock()
		return
	}
	for name := range h.peers {
		if p := s.peers[name]; p != nil {
			p.Seen = now
		}
	}
	f := peersFile{Version: 1}
	for _, p := range s.peers {
		c := *p
		f.Peers = append(f.Peers, &c)
	}
	s.dirty, s.saved = false, now
	write := func() {
		slices.SortFunc(f.Peers, func(a, b *knownPeer) int { return strings.Compare(a.Name, b.Name) })
		err := writeFileAtomic(h.cfg.PeersFile, f)
		h.mu.Lock()
		s.saving = false
		if err != nil {
			s.dirty = true
		}
		h.mu.Unlock()
		if err != nil {
			h.log.Warn("reconnect set not saved", "file", h.cfg.PeersFile, "err", err)
		}
	}
	s.saving = true
	if force {
		h.mu.Unlock()
		write()
		return
	}
	h.sendWG.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.sendWG.Done()
		write()
	}()
}

// writeFileAtomic writes v as JSON in place of path, durably (package
// atomicfile).
func writeFileAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'))
}
