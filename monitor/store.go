package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// Record kinds the store publishes; the same names as package events uses
// (the agent's tests check they agree).
const (
	KindPatch = "patch"
	KindEvent = "event"
)

// DefaultMaxData is the default bound of one node's monitor data: the
// same on every node.
const DefaultMaxData = 1 << 20

// refuseLogEvery bounds the log lines about one peer's data refused for
// its size; refuseBackoff is how long the store then ignores that peer's
// deltas rather than ask for its whole data again and again.
const (
	refuseLogEvery = time.Minute
	refuseBackoff  = 30 * time.Second
)

// ErrDataTooLarge is returned for a node's data over Config.MaxData.
var ErrDataTooLarge = errors.New("node data over the max_data limit")

// PublishFunc publishes one record on the event bus: nodename is the node
// whose change it is (patch) or this node (event); data is the record's data.
type PublishFunc func(nodename, kind string, data json.RawMessage)

// PersistentState is what a node keeps across restarts: its freeze, and a
// reserved generation so that its gen never goes backwards in anyone's view.
type PersistentState struct {
	// Frozen is the node's frozen time (0: thawed).
	Frozen int64 `json:"frozen"`
	// GenReserved is a generation the node has not reached yet; after a
	// restart it starts counting from there.
	GenReserved uint64 `json:"gen_reserved"`
	// QuorumMembers are the nodes counted in this node's quorum
	// high-water mark (NodeData.Quorum.HWM), kept so that a restart does
	// not forget the cluster's size.
	QuorumMembers []string `json:"quorum_members,omitempty"`
	// Boot is the boot id of the run that saved the state: the next run's
	// id is ordered after it, whatever the clock says.
	Boot string `json:"boot,omitempty"`
}

// Config configures a Store.
type Config struct {
	// Name is this node's name.
	Name string
	// ClusterName is cluster.name.
	ClusterName string
	// Publish receives one patch record per change and the node events.
	Publish PublishFunc
	// Labels are the node's labels at start.
	Labels map[string]string
	// Restored is the state kept from the previous run (zero if none).
	Restored PersistentState
	// GenBlock is how many generations are reserved at a time; default 10000.
	GenBlock uint64
	// Persist saves the state durably; called when the freeze changes or a
	// new block of generations is reserved, before the change is published,
	// without the store lock (readers and peers' updates go on) and one
	// call at a time. May be nil.
	Persist func(PersistentState) error
	// MaxData bounds one node's data, in bytes of its canonical JSON; 0
	// means DefaultMaxData. A local change that would pass it is refused
	// with ErrDataTooLarge; a peer's data over it is refused on receipt.
	MaxData int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Result says what the store did with a peer's delta.
type Result int

// Results of ApplyDelta.
const (
	// Applied: the delta moved the held copy to its generation.
	Applied Result = iota
	// Stale: the store already holds that generation or a newer one.
	Stale
	// NeedFull: the delta could not be applied (unknown peer, new boot,
	// gap, or failed operations); the caller must ask for the whole data.
	NeedFull
)

// nodeEntry is the held copy of one node's data.
type nodeEntry struct {
	raw  []byte // canonical JSON
	data NodeData
	boot string

	hash   uint64 // of raw, valid when hashed
	hashed bool
}

// set replaces the data held; the hash is computed again when asked for.
func (e *nodeEntry) set(raw []byte, d NodeData) {
	e.raw, e.data, e.hashed = raw, d, false
}

// Store holds the cluster data document. All methods are safe for
// concurrent use.
type Store struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	boot   string
	localC chan struct{}

	// localMu serializes UpdateLocal, so that it can save the persistent
	// state without mu: nothing else changes the local node's data. Lock
	// order: localMu, then mu.
	localMu sync.Mutex

	mu       sync.Mutex
	nodes    map[string]*nodeEntry
	members  map[string]Member
	services map[string]json.RawMessage
	reserved uint64
	qmembers []string // PersistentState.QuorumMembers
	observer func(node string, old, new *NodeData)
	refused  map[string]time.Time // peer -> until when its deltas are ignored (data over MaxData)
	refuseN  atomic.Uint64
	refuseLg map[string]time.Time // peer -> last log line about it
}

