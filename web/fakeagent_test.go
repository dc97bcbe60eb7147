package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	jsonpatch "github.com/evanphx/json-patch/v5"

	"agent/events"
	"agent/web"
)

// fakeAgent serves the page and a GET /v1/events that behaves as the
// agent's does for what the page uses: snapshot, batch, resume with
// since/epoch, reset with a new snapshot, and token auth (Authorization or
// the subprotocol, read with web.BearerToken).
type fakeAgent struct {
	t     *testing.T
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	epoch    string
	doc      []byte           // the cluster data at seq
	seq      uint64           // newest seq
	records  []*events.Record // numbered records, consecutive, ending at seq
	notify   chan struct{}    // closed and replaced on publish
	kick     chan struct{}    // closed and replaced by drop
	queries  []url.Values     // of accepted websockets, in order
	backlog  []*events.Record // what GET /v1/journal serves: records up to seq 10
	closed   bool
	sessions sync.WaitGroup
}

// newFakeAgent starts a fake agent holding doc at seq 10 of epoch "e1".
func newFakeAgent(t *testing.T, doc []byte, token string) *fakeAgent {
	f := &fakeAgent{t: t, token: token, epoch: "e1", doc: doc, seq: 10, notify: make(chan struct{}), kick: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/v1/events", f)
	mux.HandleFunc("/v1/journal", f.journal)
	mux.Handle("/", web.Handler())
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.close)
	return f
}

// journal serves GET /v1/journal as the agent does: the backlog's records
// up to until, as JSON lines.
func (f *fakeAgent) journal(w http.ResponseWriter, r *http.Request) {
	if f.token != "" && web.BearerToken(r) != f.token {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	until, _ := strconv.ParseUint(r.URL.Query().Get("until"), 10, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-ndjson")
	for _, rec := range f.backlog {
		if rec.Seq <= until && r.URL.Query().Get("epoch") == rec.Epoch {
			_, _ = w.Write(append(rec.JSON(), '\n'))
		}
	}
}

func (f *fakeAgent) close() {
	f.mu.Lock()
	f.closed = true
	close(f.kick)
	f.kick = make(chan struct{})
	f.mu.Unlock()
	f.srv.Close()
	f.sessions.Wait()
}

func (f *fakeAgent) record(seq uint64, kind, node string, data []byte) *events.Record {
	return events.NewRecord(seq, f.epoch, time.Now(), node, kind, data)
}

// publishLocked numbers a record; f.mu is held.
func (f *fakeAgent) publishLocked(kind, node string, data []byte) {
	f.seq++
	f.records = append(f.records, f.record(f.seq, kind, node, data))
	close(f.notify)
	f.notify = make(chan struct{})
}

// patch applies ops (JSON) to the document and publishes them.
func (f *fakeAgent) patch(node, ops string) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := jsonpatch.DecodePatch([]byte(ops))
	if err == nil {
		f.doc, err = p.Apply(f.doc)
	}
	if err != nil {
		f.t.Fatalf("fake agent: patch %s: %v", ops, err)
	}
	f.publishLocked(events.KindPatch, node, []byte(ops))
}

// event publishes an event record.
func (f *fakeAgent) event(node string, data map[string]any) {
	f.t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publishLocked(events.KindEvent, node, b)
}

// restart simulates lost history: a new epoch and document, numbering
// going on from 1.
func (f *fakeAgent) restart(epoch string, doc []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epoch, f.doc, f.seq, f.records = epoch, doc, 1, nil
	close(f.kick)
	f.kick = make(chan struct{})
}

// drop cuts every open websocket without a close frame.
func (f *fakeAgent) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.kick)
	f.kick = make(chan struct{})
}

