package triggers

import (
	"container/heap"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"agent/events"
)

// Outcomes of a closed stream: AGENT_TRIGGER_OUTCOME.
const (
	OutcomeFire   = "fire"
	OutcomeExpire = "expire"
)

// Reasons of trigger_fire and trigger_expire events.
const (
	// ReasonCount: the stream reached count (a trigger without fire_when).
	ReasonCount = "count"
	// ReasonFireWhen: an event satisfying fire_when arrived in a stream
	// that held count events.
	ReasonFireWhen = "fire_when"
	// ReasonWindow: the stream did not fire within window of its first
	// event.
	ReasonWindow = "window"
	// ReasonReload: a reload closed the stream (a change of match or
	// distinct: expired) or fired it (a change of count or fire_when that
	// its events already satisfy).
	ReasonReload = "reload"
	// ReasonRemoved: the trigger was removed from node.conf; no command
	// runs.
	ReasonRemoved = "removed"
)

// DefaultMaxEvents bounds the events a stream keeps for its command's
// stdin; past it the oldest are dropped, and counted (AGENT_TRIGGER_DROPPED).
const DefaultMaxEvents = 10000

// eventPrefix starts the id of every event a trigger publishes: such events
// never enter a stream.
const eventPrefix = "trigger_"

// Stream is an open stream: the matching events of one distinct value set
// since its first event.
type Stream struct {
	vals     []string
	key      string // display key
	events   [][]byte
	first    time.Time // time of the first event
	deadline time.Time // first + window
	firstSeq uint64
	lastSeq  uint64
	count    int  // events collected, dropped ones included
	dropped  int  // oldest events dropped past the bound
	lost     bool // records were lost to retention while it was open
	hidx     int  // index in the deadline heap, -1 when not in it
}

// Action is a closed stream and what to do with it: publish its event, run
// its command (with retries), then mark it done.
type Action struct {
	ID       uint64
	Trigger  string
	Outcome  string
	Reason   string
	Key      string
	Events   [][]byte
	Count    int
	Dropped  int
	Lost     bool
	FirstSeq uint64
	LastSeq  uint64
	Command  []string // nil: none to run
	Timeout  time.Duration
	Retries  int
	// Published: the trigger_fire or trigger_expire event went out.
	Published bool
}

// trigger is one trigger's state: its spec (nil for a trigger restored
// from the state file and not configured yet) and its open streams.
type trigger struct {
	name     string
	spec     *Spec
	identity string   // of the spec its streams were collected under
	distinct []string // its distinct paths
	// Records at or before since (of sinceEpoch) are older than the
	// trigger: it does not see them.
	sinceEpoch string
	since      uint64
	streams    map[string]*Stream
	pos        int // index in the config order
}

// Engine is the stream logic of every trigger, without I/O, clock or
// goroutine: it is given records, the time, and new specs, and says which
// streams closed. It is owned by one goroutine. Every change of its state
// is also appended to a log of entries (see Drain) so that the state file
// can replay it.
type Engine struct {
	maxEvents int
	triggers  map[string]*trigger
	order     []*trigger // configured triggers, in config order
	actions   map[uint64]*Action
	pendingBy map[string]int // actions not done, by trigger
	// changes counts the streams opened and closed, the actions done and
	// the updates: what the gauges of Stats depend on.
	changes   uint64
	nextID    uint64
	deadlines deadlineHeap
	log       []entry
	// The configured triggers by the data.id values their match requires,
	// and those whose match requires none; both in config order.
	byID    map[string][]*trigger
	anyID   []*trigger
	scratch []*trigger
}

// NewEngine returns an empty engine; maxEvents bounds the events a stream
// keeps (0: DefaultMaxEvents).
func NewEngine(maxEvents int) *Engine {
	if maxEvents <= 0 {
		maxEvents = DefaultMaxEvents
	}
	return &Engine{
		maxEvents: maxEvents,
		triggers:  map[string]*trigger{},
		actions:   map[uint64]*Action{},
		pendingBy: map[string]int{},
		nextID:    1,
	}
}

// idPath is the path the engine indexes triggers by: a trigger whose match
// requires data.id to be one of a few values is evaluated only on records
// with one of them.
const idPath = "data.id"