// New makes a store whose local node data starts in status init, with the
// restored freeze and the next generation after the reserved one.
func New(cfg Config) (*Store, error) {
	if cfg.Name == "" {
		return nil, errors.New("monitor: node name is empty")
	}
	if cfg.Publish == nil {
		return nil, errors.New("monitor: no publish function")
	}
	if cfg.GenBlock == 0 {
		cfg.GenBlock = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxData <= 0 {
		cfg.MaxData = DefaultMaxData
	}
	s := &Store{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "monitor"),
		now:      cfg.Now,
		boot:     NewBootID(cfg.Restored.Boot, cfg.Now()),
		localC:   make(chan struct{}, 1),
		nodes:    map[string]*nodeEntry{},
		members:  map[string]Member{},
		services: map[string]json.RawMessage{},
		refused:  map[string]time.Time{},
		refuseLg: map[string]time.Time{},
	}
	labels := map[string]string{}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	d := NodeData{
		Gen:           cfg.Restored.GenReserved + 1,
		Status:        StatusInit,
		StatusUpdated: s.now().UTC(),
		Frozen:        cfg.Restored.Frozen,
		Labels:        labels,
		Services:      map[string]Instance{},
		Quorum:        Quorum{HWM: len(cfg.Restored.QuorumMembers)},
	}
	s.qmembers = slices.Clone(cfg.Restored.QuorumMembers)
	raw, err := marshalCanonical(d)
	if err != nil {
		return nil, err
	}
	if len(raw) > cfg.MaxData {
		return nil, fmt.Errorf("node %s: its data at start (labels) is %d bytes, over max_data %d: %w",
			cfg.Name, len(raw), cfg.MaxData, ErrDataTooLarge)
	}
	s.reserved = d.Gen + cfg.GenBlock
	if err := s.persist(PersistentState{Frozen: d.Frozen, GenReserved: s.reserved, QuorumMembers: s.qmembers}); err != nil {
		return nil, err
	}
	s.nodes[cfg.Name] = &nodeEntry{raw: raw, data: d, boot: s.boot}
	// The first patch of a run replaces both sections whole: a client that
	// resumes across the restart (since=SEQ) drops what the previous run
	// held and this one does not (a peer forgotten, a service removed while
	// the agent was down), instead of keeping it for good.
	s.publishPatch(cfg.Name, startOps(s.document()))
	if d.Frozen != 0 {
		s.event(map[string]any{"id": "node_freeze", "reason": "boot", "node": cfg.Name})
	}
	return s, nil
}

// Name is this node's name.
func (s *Store) Name() string { return s.cfg.Name }

// Boot identifies this run of the local node; a peer seeing it change knows
// the node restarted. Boot ids are ordered (CompareBoot).
func (s *Store) Boot() string { return s.boot }

// LocalChanged is signalled (without blocking; coalesced) after every local
// change. The heartbeat sender waits on it.
func (s *Store) LocalChanged() <-chan struct{} { return s.localC }

// SetObserver installs fn, called with the store lock held after any node's
// data changed (old is nil for a new node, new is nil for a forgotten one).
// fn must not call back into the store.
func (s *Store) SetObserver(fn func(node string, old, new *NodeData)) {
	s.mu.Lock()
	s.observer = fn
	s.mu.Unlock()
}

// Local returns the local node's data: generation, canonical JSON and a copy.
func (s *Store) Local() (gen uint64, raw []byte, data NodeData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.nodes[s.cfg.Name]
	return e.data.Gen, e.raw, e.data.Clone()
}

