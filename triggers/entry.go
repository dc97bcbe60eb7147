package triggers

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"agent/events"
)

// Operations of the state file's entries.
const (
	opTrigger = "trigger" // a trigger (re)starts: Trigger, Match, Distinct, Epoch+Seq (since)
	opRemove  = "remove"  // a trigger is gone: Trigger
	opOpen    = "open"    // a stream, as a snapshot writes it: Trigger, Key, First*, Count (dropped), Lost
	opAdd     = "add"     // an event enters a stream (opened when missing): Trigger, Key, Rec
	opClose   = "close"   // a stream closes into action ID: Trigger, Key, ID, Outcome, Reason, Command...
	opAction  = "action"  // a pending action, as a snapshot writes it, followed by its opEvent entries
	opEvent   = "event"   // one event of action ID: ID, Rec
	opPub     = "pub"     // the event of action ID went out
	opDone    = "done"    // action ID finished
	opLost    = "lost"    // records were lost: every open stream is marked
	opCommit  = "commit"  // the entries since the previous commit hold; Epoch+Seq is the cursor
)

// entry is one line of the state file. Rec is a record line byte for byte:
// it is spliced into the line as is, and json.Unmarshal gives it back
// unchanged.
type entry struct {
	Op        string          `json:"op"`
	Trigger   string          `json:"t,omitempty"`
	Key       []string        `json:"k,omitempty"`
	ID        uint64          `json:"id,omitempty"`
	Outcome   string          `json:"outcome,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	DKey      string          `json:"key,omitempty"` // display key of an action
	Command   []string        `json:"cmd,omitempty"`
	Timeout   int64           `json:"timeout,omitempty"` // nanoseconds
	Retries   int             `json:"retries,omitempty"`
	Match     string          `json:"match,omitempty"`
	Distinct  []string        `json:"distinct,omitempty"`
	Epoch     string          `json:"epoch,omitempty"`
	Seq       uint64          `json:"seq,omitempty"`
	First     string          `json:"first,omitempty"` // time of a stream's first event
	FirstSeq  uint64          `json:"first_seq,omitempty"`
	LastSeq   uint64          `json:"last_seq,omitempty"`
	Count     int             `json:"count,omitempty"`
	Dropped   int             `json:"dropped,omitempty"`
	Lost      bool            `json:"lost,omitempty"`
	Published bool            `json:"pub,omitempty"`
	Rec       json.RawMessage `json:"r,omitempty"`
}

// appendEntry appends e as one JSON line, its record spliced in as is.
func appendEntry(b []byte, e *entry) []byte {
	rec := e.Rec
	e.Rec = nil
	j, _ := json.Marshal(e) // plain strings and numbers: cannot fail
	e.Rec = rec
	if len(rec) > 0 {
		j = append(j[:len(j)-1], `,"r":`...)
		b = append(b, j...)
		b = append(b, rec...)
		b = append(b, '}')
	} else {
		b = append(b, j...)
	}
	return append(b, '\n')
}

// replay applies entries read from the state file to an engine that has
// none yet. An entry that does not fit the state (a stream that does not
// exist) is an error: the file was not written by this code.
func (e *Engine) replay(list []entry) error {
	var cur *Action // the action whose opEvent entries follow
	for i := range list {
		en := &list[i]
		if en.Op != opEvent {
			cur = nil
		}
		t := e.triggers[en.Trigger]
		needTrigger := func() error {
			if t == nil {
				return fmt.Errorf("entry %d (%s): unknown trigger %q", i+1, en.Op, en.Trigger)
			}
			return nil
		}
		switch en.Op {
		case opTrigger:
			if t != nil && len(t.streams) > 0 {
				return fmt.Errorf("entry %d: trigger %q restarted with open streams", i+1, en.Trigger)
			}
			e.triggers[en.Trigger] = &trigger{name: en.Trigger, identity: identity(en.Match, en.Distinct),
				distinct: en.Distinct, sinceEpoch: en.Epoch, since: en.Seq, streams: map[string]*Stream{}}
		case opRemove:
			if err := needTrigger(); err != nil {
				return err
			}
			delete(e.triggers, en.Trigger)
		case opOpen:
			if err := needTrigger(); err != nil {
				return err
			}
			first, err := time.Parse(time.RFC3339Nano, en.First)
			if err != nil {
				return fmt.Errorf("entry %d: stream time: %w", i+1, err)
			}
			s := e.open(t, mapKey(en.Key), en.Key, first, en.FirstSeq)
			s.count, s.dropped, s.lost, s.lastSeq = en.Dropped, en.Dropped, en.Lost, en.LastSeq
		case opAdd:
			if err := needTrigger(); err != nil {
				return err
			}
			rec, err := events.ParseRecord(en.Rec)
			if err != nil {
				return fmt.Errorf("entry %d: record: %w", i+1, err)
			}
			k := mapKey(en.Key)
			s := t.streams[k]
			if s == nil {
				s = e.open(t, k, en.Key, rec.Time, rec.Seq)
			}
			e.add(s, rec.JSON(), rec.Seq)
		case opClose:
			if err := needTrigger(); err != nil {
				return err
			}
			s := t.streams[mapKey(en.Key)]
			if s == nil {
				return fmt.Errorf("entry %d: trigger %q closes a stream it does not have", i+1, en.Trigger)
			}
			delete(t.streams, mapKey(en.Key))
			e.restoreAction(&Action{ID: en.ID, Trigger: t.name, Outcome: en.Outcome, Reason: en.Reason, Key: s.key,
				Events: s.events, Count: s.count, Dropped: s.dropped, Lost: s.lost, FirstSeq: s.firstSeq, LastSeq: s.lastSeq,
				Command: en.Command, Timeout: time.Duration(en.Timeout), Retries: en.Retries})
		case opAction:
			cur = &Action{ID: en.ID, Trigger: en.Trigger, Outcome: en.Outcome, Reason: en.Reason, Key: en.DKey,
				Count: en.Count, Dropped: en.Dropped, Lost: en.Lost, FirstSeq: en.FirstSeq, LastSeq: en.LastSeq,
				Command: en.Command, Timeout: time.Duration(en.Timeout), Retries: en.Retries, Published: en.Published}
			e.restoreAction(cur)
		case opEvent:
			if cur == nil || cur.ID != en.ID {
				return fmt.Errorf("entry %d: event of action %d out of place", i+1, en.ID)
			}
			cur.Events = append(cur.Events, []byte(en.Rec))
		case opPub:
			if a := e.actions[en.ID]; a != nil {
				a.Published = true
			}
		case opDone:
			if a := e.actions[en.ID]; a != nil {
				e.forget(a)
			}
		case opLost:
			for _, t := range e.triggers {
				for _, s := range t.streams {
					s.lost = true
				}
			}
		case opCommit:
		default:
			return fmt.Errorf("entry %d: unknown operation %q", i+1, en.Op)
		}
	}
	return nil
}

func (e *Engine) restoreAction(a *Action) {
	if len(a.Command) == 0 || a.Command[0] == "" {
		a.Command = nil // none to run
	}
	e.actions[a.ID] = a
	e.pendingBy[a.Trigger]++
	if a.ID >= e.nextID {
		e.nextID = a.ID + 1
	}
}

// snapshot returns the entries that rebuild the engine's state: triggers,
// pending actions, open streams.
func (e *Engine) snapshot() []entry {
	var list []entry
	for _, t := range e.sortedTriggers() {
		match := ""
		if t.spec != nil {
			match = t.spec.match.String()
		} else {
			match, _, _ = strings.Cut(t.identity, "\x00")
		}
		list = append(list, entry{Op: opTrigger, Trigger: t.name, Match: match, Distinct: t.distinct, Epoch: t.sinceEpoch, Seq: t.since})
	}
	for _, a := range e.Pending() {
		list = append(list, entry{Op: opAction, ID: a.ID, Trigger: a.Trigger, Outcome: a.Outcome, Reason: a.Reason, DKey: a.Key,
			Count: a.Count, Dropped: a.Dropped, Lost: a.Lost, FirstSeq: a.FirstSeq, LastSeq: a.LastSeq,
			Command: a.Command, Timeout: int64(a.Timeout), Retries: a.Retries, Published: a.Published})
		for _, ev := range a.Events {
			list = append(list, entry{Op: opEvent, ID: a.ID, Rec: ev})
		}
	}
	for _, t := range e.sortedTriggers() {
		for _, s := range sortedStreams(t) {
			list = append(list, entry{Op: opOpen, Trigger: t.name, Key: s.vals, First: s.first.Format(time.RFC3339Nano),
				FirstSeq: s.firstSeq, LastSeq: s.lastSeq, Dropped: s.dropped, Lost: s.lost})
			for _, ev := range s.events {
				list = append(list, entry{Op: opAdd, Trigger: t.name, Key: s.vals, Rec: ev})
			}
		}
	}
	return list
}

// sortedTriggers returns every trigger the engine holds, configured or
// restored, by name.
func (e *Engine) sortedTriggers() []*trigger {
	list := make([]*trigger, 0, len(e.triggers))
	for _, t := range e.triggers {
		list = append(list, t)
	}
	slices.SortFunc(list, func(a, b *trigger) int { return strings.Compare(a.name, b.name) })
	return list
}

// sortedStreams returns t's open streams, oldest first.
func sortedStreams(t *trigger) []*Stream {
	list := make([]*Stream, 0, len(t.streams))
	for _, s := range t.streams {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b *Stream) int { return cmp.Compare(a.firstSeq, b.firstSeq) })
	return list
}
