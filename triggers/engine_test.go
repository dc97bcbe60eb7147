package triggers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"agent/config"
	"agent/events"
)

// t0 is the fake clock's start.
var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// feed makes records as the bus would: seqs from 1, times from a clock
// the test moves.
type feed struct {
	epoch string
	seq   uint64
	now   time.Time
}

func newFeed() *feed { return &feed{epoch: "e1", now: t0} }

// advance moves the clock.
func (f *feed) advance(d time.Duration) { f.now = f.now.Add(d) }

// event makes the next event record with data {"id": id, kv...}.
func (f *feed) event(id string, kv ...string) *events.Record {
	d := map[string]string{"id": id}
	for i := 0; i+1 < len(kv); i += 2 {
		d[kv[i]] = kv[i+1]
	}
	data, _ := json.Marshal(d)
	f.seq++
	return events.NewRecord(f.seq, f.epoch, f.now, "n1", events.KindEvent, data)
}

// spec compiles a trigger; mod changes the defaults.
func spec(t testing.TB, name, match string, mod func(*config.Trigger)) *Spec {
	t.Helper()
	c := config.DefaultTrigger(name)
	c.Match = match
	c.FireCommand = []string{"/bin/fire"}
	c.ExpireCommand = []string{"/bin/expire"}
	if mod != nil {
		mod(&c)
	}
	s, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newEngine returns an engine running specs, new at the feed's head.
func newEngine(f *feed, specs ...*Spec) *Engine {
	e := NewEngine(0)
	e.Update(specs, f.now, f.epoch, f.seq)
	return e
}

// summary is an action in one line: trigger outcome/reason key count seqs.
func summary(a *Action) string {
	var seqs []string
	for _, ev := range a.Events {
		r, err := events.ParseRecord(ev)
		if err != nil {
			return "bad event: " + err.Error()
		}
		seqs = append(seqs, fmt.Sprint(r.Seq))
	}
	s := fmt.Sprintf("%s %s/%s [%s] n=%d seqs=%s", a.Trigger, a.Outcome, a.Reason, a.Key, a.Count, strings.Join(seqs, ","))
	if a.Dropped > 0 {
		s += fmt.Sprintf(" dropped=%d", a.Dropped)
	}
	if a.Lost {
		s += " lost"
	}
	return s
}

func summaries(acts []*Action) []string {
	out := []string{}
	for _, a := range acts {
		out = append(out, summary(a))
	}
	return out
}

func expect(t *testing.T, what string, acts []*Action, want ...string) {
	t.Helper()
	got := summaries(acts)
	if want == nil {
		want = []string{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\ngot  %q\nwant %q", what, got, want)
	}
}

func TestFlappingFiresOncePerFourEventsPerNode(t *testing.T) {
	f := newFeed()
	e := newEngine(f, spec(t, "flapping", `data.id in ["node_down","node_up"]`, func(c *config.Trigger) {
		c.Distinct = []string{"data.node"}
		c.Count = 4
	}))
	var acts []*Action
	for i := range 10 {
		id := []string{"node_down", "node_up"}[i%2]
		f.advance(time.Second)
		acts = append(acts, e.Apply(f.event(id, "node", "n2"))...)
		acts = append(acts, e.Apply(f.event(id, "node", "n3"))...)
		acts = append(acts, e.Apply(f.event("node_freeze", "node", "n2"))...) // does not match
	}
	expect(t, "after 10 flaps of n2 and n3", acts,
		"flapping fire/count [data.node=n2] n=4 seqs=1,4,7,10",
		"flapping fire/count [data.node=n3] n=4 seqs=2,5,8,11",
		"flapping fire/count [data.node=n2] n=4 seqs=13,16,19,22",
		"flapping fire/count [data.node=n3] n=4 seqs=14,17,20,23",
	)
	if a := acts[0]; a.FirstSeq != 1 || a.LastSeq != 10 || !reflect.DeepEqual(a.Command, []string{"/bin/fire"}) || a.Retries != 3 {
		t.Errorf("first action: %+v", a)
	}
	list := e.List()
	if len(list) != 1 || len(list[0].Streams) != 2 || list[0].Streams[0].Count != 2 || list[0].Streams[0].Key != "data.node=n2" {
		t.Errorf("open streams: %+v", list)
	}
}

func TestWindowEdges(t *testing.T) {
	f := newFeed()
	e := newEngine(f, spec(t, "w", "data.id=x", func(c *config.Trigger) {
		c.Count = 3
		c.Window = 10 * time.Minute
	}))
	expect(t, "first", e.Apply(f.event("x")))
	f.advance(10*time.Minute - time.Nanosecond)
	expect(t, "second, 1ns before the end of the window", e.Apply(f.event("x")))
	if d, ok := e.NextDeadline(); !ok || !d.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("next deadline %v %v", d, ok)
	}
	expect(t, "expire 1ns early", e.Expire(t0.Add(10*time.Minute-time.Nanosecond)))
	expect(t, "expire at the deadline", e.Expire(t0.Add(10*time.Minute)), "w expire/window [] n=2 seqs=1,2")
	if _, ok := e.NextDeadline(); ok {
		t.Fatal("a deadline left after the expiry")
	}

	// An event exactly at the end of the window, before the timer ran:
	// the old stream expires, the event opens a new one.
	f.advance(time.Minute)
	start := f.now
	expect(t, "opens", e.Apply(f.event("x")))
	f.now = start.Add(10 * time.Minute)
	expect(t, "event at the deadline", e.Apply(f.event("x")), "w expire/window [] n=1 seqs=3")
	expect(t, "one more", e.Apply(f.event("x")))
	f.advance(time.Second)
	expect(t, "third of the new stream", e.Apply(f.event("x")), "w fire/count [] n=3 seqs=4,5,6")
}

func TestDistinctKeys(t *testing.T) {
	f := newFeed()
	e := newEngine(f, spec(t, "svc", "data.id=instance_start", func(c *config.Trigger) {
		c.Distinct = []string{"data.svcname", "data.node"}
		c.Count = 2
	}))
	var acts []*Action
	acts = append(acts, e.Apply(f.event("instance_start", "svcname", "web", "node", "n1"))...)
	acts = append(acts, e.Apply(f.event("instance_start", "svcname", "web", "node", "n2"))...)
	acts = append(acts, e.Apply(f.event("instance_start", "svcname", "web"))...) // node missing: ""
	acts = append(acts, e.Apply(f.event("instance_start", "svcname", "db", "node", "n1"))...)
	acts = append(acts, e.Apply(f.event("instance_start", "svcname", "web"))...)
	acts = append(acts, e.Apply(f.event("instance_start", "svcname", "web", "node", "n2"))...)
	expect(t, "two keys fire", acts,
		"svc fire/count [data.svcname=web data.node=] n=2 seqs=3,5",
		"svc fire/count [data.svcname=web data.node=n2] n=2 seqs=2,6",
	)
	var keys []string
	for _, s := range e.List()[0].Streams {
		keys = append(keys, s.Key)
	}
	if want := []string{"data.svcname=web data.node=n1", "data.svcname=db data.node=n1"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("open keys %q, want %q", keys, want)
	}
}

func TestDistinctValueForms(t *testing.T) {
	s := spec(t, "v", "data", func(c *config.Trigger) { c.Distinct = []string{"data.n", "data.b", "data.o", "data.s", "data.missing"} })
	rec := events.NewRecord(1, "e", t0, "n1", events.KindEvent, json.RawMessage(`{"n":10,"b":true,"o":{"a":1},"s":"a b"}`))
	vals := s.values(rec.JSON())
	if want := []string{"10", "true", `{"a":1}`, "a b", ""}; !reflect.DeepEqual(vals, want) {
		t.Fatalf("values %q, want %q", vals, want)
	}
	if k := displayKey(s.distinct, vals); k != `data.n=10 data.b=true data.o={"a":1} data.s=a b data.missing=` {
		t.Fatalf("display key %q", k)
	}
	if mapKey([]string{"a\x00", "b"}) == mapKey([]string{"a", "\x00b"}) {
		t.Fatal("map keys collide")
	}
}

func TestCountPlusFireWhen(t *testing.T) {
	f := newFeed()
	noUp := spec(t, "no-up", `data.id=instance_start or (data.id=instance_status_change and data.avail=up)`, func(c *config.Trigger) {
		c.Distinct = []string{"data.svcname"}
		c.Count = 2
		c.FireWhen = "data.id=instance_status_change"
		c.Window = 2 * time.Minute
		c.FireCommand = nil
	})
	e := newEngine(f, noUp)

	// A start followed by up within 2 minutes: fires, with no command.
	expect(t, "start", e.Apply(f.event("instance_start", "svcname", "web")))
	f.advance(30 * time.Second)
	expect(t, "down does not match", e.Apply(f.event("instance_status_change", "svcname", "web", "avail", "down")))
	acts := e.Apply(f.event("instance_status_change", "svcname", "web", "avail", "up"))
	expect(t, "up", acts, "no-up fire/fire_when [data.svcname=web] n=2 seqs=1,3")
	if acts[0].Command != nil {
		t.Errorf("a fire without fire_command has command %q", acts[0].Command)
	}

	// Two starts: count is reached by an event that is not fire_when, so
	// the stream keeps collecting until up arrives.
	f.advance(time.Minute)
	expect(t, "start 1", e.Apply(f.event("instance_start", "svcname", "web")))
	expect(t, "start 2", e.Apply(f.event("instance_start", "svcname", "web")))
	expect(t, "up", e.Apply(f.event("instance_status_change", "svcname", "web", "avail", "up")),
		"no-up fire/fire_when [data.svcname=web] n=3 seqs=4,5,6")

	// A start never followed by up: expires after 2 minutes, with the
	// expire command.
	f.advance(time.Minute)
	expect(t, "start db", e.Apply(f.event("instance_start", "svcname", "db")))
	acts = e.Expire(f.now.Add(2 * time.Minute))
	expect(t, "expiry", acts, "no-up expire/window [data.svcname=db] n=1 seqs=7")
	if !reflect.DeepEqual(acts[0].Command, []string{"/bin/expire"}) {
		t.Errorf("expire command %q", acts[0].Command)
	}
}

func TestTriggerEventsNeverEnter(t *testing.T) {
	f := newFeed()
	e := newEngine(f, spec(t, "all", "kind=event", nil))
	expect(t, "trigger_fire", e.Apply(f.event("trigger_fire", "trigger", "all")))
	expect(t, "trigger_failed", e.Apply(f.event("trigger_failed", "trigger", "all")))
	expect(t, "node_up", e.Apply(f.event("node_up")), "all fire/count [] n=1 seqs=3")
	patch := events.NewRecord(4, f.epoch, f.now, "n1", events.KindPatch, json.RawMessage(`[{"op":"add","path":"/x","value":{"id":"trigger_x"}}]`))
	expect(t, "a patch", e.Apply(patch))
}

func TestNewTriggerStartsAtHead(t *testing.T) {
	f := newFeed()
	e := NewEngine(0)
	old := f.event("x") // seq 1, published before the trigger existed
	e.Update([]*Spec{spec(t, "x", "data.id=x", nil)}, f.now, f.epoch, 1)
	expect(t, "old record", e.Apply(old))
	expect(t, "new record", e.Apply(f.event("x")), "x fire/count [] n=1 seqs=2")
	other := events.NewRecord(1, "e2", f.now, "n1", events.KindEvent, json.RawMessage(`{"id":"x"}`))
	expect(t, "seq 1 of a new epoch", e.Apply(other), "x fire/count [] n=1 seqs=1")
}

func TestMaxEvents(t *testing.T) {
	f := newFeed()
	e := NewEngine(3)
	e.Update([]*Spec{spec(t, "m", "data.id=x", func(c *config.Trigger) { c.Count = 5 })}, f.now, f.epoch, 0)
	var acts []*Action
	for range 5 {
		acts = append(acts, e.Apply(f.event("x"))...)
	}
	expect(t, "fires with the newest 3", acts, "m fire/count [] n=5 seqs=3,4,5 dropped=2")
	if acts[0].FirstSeq != 1 {
		t.Errorf("first seq %d, want 1", acts[0].FirstSeq)
	}
}

func TestReload(t *testing.T) {
	f := newFeed()
	base := func(c *config.Trigger) {
		c.Distinct = []string{"data.node"}
		c.Count = 4
		c.Window = 10 * time.Minute
	}
	flap := spec(t, "flap", "data.id=node_down", base)
	other := spec(t, "other", "data.id=node_down", func(c *config.Trigger) { base(c); c.Count = 10 })
	e := newEngine(f, flap, other)
	for _, n := range []string{"n1", "n1", "n1", "n2", "n2", "n3"} {
		e.Apply(f.event("node_down", "node", n))
		f.advance(time.Minute)
	}
	// Now t0+6m: n1 holds 3 (first at 0m), n2 2 (3m), n3 1 (5m).

	// count 3: n1 fires at once.
	acts := e.Update([]*Spec{spec(t, "flap", "data.id=node_down", func(c *config.Trigger) { base(c); c.Count = 3 }), other}, f.now, f.epoch, f.seq)
	expect(t, "count lowered", acts, "flap fire/reload [data.node=n1] n=3 seqs=1,2,3")

	// window 4m: n2 (first at 3m) is still open until 7m; n3 too.
	acts = e.Update([]*Spec{spec(t, "flap", "data.id=node_down", func(c *config.Trigger) { base(c); c.Count = 3; c.Window = 4 * time.Minute }), other}, f.now, f.epoch, f.seq)
	expect(t, "window shortened, none due", acts)
	// window 2m: n2 is due (3m+2m <= 6m), n3 is not (5m+2m).
	acts = e.Update([]*Spec{spec(t, "flap", "data.id=node_down", func(c *config.Trigger) { base(c); c.Count = 3; c.Window = 2 * time.Minute }), other}, f.now, f.epoch, f.seq)
	expect(t, "window shortened", acts, "flap expire/window [data.node=n2] n=2 seqs=4,5")
	if d, _ := e.NextDeadline(); !d.Equal(t0.Add(7 * time.Minute)) {
		t.Fatalf("next deadline %v, want n3's at 7m", d)
	}

	// fire_when on the newest event: n3's only event is node_down
	// data.reason missing: does not hold; count 1 and a fire_when that
	// holds: fires.
	acts = e.Update([]*Spec{spec(t, "flap", "data.id=node_down", func(c *config.Trigger) { base(c); c.Count = 1; c.FireWhen = "data.reason=x" }), other}, f.now, f.epoch, f.seq)
	expect(t, "fire_when not satisfied", acts)
	acts = e.Update([]*Spec{spec(t, "flap", "data.id=node_down", func(c *config.Trigger) { base(c); c.Count = 1; c.FireWhen = "data.node=n3" }), other}, f.now, f.epoch, f.seq)
	expect(t, "fire_when satisfied by the newest event", acts, "flap fire/reload [data.node=n3] n=1 seqs=6")

	// match changed: other's streams expire with reason reload, with the
	// new expire command; records before the change do not enter again.
	newOther := spec(t, "other", "data.id=node_up", func(c *config.Trigger) { base(c); c.ExpireCommand = []string{"/bin/new"} })
	acts = e.Update([]*Spec{flap, newOther}, f.now, f.epoch, f.seq)
	expect(t, "match changed", acts,
		"other expire/reload [data.node=n1] n=3 seqs=1,2,3",
		"other expire/reload [data.node=n2] n=2 seqs=4,5",
		"other expire/reload [data.node=n3] n=1 seqs=6")
	if !reflect.DeepEqual(acts[0].Command, []string{"/bin/new"}) {
		t.Errorf("reload expiry runs %q, want the new expire command", acts[0].Command)
	}

	// distinct changed: closes too.
	e.Apply(f.event("node_up", "node", "n1"))
	acts = e.Update([]*Spec{flap, spec(t, "other", "data.id=node_up", func(c *config.Trigger) { base(c); c.Distinct = nil })}, f.now, f.epoch, f.seq)
	expect(t, "distinct changed", acts, "other expire/reload [data.node=n1] n=1 seqs=7")

	// A match written differently but the same filter keeps the streams.
	e.Apply(f.event("node_up", "node", "n1"))
	acts = e.Update([]*Spec{flap, spec(t, "other", "data.id == node_up", func(c *config.Trigger) { base(c); c.Distinct = nil })}, f.now, f.epoch, f.seq)
	expect(t, "same filter, other spelling", acts)

	// removed: closes with reason removed and no command.
	acts = e.Update([]*Spec{flap}, f.now, f.epoch, f.seq)
	expect(t, "removed", acts, "other expire/removed [] n=1 seqs=8")
	if acts[0].Command != nil {
		t.Errorf("a removed trigger's stream runs %q", acts[0].Command)
	}
	if got := len(e.List()); got != 1 {
		t.Fatalf("%d triggers listed, want 1", got)
	}
}

func TestMarkLost(t *testing.T) {
	f := newFeed()
	e := newEngine(f, spec(t, "l", "data.id=x", func(c *config.Trigger) { c.Count = 2 }))
	e.Apply(f.event("x"))
	e.MarkLost()
	expect(t, "lost stream fires", e.Apply(f.event("x")), "l fire/count [] n=2 seqs=1,2 lost")
	expect(t, "a new stream is whole", append(e.Apply(f.event("x")), e.Apply(f.event("x"))...), "l fire/count [] n=2 seqs=3,4")
}

// encodeLog writes entries as the state file holds them.
func encodeLog(list []entry) []byte {
	var b []byte
	for i := range list {
		b = appendEntry(b, &list[i])
	}
	return b
}

func decodeLog(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		var en entry
		if err := json.Unmarshal(line, &en); err != nil {
			t.Fatalf("entry %s: %v", line, err)
		}
		out = append(out, en)
	}
	return out
}