// UpdateLocal changes the local node's data with fn. When fn changed
// anything, the generation increments, a patch record is published, node
// events are emitted (with reason for freeze/thaw), and LocalChanged is
// signalled. It reports the new generation and whether anything changed.
// A change that would make the data bigger than MaxData is refused with
// an error wrapping ErrDataTooLarge; one whose state cannot be saved is
// refused too: nothing is published.
func (s *Store) UpdateLocal(reason string, fn func(d *NodeData)) (uint64, bool, error) {
	s.localMu.Lock()
	defer s.localMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.nodes[s.cfg.Name]
	old := e.data
	d := old.Clone()
	fn(&d)
	d.Gen = old.Gen
	if d.Status != old.Status {
		d.StatusUpdated = s.now().UTC()
	}
	raw, err := marshalCanonical(d)
	if err != nil {
		return old.Gen, false, fmt.Errorf("encode local data: %w", err)
	}
	if string(raw) == string(e.raw) {
		return old.Gen, false, nil
	}
	d.Gen = old.Gen + 1
	if raw, err = marshalCanonical(d); err != nil {
		return old.Gen, false, fmt.Errorf("encode local data: %w", err)
	}
	if len(raw) > s.cfg.MaxData && len(raw) > len(e.raw) {
		return old.Gen, false, fmt.Errorf("node %s: this change makes its data %d bytes, over max_data %d: %w",
			s.cfg.Name, len(raw), s.cfg.MaxData, ErrDataTooLarge)
	}
	ops, err := Diff(e.raw, raw, Pointer("monitor", "nodes", s.cfg.Name))
	if err != nil {
		return old.Gen, false, fmt.Errorf("diff local data: %w", err)
	}
	if d.Gen >= s.reserved || d.Frozen != old.Frozen {
		st := PersistentState{Frozen: d.Frozen, GenReserved: s.reserved, QuorumMembers: s.qmembers}
		if d.Gen >= s.reserved {
			st.GenReserved = d.Gen + s.cfg.GenBlock
		}
		// Saved before the change is published, but without the store
		// lock: an fsync must not hold up readers and peers' updates.
		// localMu keeps the local data as it is meanwhile.
		s.mu.Unlock()
		err := s.persist(st)
		s.mu.Lock()
		if err != nil {
			return old.Gen, false, err
		}
		s.reserved = st.GenReserved
	}
	e.set(raw, d)
	s.publishPatch(s.cfg.Name, ops)
	s.transitions(s.cfg.Name, &old, &e.data, reason)
	select {
	case s.localC <- struct{}{}:
	default:
	}
	return d.Gen, true, nil
}

func (s *Store) persist(st PersistentState) error {
	if s.cfg.Persist == nil {
		return nil
	}
	st.Boot = s.boot // set once in New: no lock needed
	if err := s.cfg.Persist(st); err != nil {
		return fmt.Errorf("save node state: %w", err)
	}
	return nil
}

// QuorumMembers returns the nodes counted in the quorum high-water mark,
// as last saved (restored at start).
func (s *Store) QuorumMembers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.qmembers)
}

// SaveQuorumMembers keeps names (sorted, no duplicates) as the nodes
// counted in the quorum high-water mark: it persists them at once when
// they changed. On an error nothing changes, so the caller tries again.
func (s *Store) SaveQuorumMembers(names []string) error {
	s.localMu.Lock()
	defer s.localMu.Unlock()
	s.mu.Lock()
	if slices.Equal(names, s.qmembers) {
		s.mu.Unlock()
		return nil
	}
	st := PersistentState{Frozen: s.nodes[s.cfg.Name].data.Frozen, GenReserved: s.reserved, QuorumMembers: slices.Clone(names)}
	s.mu.Unlock()
	// Saved without the store lock, as UpdateLocal does; localMu keeps
	// the local data and the reserved block as they are meanwhile.
	if err := s.persist(st); err != nil {
		return err
	}
	s.mu.Lock()
	s.qmembers = st.QuorumMembers
	s.mu.Unlock()
	return nil
}

// refuse records that node's data was refused for its size: counted,
// logged at most once a minute per node, and the node's deltas ignored for
// refuseBackoff (so that a peer over the limit costs one whole-data
// transfer per period, not one per change). s.mu is held.
func (s *Store) refuse(node string, size int, gen uint64) {
	s.refuseN.Add(1)
	now := s.now()
	s.refused[node] = now.Add(refuseBackoff)
	if last, ok := s.refuseLg[node]; ok && now.Sub(last) < refuseLogEvery {
		return
	}
	s.refuseLg[node] = now
	s.log.Error("peer data over max_data refused; the copy held here stays at its last accepted generation",
		"node", node, "bytes", size, "max_data", s.cfg.MaxData, "gen", gen)
}

// RefusedTooLarge counts peers' data refused on receipt for being over
// MaxData.
func (s *Store) RefusedTooLarge() uint64 { return s.refuseN.Load() }