// accepted returns the queries of the websockets accepted so far.
func (f *fakeAgent) accepted() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.queries...)
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.token != "" && web.BearerToken(r) != f.token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"missing or wrong token"}`))
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUpgradeRequired)
		_, _ = w.Write([]byte(`{"error":"events: this endpoint is a websocket"}`))
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	f.sessions.Add(1)
	f.mu.Unlock()
	defer f.sessions.Done()

	opts := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled}
	if p := r.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		opts.Subprotocols = []string{strings.TrimSpace(strings.Split(p, ",")[0])}
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		return
	}
	defer func() { _ = c.CloseNow() }()
	ctx := c.CloseRead(r.Context())
	q := r.URL.Query()
	batch := q.Get("batch") == "1"

	f.mu.Lock()
	f.queries = append(f.queries, q)
	pos, first := f.startLocked(q)
	epoch := f.epoch
	kick := f.kick
	f.mu.Unlock()
	for _, rec := range first {
		if err := c.Write(ctx, websocket.MessageText, rec.JSON()); err != nil {
			return
		}
	}
	for {
		f.mu.Lock()
		var recs []*events.Record
		if f.epoch != epoch {
			f.mu.Unlock()
			return // history changed under this session: the client must resume
		}
		if f.seq > pos {
			recs = f.records[len(f.records)-int(f.seq-pos):]
			pos = f.seq
		}
		notify := f.notify
		f.mu.Unlock()
		if err := writeRecords(ctx, c, recs, batch); err != nil {
			return
		}
		select {
		case <-notify:
		case <-kick:
			return
		case <-ctx.Done():
			return
		}
	}
}

// startLocked decides where a session starts and what it gets first.
func (f *fakeAgent) startLocked(q url.Values) (uint64, []*events.Record) {
	snapshot := q.Get("snapshot") == "1"
	full := func() *events.Record { return f.record(f.seq, events.KindFull, "n1", f.doc) }
	if s := q.Get("since"); s != "" {
		since, err := strconv.ParseUint(s, 10, 64)
		oldest := f.seq - uint64(len(f.records))
		if err == nil && q.Get("epoch") == f.epoch && since <= f.seq && since >= oldest {
			return since, nil
		}
		reason, _ := json.Marshal(map[string]string{"reason": "epoch " + q.Get("epoch") + " is gone"})
		first := []*events.Record{f.record(f.seq, events.KindReset, "n1", reason)}
		if snapshot {
			first = append(first, full())
		}
		return f.seq, first
	}
	if snapshot {
		return f.seq, []*events.Record{full()}
	}
	return f.seq, []*events.Record{f.record(f.seq, events.KindProgress, "n1", nil)}
}

func writeRecords(ctx context.Context, c *websocket.Conn, recs []*events.Record, batch bool) error {
	if !batch {
		for _, r := range recs {
			if err := c.Write(ctx, websocket.MessageText, r.JSON()); err != nil {
				return err
			}
		}
		return nil
	}
	const maxFrame = 256 << 10
	var buf []byte
	for i, r := range recs {
		if len(buf) > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, r.JSON()...)
		if len(buf) >= maxFrame || i == len(recs)-1 {
			if err := c.Write(ctx, websocket.MessageText, buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return nil
}

// threeNodes is the cluster data of a 3-node cluster with two services.
func threeNodes() []byte {
	return []byte(`{
  "cluster": {"name": "test", "nodes": {
    "n1": {"state": "alive", "addr": "10.0.0.1:10000", "since": "2026-11-22T10:00:00Z"},
    "n2": {"state": "alive", "addr": "10.0.0.2:10000", "since": "2026-11-22T10:00:00Z"},
    "n3": {"state": "alive", "addr": "10.0.0.3:10000", "since": "2026-11-22T10:00:00Z"}}},
  "monitor": {
    "nodes": {
      "n1": {"gen": 42, "status": "idle", "frozen": 0, "labels": {"zone": "a"}, "stats": {"load_15m": 0.3, "mem_avail_pct": 71},
             "services": {"web": {"avail": "up", "frozen": 0, "monitor": {"status": "idle", "global_expect": "started", "placement": "leader"}},
                          "db": {"avail": "up", "frozen": 0, "monitor": {"status": "idle", "placement": "leader"}}}},
      "n2": {"gen": 7, "status": "idle", "frozen": 0, "labels": {"zone": "b", "a/b~c": "x"}, "stats": {"load_15m": 1.2, "mem_avail_pct": 40},
             "services": {"web": {"avail": "down", "frozen": 0, "monitor": {"status": "idle", "placement": ""}},
                          "db": {"avail": "warn", "frozen": 0, "monitor": {"status": "idle", "placement": ""}}}},
      "n3": {"gen": 3, "status": "idle", "frozen": 0, "labels": {"zone": "c"}, "stats": {"load_15m": 0.1, "mem_avail_pct": 90},
             "services": {"web": {"avail": "down", "frozen": 0, "monitor": {"status": "idle", "placement": ""}}}}
    },
    "services": {
      "web": {"avail": "up", "overall": "up", "frozen": "thawed", "placement": "optimal", "up": ["n1"]},
      "db": {"avail": "up", "overall": "warn", "frozen": "thawed", "placement": "optimal", "up": ["n1"]}
    }
  }
}`)
}
