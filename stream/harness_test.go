package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/tidwall/gjson"

	"agent/events"
)

// testBus is a Bus the test can publish on.
type testBus interface {
	Bus
	Publish(nodename, kind string, data json.RawMessage) *events.Record
}

// forEachBus runs f against the fake bus and the real events.Bus, both
// keeping ring records and with lag limit maxLag.
func forEachBus(t *testing.T, ring, maxLag int, f func(t *testing.T, b testBus)) {
	t.Run("fake", func(t *testing.T) {
		f(t, newFakeBus(ring, maxLag))
	})
	t.Run("real", func(t *testing.T) {
		b, err := events.Open(events.Config{RingSize: ring, MaxLag: maxLag, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		f(t, BusAdapter{b})
	})
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// store is a stand-in for the cluster-data store: a document changed by
// random patches, each published on the bus under the store's lock, so that
// Snapshot is atomic.
type store struct {
	mu  sync.Mutex
	bus testBus
	doc []byte
	rnd *rand.Rand
}

func newStore(b testBus, seed uint64) *store {
	doc := map[string]any{"cluster": map[string]any{"name": "t"}, "monitor": map[string]any{"nodes": map[string]any{}}}
	nodes := doc["monitor"].(map[string]any)["nodes"].(map[string]any)
	for i := range 30 {
		nodes[fmt.Sprintf("n%d", i)] = map[string]any{"gen": 0, "status": "idle", "frozen": 0,
			"labels": map[string]any{"zone": "a"}, "services": map[string]any{}}
	}
	raw, _ := json.Marshal(doc)
	return &store{bus: b, doc: raw, rnd: rand.New(rand.NewPCG(seed, 1))}
}

// change makes one random change and publishes its patch.
func (s *store) change() *events.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := fmt.Sprintf("n%d", s.rnd.IntN(30))
	var ops []map[string]any
	switch s.rnd.IntN(4) {
	case 0:
		ops = append(ops, map[string]any{"op": "replace", "path": "/monitor/nodes/" + n + "/frozen", "value": s.rnd.IntN(1 << 30)})
	case 1:
		ops = append(ops, map[string]any{"op": "add", "path": "/monitor/nodes/" + n + "/services/svc" + strconv.Itoa(s.rnd.IntN(5)),
			"value": map[string]any{"avail": "up", "monitor": map[string]any{"status": "idle"}}})
	case 2:
		ops = append(ops, map[string]any{"op": "replace", "path": "/monitor/nodes/" + n + "/status", "value": []string{"idle", "init", "rejoin"}[s.rnd.IntN(3)]})
	case 3:
		ops = append(ops, map[string]any{"op": "replace", "path": "/monitor/nodes/" + n + "/services", "value": map[string]any{}})
	}
	ops = append(ops, map[string]any{"op": "replace", "path": "/monitor/nodes/" + n + "/gen", "value": s.rnd.IntN(1000)})
	raw, _ := json.Marshal(ops)
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		panic(err)
	}
	doc, err := p.Apply(s.doc)
	if err != nil {
		panic(err)
	}
	s.doc = doc
	return s.bus.Publish(n, events.KindPatch, raw)
}

func (s *store) snapshot() (json.RawMessage, events.Subscriber, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq, epoch := s.bus.Position()
	sub, err := s.bus.Subscribe(events.SubscribeOptions{Resume: true, Since: seq, Epoch: epoch})
	if err != nil {
		return nil, nil, 0, err
	}
	return append(json.RawMessage(nil), s.doc...), sub, seq, nil
}

func (s *store) current() ([]byte, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq, _ := s.bus.Position()
	return s.doc, seq
}

// testFilter is a stand-in for the filter package: "PATH=VALUE" terms.
func testFilter(expr string) (func([]byte) bool, error) {
	path, value, ok := strings.Cut(expr, "=")
	if !ok || path == "" {
		return nil, fmt.Errorf("column %d: expected PATH=VALUE", len(expr)+1)
	}
	return func(rec []byte) bool { return gjson.GetBytes(rec, path).String() == value }, nil
}

// trackingListener remembers accepted connections so a test can cut them,
// which httptest cannot do for hijacked ones.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// cut closes every connection accepted so far.
func (l *trackingListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

type testServer struct {
	*httptest.Server
	h   *Handler
	lis *trackingListener
	url string
}

// serve starts a loopback server for cfg; Close of the test stops it.
func serve(t testing.TB, cfg HandlerConfig) *testServer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.ParseFilter == nil {
		cfg.ParseFilter = testFilter
	}
	h := NewHandler(cfg)
	ts := httptest.NewUnstartedServer(h)
	lis := &trackingListener{Listener: ts.Listener}
	ts.Listener = lis
	ts.Start()
	s := &testServer{Server: ts, h: h, lis: lis, url: ts.URL + "/v1/events"}
	t.Cleanup(func() {
		_ = h.Close()
		ts.Close()
	})
	return s
}

// dial dials the test server and closes the stream at the end.
func dial(t testing.TB, s *testServer, opts DialOptions) *Stream {
	t.Helper()
	opts.URL = s.url
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 20 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := Dial(ctx, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// next reads one record, failing the test after a generous deadline.
func next(t testing.TB, st *Stream) *events.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec, err := st.Next(ctx)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	return rec
}

// nextData reads records until a patch or event one.
func nextData(t testing.TB, st *Stream) *events.Record {
	t.Helper()
	for {
		rec := next(t, st)
		if rec.Kind == events.KindPatch || rec.Kind == events.KindEvent {
			return rec
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func eventData(id string) json.RawMessage {
	return json.RawMessage(`{"id":"` + id + `","reason":"test"}`)
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