// MaxData is the bound of one node's data in bytes.
func (s *Store) MaxData() int { return s.cfg.MaxData }

// Held returns the generation and boot of the copy held for node.
func (s *Store) Held(node string) (gen uint64, boot string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.nodes[node]
	if !ok {
		return 0, "", false
	}
	return e.data.Gen, e.boot, true
}

// Node returns a copy of node's data.
func (s *Store) Node(node string) (NodeData, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.nodes[node]
	if !ok {
		return NodeData{}, false
	}
	return e.data.Clone(), true
}

// Nodes returns a copy of every node's data, by name.
func (s *Store) Nodes() map[string]NodeData {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]NodeData, len(s.nodes))
	for n, e := range s.nodes {
		out[n] = e.data.Clone()
	}
	return out
}

// ApplyDelta applies a peer's operation list taking its data from
// generation base to gen, made during the peer run boot. It never changes
// the local node's data and never half-applies. A delta of an older run
// than the copy held is Stale.
func (s *Store) ApplyDelta(node, boot string, base, gen uint64, ops json.RawMessage) (Result, string) {
	if node == s.cfg.Name {
		return Stale, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.refused[node]; ok {
		if s.now().Before(until) {
			return Stale, ""
		}
		delete(s.refused, node)
	}
	e, ok := s.nodes[node]
	switch {
	case !ok:
		return NeedFull, "unknown"
	case e.boot != boot && CompareBoot(boot, e.boot) < 0:
		return Stale, ""
	case e.boot != boot:
		return NeedFull, "restart"
	case gen <= e.data.Gen:
		return Stale, ""
	case base != e.data.Gen:
		return NeedFull, "gap"
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		return NeedFull, "apply_failed"
	}
	out, err := patch.Apply(e.raw)
	if err != nil {
		return NeedFull, "apply_failed"
	}
	raw, d, err := decodeNode(out)
	if err != nil || d.Gen != gen {
		return NeedFull, "apply_failed"
	}
	if len(raw) > s.cfg.MaxData {
		s.refuse(node, len(raw), gen)
		return Stale, ""
	}
	prefixed, err := Prefix(ops, Pointer("monitor", "nodes", node))
	if err != nil {
		return NeedFull, "apply_failed"
	}
	old := e.data
	e.set(raw, d)
	s.publishPatch(node, prefixed)
	s.transitions(node, &old, &e.data, "peer")
	return Applied, ""
}

// ApplyFull takes a peer's whole data when the store holds none, holds an
// older generation (or the same with other bytes), or holds data from an
// older boot of the peer (a copy
// from an older boot than the one held is never taken: it is a copy that
// was delayed). why is the reason given in the peer_resync event ("" for a
// first sight, which emits none). It reports whether the data was taken.
func (s *Store) ApplyFull(node, boot string, gen uint64, data []byte, why string) (bool, error) {
	if node == s.cfg.Name {
		return false, nil
	}
	if len(data) > s.cfg.MaxData {
		// Not even decoded: an oversized copy costs no more than its
		// receipt.
		s.mu.Lock()
		s.refuse(node, len(data), gen)
		s.mu.Unlock()
		return false, fmt.Errorf("full data of %s: %d bytes, over max_data %d: %w", node, len(data), s.cfg.MaxData, ErrDataTooLarge)
	}
	raw, d, err := decodeNode(data)
	if err != nil {
		return false, fmt.Errorf("full data of %s: %w", node, err)
	}
	if d.Gen != gen {
		return false, fmt.Errorf("full data of %s: gen %d in the data, %d in the message", node, d.Gen, gen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.nodes[node]
	// The same generation with other bytes is a copy gone wrong: the
	// owner's data wins, as only the owner changes it.
	if ok && e.boot == boot && (gen < e.data.Gen || (gen == e.data.Gen && string(raw) == string(e.raw))) {
		return false, nil
	}
	if ok && e.boot != boot && CompareBoot(boot, e.boot) < 0 {
		s.log.Warn("refused a copy from an older run of a peer", "node", node, "boot", boot, "held_boot", e.boot)
		return false, nil
	}
	delete(s.refused, node)
	path := Pointer("monitor", "nodes", node)
	if !ok {
		e = &nodeEntry{raw: raw, data: d, boot: boot}
		s.nodes[node] = e
		s.publishPatch(node, addOp(path, raw))
		s.transitions(node, nil, &e.data, "peer")
		return true, nil
	}
	ops, err := Diff(e.raw, raw, path)
	if err != nil {
		return false, fmt.Errorf("diff full data of %s: %w", node, err)
	}
	old := e.data
	if why == "" && e.boot != boot {
		why = "restart"
	}
	e.set(raw, d)
	e.boot = boot
	s.publishPatch(node, ops)
	// A full sent on (re)join with the same boot is catching up, not a
	// resync after a loss: no event for it.
	if why != "" {
		s.event(map[string]any{"id": "peer_resync", "reason": why, "node": node, "gen": gen})
	}
	s.transitions(node, &old, &e.data, "peer")
	return true, nil
}

// Forget drops a peer's data (it has been dead or gone longer than the
// grace period) and its membership entry.
func (s *Store) Forget(node, reason string) bool {
	if node == s.cfg.Name {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.nodes[node]
	_, member := s.members[node]
	if !ok && !member {
		return false
	}
	delete(s.refused, node)
	delete(s.refuseLg, node)
	if ok {
		delete(s.nodes, node)
		s.publishPatch(node, removeOp(Pointer("monitor", "nodes", node)))
		if s.observer != nil {
			s.observer(node, &e.data, nil)
		}
	}
	if member {
		delete(s.members, node)
		s.publishPatch(s.cfg.Name, removeOp(Pointer("cluster", "nodes", node)))
	}
	s.event(map[string]any{"id": "forget_peer", "reason": reason, "node": node})
	return true
}

// SetMember records this agent's view of a node's membership, emitting
// node_join, node_leave, node_down or node_up on the transitions that mean
// them. Since is set to now when the state changes.
func (s *Store) SetMember(node, state, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.members[node]
	if had && old.State == state && old.Addr == addr {
		return
	}
	m := Member{State: state, Addr: addr, Since: old.Since}
	if !had || old.State != state {
		m.Since = s.now().UTC()
	}
	s.members[node] = m
	raw, _ := json.Marshal(m)
	s.publishPatch(s.cfg.Name, addOp(Pointer("cluster", "nodes", node), raw))
	if node == s.cfg.Name {
		return
	}
	id := ""
	switch {
	case state == StateAlive && (!had || old.State == StateLeft):
		id = "node_join"
	case state == StateAlive && old.State == StateDead:
		id = "node_up"
	case state == StateDead && had && old.State != StateDead:
		id = "node_down"
	case state == StateLeft && had && old.State != StateLeft:
		id = "node_leave"
	}
	if id != "" {
		s.event(map[string]any{"id": id, "reason": "membership", "node": node, "addr": addr})
	}
}

// Members returns a copy of cluster.nodes.
func (s *Store) Members() map[string]Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Member, len(s.members))
	for k, v := range s.members {
		out[k] = v
	}
	return out
}

// SetService sets (raw != nil) or removes (raw == nil) the derived summary
// monitor.services.NAME, publishing a patch when it changed.
func (s *Store) SetService(name string, raw json.RawMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.services[name]
	path := Pointer("monitor", "services", name)
	if raw == nil {
		if had {
			delete(s.services, name)
			s.publishPatch(s.cfg.Name, removeOp(path))
		}
		return nil
	}
	c, err := Canonical(raw)
	if err != nil {
		return fmt.Errorf("service summary %s: %w", name, err)
	}
	if had && string(old) == string(c) {
		return nil
	}
	s.services[name] = c
	if !had {
		s.publishPatch(s.cfg.Name, addOp(path, c))
		return nil
	}
	ops, err := Diff(old, c, path)
	if err != nil {
		return err
	}
	s.publishPatch(s.cfg.Name, ops)
	return nil
}

// Event publishes an event record from this node with the store lock held,
// so it is ordered with the patches around it.
func (s *Store) Event(data map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.event(data)
}

// Document returns the cluster data as JSON.
func (s *Store) Document() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.document()
}

// SnapshotWith returns the cluster data and calls fn with the store lock
// held, so that fn can subscribe to the bus at exactly the document's
// position: no patch can be published between the two.
func (s *Store) SnapshotWith(fn func() error) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc := s.document()
	if fn != nil {
		if err := fn(); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

type clusterDoc struct {
	Cluster struct {
		Name  string            `json:"name"`
		Nodes map[string]Member `json:"nodes"`
	} `json:"cluster"`
	Monitor struct {
		Nodes    map[string]json.RawMessage `json:"nodes"`
		Services map[string]json.RawMessage `json:"services"`
	} `json:"monitor"`
}

func (s *Store) document() []byte {
	var d clusterDoc
	d.Cluster.Name = s.cfg.ClusterName
	d.Cluster.Nodes = s.members
	d.Monitor.Nodes = make(map[string]json.RawMessage, len(s.nodes))
	for n, e := range s.nodes {
		d.Monitor.Nodes[n] = e.raw
	}
	d.Monitor.Services = s.services
	raw, err := json.Marshal(d)
	if err != nil {
		// Every part is valid JSON the store made itself.
		s.log.Error("encode cluster data", "err", err)
		return []byte("{}")
	}
	return raw
}

// NodeNames returns the names of the nodes whose data is held, sorted.
func (s *Store) NodeNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.nodes))
}