// Apply runs rec through every configured trigger, in config order, and
// returns the streams it closed: a stream it made reach its fire condition,
// and a stream of the same key whose window had ended by rec's time.
func (e *Engine) Apply(rec *events.Record) []*Action {
	id := gjson.GetBytes(rec.Data, "id")
	if id.Type == gjson.String && rec.Kind == events.KindEvent && strings.HasPrefix(id.Str, eventPrefix) {
		return nil // a trigger's own event
	}
	raw := rec.JSON()
	var acts []*Action
	for _, t := range e.candidates(id) {
		if rec.Seq <= t.since && rec.Epoch == t.sinceEpoch {
			continue
		}
		sp := t.spec
		if !sp.match.Match(raw) {
			continue
		}
		vals := sp.values(raw)
		k := mapKey(vals)
		s := t.streams[k]
		if s != nil && !rec.Time.Before(s.deadline) {
			// The window ended before this event: the stream expired
			// (its timer had not run yet); the event opens a new one.
			acts = append(acts, e.close(t, s, OutcomeExpire, ReasonWindow))
			s = nil
		}
		opened := s == nil
		if opened {
			s = e.open(t, k, vals, rec.Time, rec.Seq)
		}
		e.add(s, raw, rec.Seq)
		e.log = append(e.log, entry{Op: opAdd, Trigger: t.name, Key: vals, Rec: raw})
		if s.count >= sp.count && (sp.fireWhen == nil || sp.fireWhen.Match(raw)) {
			reason := ReasonCount
			if sp.fireWhen != nil {
				reason = ReasonFireWhen
			}
			acts = append(acts, e.close(t, s, OutcomeFire, reason))
			continue
		}
		if opened {
			heap.Push(&e.deadlines, heapItem{t: t, s: s})
		}
	}
	return acts
}

// open makes a new stream of t; it is not in the deadline heap yet.
func (e *Engine) open(t *trigger, k string, vals []string, first time.Time, firstSeq uint64) *Stream {
	s := &Stream{vals: vals, key: displayKey(t.distinct, vals), first: first, firstSeq: firstSeq, hidx: -1}
	if t.spec != nil {
		s.deadline = first.Add(t.spec.window)
	}
	t.streams[k] = s
	e.changes++
	return s
}

// add appends an event to s, dropping the oldest past the bound.
func (e *Engine) add(s *Stream, raw []byte, seq uint64) {
	if len(s.events) >= e.maxEvents {
		n := copy(s.events, s.events[1:])
		s.events[n] = nil
		s.events = s.events[:n]
		s.dropped++
	}
	s.events = append(s.events, raw)
	s.count++
	s.lastSeq = seq
}

// close closes s with an outcome: it leaves its trigger and the heap and
// becomes a pending Action.
func (e *Engine) close(t *trigger, s *Stream, outcome, reason string) *Action {
	delete(t.streams, mapKey(s.vals))
	if s.hidx >= 0 {
		heap.Remove(&e.deadlines, s.hidx)
	}
	a := &Action{
		ID: e.nextID, Trigger: t.name, Outcome: outcome, Reason: reason, Key: s.key,
		Events: s.events, Count: s.count, Dropped: s.dropped, Lost: s.lost,
		FirstSeq: s.firstSeq, LastSeq: s.lastSeq,
	}
	e.nextID++
	if sp := t.spec; sp != nil && reason != ReasonRemoved {
		a.Command = sp.fireCmd
		if outcome == OutcomeExpire {
			a.Command = sp.expireCmd
		}
		if len(a.Command) == 0 {
			a.Command = nil
		}
		a.Timeout, a.Retries = sp.timeout, sp.retries
	}
	e.actions[a.ID] = a
	e.pendingBy[a.Trigger]++
	e.changes++
	e.log = append(e.log, entry{Op: opClose, Trigger: t.name, Key: s.vals, ID: a.ID, Outcome: outcome, Reason: reason,
		Command: a.Command, Timeout: int64(a.Timeout), Retries: a.Retries})
	return a
}

// Expire closes the streams whose window ended at or before horizon, oldest
// deadline first.
func (e *Engine) Expire(horizon time.Time) []*Action {
	var acts []*Action
	for len(e.deadlines) > 0 && !e.deadlines[0].s.deadline.After(horizon) {
		it := e.deadlines[0]
		acts = append(acts, e.close(it.t, it.s, OutcomeExpire, ReasonWindow))
	}
	return acts
}