// state is what must survive a restart, comparable.
func state(e *Engine) string {
	var b strings.Builder
	for _, ti := range e.List() {
		fmt.Fprintf(&b, "%s pending=%d\n", ti.Name, ti.Pending)
		for _, s := range ti.Streams {
			fmt.Fprintf(&b, "  %+v\n", s)
		}
	}
	for _, a := range e.Pending() {
		fmt.Fprintf(&b, "action %d %s pub=%v cmd=%q timeout=%s retries=%d\n", a.ID, summary(a), a.Published, a.Command, a.Timeout, a.Retries)
		for _, ev := range a.Events {
			fmt.Fprintf(&b, "    %s\n", ev)
		}
	}
	for _, t := range e.sortedTriggers() {
		fmt.Fprintf(&b, "trigger %s since %s/%d\n", t.name, t.sinceEpoch, t.since)
		for _, s := range sortedStreams(t) {
			for _, ev := range s.events {
				fmt.Fprintf(&b, "    %s\n", ev)
			}
		}
	}
	fmt.Fprintf(&b, "next id %d\n", e.nextID)
	return b.String()
}

// TestReplay rebuilds an engine from its log, and from its snapshot: the
// state is the same, events byte for byte.
func TestReplay(t *testing.T) {
	f := newFeed()
	specs := []*Spec{
		spec(t, "flap", `data.id in ["node_down","node_up"]`, func(c *config.Trigger) { c.Distinct = []string{"data.node"}; c.Count = 3 }),
		spec(t, "gone", "data.id=node_down", func(c *config.Trigger) { c.Count = 100 }),
	}
	e := NewEngine(4)
	var log []entry
	e.Update(specs, f.now, f.epoch, 0)
	var acts []*Action
	for i := range 20 {
		f.advance(time.Second)
		node := []string{"n1", "n2", "n3"}[i%3]
		acts = append(acts, e.Apply(f.event([]string{"node_down", "node_up"}[i%2], "node", node, "note", `<a & "b">`))...)
		if i == 7 {
			e.MarkLost()
		}
	}
	e.Apply(f.event("node_down", "node", "n9"))
	e.Published(acts[0].ID)
	e.Done(acts[1].ID)
	acts = append(acts, e.Update(specs[:1], f.now, f.epoch, f.seq)...) // "gone" removed with open streams
	e.Published(acts[len(acts)-1].ID)
	log = append(log, e.Drain()...)
	if len(e.Pending()) < 3 || len(e.List()[0].Streams) == 0 {
		t.Fatalf("the scenario should leave actions and streams: %s", state(e))
	}
	want := state(e)

	r := NewEngine(4)
	if err := r.replay(decodeLog(t, encodeLog(log))); err != nil {
		t.Fatal(err)
	}
	r.Update(specs[:1], f.now, f.epoch, f.seq)
	if got := state(r); got != want {
		t.Fatalf("replayed log:\n%s\nwant:\n%s", got, want)
	}

	s := NewEngine(4)
	if err := s.replay(decodeLog(t, encodeLog(e.snapshot()))); err != nil {
		t.Fatal(err)
	}
	s.Update(specs[:1], f.now, f.epoch, f.seq)
	if got := state(s); got != want {
		t.Fatalf("replayed snapshot:\n%s\nwant:\n%s", got, want)
	}
	// The rebuilt engine goes on as the first: the same next actions.
	f2 := *f
	next := func(e *Engine, f *feed) []string {
		var out []string
		for i := range 6 {
			f.advance(time.Second)
			out = append(out, summaries(e.Apply(f.event("node_up", "node", []string{"n1", "n2"}[i%2])))...)
		}
		return out
	}
	if a, b := next(e, f), next(s, &f2); !reflect.DeepEqual(a, b) {
		t.Fatalf("after the restart:\n%q\nwant\n%q", b, a)
	}
}