// SampleNodes returns up to n names of nodes whose data is held, other
// than except, picked uniformly at random (reservoir sampling), in no
// order. It costs one pass over the names, without sorting or copying
// them: it runs on every probe ack, which a cluster of a thousand nodes
// answers a thousand times per probe interval.
func (s *Store) SampleNodes(n int, except string) []string {
	if n <= 0 {
		return nil
	}
	out := make([]string, 0, n)
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := 0
	for name := range s.nodes {
		if name == except {
			continue
		}
		seen++
		if len(out) < n {
			out = append(out, name)
		} else if j := rand.IntN(seen); j < n {
			out[j] = name
		}
	}
	return out
}

// transitions emits the events a change of node's data means and calls the
// observer. Lock held.
func (s *Store) transitions(node string, old, new *NodeData, reason string) {
	var was int64
	if old != nil {
		was = old.Frozen
	}
	if node != s.cfg.Name {
		reason = "peer"
	}
	switch {
	case was == 0 && new.Frozen != 0:
		s.event(map[string]any{"id": "node_freeze", "reason": reason, "node": node})
	case was != 0 && new.Frozen == 0:
		s.event(map[string]any{"id": "node_thaw", "reason": reason, "node": node})
	}
	if s.observer != nil {
		s.observer(node, old, new)
	}
}