// NextDeadline is the earliest end of an open stream's window.
func (e *Engine) NextDeadline() (time.Time, bool) {
	if len(e.deadlines) == 0 {
		return time.Time{}, false
	}
	return e.deadlines[0].s.deadline, true
}

// Update applies a new set of specs, in config order. A trigger that is
// new sees the records after headSeq of headEpoch (the head of the stream
// now). A trigger whose match or distinct changed has its streams expired
// (reason reload) and starts again after the head. A trigger whose other
// settings changed keeps its streams and re-evaluates them at once: one
// that holds count events fires when it has no fire_when or when its
// newest event satisfies it; one whose window ended by horizon expires. A
// removed trigger's streams close with reason removed and run no command.
func (e *Engine) Update(specs []*Spec, horizon time.Time, headEpoch string, headSeq uint64) []*Action {
	var acts []*Action
	keep := make(map[string]bool, len(specs))
	order := make([]*trigger, 0, len(specs))
	for _, sp := range specs {
		keep[sp.name] = true
		t := e.triggers[sp.name]
		if t != nil && t.identity != sp.identity {
			t.spec = sp
			acts = append(acts, e.closeAll(t, OutcomeExpire, ReasonReload)...)
			t = nil
		}
		if t == nil {
			t = &trigger{name: sp.name, identity: sp.identity, distinct: sp.distinct,
				sinceEpoch: headEpoch, since: headSeq, streams: map[string]*Stream{}}
			e.triggers[sp.name] = t
			e.log = append(e.log, entry{Op: opTrigger, Trigger: t.name, Match: sp.match.String(),
				Distinct: t.distinct, Epoch: headEpoch, Seq: headSeq})
		}
		t.spec = sp
		order = append(order, t)
		acts = append(acts, e.reevaluate(t, horizon)...)
	}
	for _, t := range e.sortedTriggers() {
		if keep[t.name] {
			continue
		}
		acts = append(acts, e.closeAll(t, OutcomeExpire, ReasonRemoved)...)
		delete(e.triggers, t.name)
		e.log = append(e.log, entry{Op: opRemove, Trigger: t.name})
	}
	e.order = order
	e.index()
	e.changes++
	return acts
}

// index rebuilds the data.id index of the configured triggers.
func (e *Engine) index() {
	e.byID, e.anyID = map[string][]*trigger{}, nil
	for i, t := range e.order {
		t.pos = i
		vals, ok := t.spec.match.Requires(idPath)
		if !ok {
			e.anyID = append(e.anyID, t)
			continue
		}
		for _, v := range vals {
			e.byID[v] = append(e.byID[v], t)
		}
	}
}

// candidates returns, in config order, the triggers whose match may hold
// on a record whose data.id is id.
func (e *Engine) candidates(id gjson.Result) []*trigger {
	if !id.Exists() {
		return e.anyID
	}
	form := id.Raw
	if id.Type == gjson.String {
		form = id.Str
	}
	some := e.byID[form]
	switch {
	case len(some) == 0:
		return e.anyID
	case len(e.anyID) == 0:
		return some
	}
	out := e.scratch[:0]
	i, j := 0, 0
	for i < len(some) || j < len(e.anyID) {
		if j == len(e.anyID) || i < len(some) && some[i].pos < e.anyID[j].pos {
			out = append(out, some[i])
			i++
		} else {
			out = append(out, e.anyID[j])
			j++
		}
	}
	e.scratch = out
	return out
}

// reevaluate applies t's spec to its open streams: new deadlines, then the
// fire condition, then the window.
func (e *Engine) reevaluate(t *trigger, horizon time.Time) []*Action {
	var acts []*Action
	sp := t.spec
	for _, s := range sortedStreams(t) {
		s.deadline = s.first.Add(sp.window)
		if s.count >= sp.count && (sp.fireWhen == nil || (len(s.events) > 0 && sp.fireWhen.Match(s.events[len(s.events)-1]))) {
			acts = append(acts, e.close(t, s, OutcomeFire, ReasonReload))
			continue
		}
		if !s.deadline.After(horizon) {
			acts = append(acts, e.close(t, s, OutcomeExpire, ReasonWindow))
			continue
		}
		if s.hidx >= 0 {
			heap.Fix(&e.deadlines, s.hidx)
		} else {
			heap.Push(&e.deadlines, heapItem{t: t, s: s})
		}
	}
	return acts
}

