package monitor

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"
)

// Boot ids name one run of a node: 16 hex digits of the run's start time
// (unix nanoseconds), a dash and 8 random hex digits. They are ordered by
// that time, so that a copy from an older run, delayed on the network, is
// never taken over the data of a newer one. Ids of the older, unordered
// form (16 random hex digits) count as older than any ordered id.

// NewBootID returns a boot id for a run starting at now, ordered after
// prev (the id of the node's previous run, when known) even if the clock
// went backwards between the runs.
func NewBootID(prev string, now time.Time) string {
	t := now.UnixNano()
	if pt, _, ok := parseBoot(prev); ok && pt >= t {
		t = pt + 1
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%016x-%s", uint64(t), hex.EncodeToString(b[:]))
}

func parseBoot(s string) (t int64, rnd string, ok bool) {
	if len(s) != 25 || s[16] != '-' {
		return 0, "", false
	}
	v, err := strconv.ParseUint(s[:16], 16, 64)
	if err != nil {
		return 0, "", false
	}
	return int64(v), s[17:], true
}

// CompareBoot orders two boot ids of one node: -1 when a is older than b,
// +1 when newer, 0 when they are equal or their order is unknown (two ids
// of the unordered form).
func CompareBoot(a, b string) int {
	if a == b {
		return 0
	}
	ta, ra, oka := parseBoot(a)
	tb, rb, okb := parseBoot(b)
	switch {
	case !oka && !okb:
		return 0
	case !oka:
		return -1
	case !okb:
		return 1
	case ta != tb:
		if ta < tb {
			return -1
		}
		return 1
	case ra < rb:
		return -1
	case ra > rb:
		return 1
	}
	return 0
}

// Digest sums up one node's data as held: the run it comes from, its
// generation and a hash of its canonical JSON. Two agents holding the
// same digest hold the same bytes. Owners send theirs to their peers; a
// peer whose copy differs asks for the whole data.
type Digest struct {
	// Boot is the boot id of the run that made the data.
	Boot string `json:"b"`
	// Gen is the data's generation.
	Gen uint64 `json:"g"`
	// Hash is the FNV-1a 64 hash of the canonical JSON.
	Hash uint64 `json:"h"`
}

// DigestOf returns the digest of a node's whole data as its owner sent it
// (canonicalized first, as the store holds it).
func DigestOf(boot string, gen uint64, data []byte) (Digest, error) {
	raw, err := Canonical(data)
	if err != nil {
		return Digest{}, err
	}
	return Digest{Boot: boot, Gen: gen, Hash: hashData(raw)}, nil
}

func hashData(raw []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(raw)
	return h.Sum64()
}

// digest returns e's digest, hashing its data once per change. Lock held.
func (e *nodeEntry) digest() Digest {
	if !e.hashed {
		e.hash, e.hashed = hashData(e.raw), true
	}
	return Digest{Boot: e.boot, Gen: e.data.Gen, Hash: e.hash}
}

// Digest returns the digest of the copy held for node (this node's own
// data for its own name).
func (s *Store) Digest(node string) (Digest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.nodes[node]
	if !ok {
		return Digest{}, false
	}
	return e.digest(), true
}

// Copy returns the copy held of node's data: boot, generation and
// canonical JSON, to send to a peer that cannot reach node.
func (s *Store) Copy(node string) (boot string, gen uint64, raw []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.nodes[node]
	if !ok {
		return "", 0, nil, false
	}
	return e.boot, e.data.Gen, e.raw, true
}

// Reasons Diverges gives for asking a peer for its whole data.
const (
	// DivergeUnknown: no copy of the node's data is held.
	DivergeUnknown = "unknown"
	// DivergeRestart: the node runs a newer boot than the copy held.
	DivergeRestart = "restart"
	// DivergeBehind: the copy held is of an older generation.
	DivergeBehind = "behind"
	// DivergeDiffers: same boot and generation, other bytes.
	DivergeDiffers = "differs"
)

// Diverges compares the copy held for node with the digest its owner
// sent, and says why the whole data is needed, or "" when the copy held
// is the same or newer (a digest overtaken by later changes).
func (s *Store) Diverges(node string, d Digest) string {
	if node == s.cfg.Name {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.refused[node]; ok && s.now().Before(until) {
		return "" // its data is over max_data: asking again brings nothing
	}
	e, ok := s.nodes[node]
	switch {
	case !ok:
		return DivergeUnknown
	case e.boot != d.Boot:
		if CompareBoot(d.Boot, e.boot) < 0 {
			return ""
		}
		return DivergeRestart
	case d.Gen > e.data.Gen:
		return DivergeBehind
	case d.Gen < e.data.Gen:
		return ""
	case e.digest().Hash != d.Hash:
		return DivergeDiffers
	}
	return ""
}