func (s *Store) publishPatch(nodename string, ops json.RawMessage) {
	if string(ops) == "[]" {
		return
	}
	s.cfg.Publish(nodename, KindPatch, ops)
}

func (s *Store) event(data map[string]any) {
	raw, err := json.Marshal(data)
	if err != nil {
		s.log.Error("encode event", "err", err)
		return
	}
	s.cfg.Publish(s.cfg.Name, KindEvent, raw)
}

func decodeNode(data []byte) ([]byte, NodeData, error) {
	raw, err := Canonical(data)
	if err != nil {
		return nil, NodeData{}, err
	}
	var d NodeData
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, NodeData{}, err
	}
	return raw, d, nil
}

func addOp(path string, value json.RawMessage) json.RawMessage {
	p, _ := json.Marshal(path)
	return json.RawMessage(`[{"op":"add","path":` + string(p) + `,"value":` + string(value) + `}]`)
}

// startOps returns the patch that sets the cluster and monitor sections of
// doc whole (an RFC 6902 add on an existing member replaces it).
func startOps(doc []byte) json.RawMessage {
	var d struct {
		Cluster json.RawMessage `json:"cluster"`
		Monitor json.RawMessage `json:"monitor"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return json.RawMessage("[]")
	}
	return json.RawMessage(`[{"op":"add","path":"/cluster","value":` + string(d.Cluster) +
		`},{"op":"add","path":"/monitor","value":` + string(d.Monitor) + `}]`)
}

func removeOp(path string) json.RawMessage {
	p, _ := json.Marshal(path)
	return json.RawMessage(`[{"op":"remove","path":` + string(p) + `}]`)
}