// closeAll closes every open stream of t, oldest first.
func (e *Engine) closeAll(t *trigger, outcome, reason string) []*Action {
	var acts []*Action
	for _, s := range sortedStreams(t) {
		acts = append(acts, e.close(t, s, outcome, reason))
	}
	return acts
}

// MarkLost marks every open stream: records were lost before the engine
// saw them, so each may miss events. Their commands get
// AGENT_TRIGGER_LOST=1 and their events "lost": true.
func (e *Engine) MarkLost() {
	for _, t := range e.triggers {
		for _, s := range t.streams {
			s.lost = true
		}
	}
	e.log = append(e.log, entry{Op: opLost})
}

// Done forgets a finished action.
func (e *Engine) Done(id uint64) {
	a, ok := e.actions[id]
	if !ok {
		return
	}
	e.forget(a)
	e.log = append(e.log, entry{Op: opDone, ID: id})
}

// forget drops a finished action.
func (e *Engine) forget(a *Action) {
	e.changes++
	delete(e.actions, a.ID)
	if e.pendingBy[a.Trigger]--; e.pendingBy[a.Trigger] <= 0 {
		delete(e.pendingBy, a.Trigger)
	}
}

// Published records that an action's event went out.
func (e *Engine) Published(id uint64) {
	a, ok := e.actions[id]
	if !ok || a.Published {
		return
	}
	a.Published = true
	e.log = append(e.log, entry{Op: opPub, ID: id})
}

// Pending returns the actions not done, oldest first.
func (e *Engine) Pending() []*Action {
	out := make([]*Action, 0, len(e.actions))
	for id := uint64(1); len(out) < len(e.actions) && id < e.nextID; id++ {
		if a, ok := e.actions[id]; ok {
			out = append(out, a)
		}
	}
	return out
}

// Drain returns the log of changes since the last Drain.
func (e *Engine) Drain() []entry {
	l := e.log
	e.log = nil
	return l
}

// deadlineHeap orders the open streams by the end of their window.
type deadlineHeap []heapItem

type heapItem struct {
	t *trigger
	s *Stream
}

func (h deadlineHeap) Len() int { return len(h) }
func (h deadlineHeap) Less(i, j int) bool {
	if !h[i].s.deadline.Equal(h[j].s.deadline) {
		return h[i].s.deadline.Before(h[j].s.deadline)
	}
	return h[i].s.firstSeq < h[j].s.firstSeq
}
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].s.hidx = i
	h[j].s.hidx = j
}
func (h *deadlineHeap) Push(x any) {
	it := x.(heapItem)
	it.s.hidx = len(*h)
	*h = append(*h, it)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = heapItem{}
	*h = old[:len(old)-1]
	it.s.hidx = -1
	return it
}

// StreamInfo describes an open stream.
type StreamInfo struct {
	// Key is the display key: `path=value` pairs.
	Key string
	// Count is the number of events collected.
	Count int
	// First is the time of the first event; Deadline the end of its window.
	First, Deadline time.Time
	// FirstSeq and LastSeq are the seqs of its first and newest events.
	FirstSeq, LastSeq uint64
	// Dropped counts the oldest events dropped past the bound.
	Dropped int
	// Lost: records were lost to retention while it was open.
	Lost bool
}

// TriggerInfo describes a configured trigger and its open streams.
type TriggerInfo struct {
	// Name is the trigger's name.
	Name string
	// Streams are its open streams, oldest first.
	Streams []StreamInfo
	// Pending counts its closed streams whose command has not finished.
	Pending int

	spec *Spec
}

// List describes the configured triggers, in config order.
func (e *Engine) List() []TriggerInfo {
	out := make([]TriggerInfo, 0, len(e.order))
	for _, t := range e.order {
		ti := TriggerInfo{Name: t.name, Pending: e.pendingBy[t.name], Streams: []StreamInfo{}, spec: t.spec}
		for _, s := range sortedStreams(t) {
			ti.Streams = append(ti.Streams, StreamInfo{Key: s.key, Count: s.count, First: s.first, Deadline: s.deadline,
				FirstSeq: s.firstSeq, LastSeq: s.lastSeq, Dropped: s.dropped, Lost: s.lost})
		}
		out = append(out, ti)
	}
	return out
}