// TestIndexKeepsConfigOrder: triggers indexed by data.id and the others
// see a record in config order, and only those that may match.
func TestIndexKeepsConfigOrder(t *testing.T) {
	f := newFeed()
	e := newEngine(f,
		spec(t, "t1", "data.id=a", nil),
		spec(t, "t2", "kind=event", nil),
		spec(t, "t3", `data.id in ["a","b"]`, nil),
		spec(t, "t4", "data.id=b", nil),
		spec(t, "t5", "data.x=1", nil),
	)
	expect(t, "a", e.Apply(f.event("a")), "t1 fire/count [] n=1 seqs=1", "t2 fire/count [] n=1 seqs=1", "t3 fire/count [] n=1 seqs=1")
	expect(t, "b", e.Apply(f.event("b", "x", "1")), "t2 fire/count [] n=1 seqs=2", "t3 fire/count [] n=1 seqs=2", "t4 fire/count [] n=1 seqs=2",
		"t5 fire/count [] n=1 seqs=2")
	expect(t, "c", e.Apply(f.event("c")), "t2 fire/count [] n=1 seqs=3")
	patch := events.NewRecord(4, f.epoch, f.now, "n1", events.KindPatch, json.RawMessage(`[{"op":"add","path":"/x","value":1}]`))
	expect(t, "patch", e.Apply(patch))
	num := events.NewRecord(5, f.epoch, f.now, "n1", events.KindEvent, json.RawMessage(`{"id":1,"x":1}`))
	expect(t, "numeric id", e.Apply(num), "t2 fire/count [] n=1 seqs=5", "t5 fire/count [] n=1 seqs=5")
}
