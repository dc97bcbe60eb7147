package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"agent/config"
	"agent/events"
	"agent/history"
	"agent/metrics"
)

// historyExt is the history side of the agent: the sinks that write the
// journal to databases, and readers for GET /v1/history.
type historyExt struct {
	sinks   *history.Manager
	applied int // sink sets given to the manager

	mu      sync.Mutex // guards readers
	readers map[string]*historyReader
}

// historyReader is an open reader of one sink's database.
type historyReader struct {
	target history.Target
	db     *history.DB
}

// newSinks builds the sink manager and applies the sinks of node.conf.
func (a *Agent) newSinks() error {
	cfg := a.Config()
	m, err := history.NewManager(history.ManagerConfig{
		Origin:    history.Origin{Cluster: cfg.Cluster.Name, Agent: cfg.Node.Name},
		Resolve:   a.sinkTarget,
		Bus:       a.bus,
		CursorDir: filepath.Join(a.paths.VarDir, "sinks"),
		Publish:   func(data json.RawMessage) { a.publish(a.Name(), events.KindEvent, data) },
		Head:      func() uint64 { seq, _ := a.bus.Position(); return seq },
		Logger:    a.log,
		Tune:      a.opts.TuneSink,
	})
	if err != nil {
		return err
	}
	a.ext.history.sinks = m
	a.reloadSinks(cfg.Sinks)
	return nil
}

// sinkTarget resolves a sink's database, with the permission checks of
// its secrets.
func (a *Agent) sinkTarget(s config.Sink) (history.Target, error) {
	return history.TargetOf(s, a.paths.VarDir, a.paths.NodeConf)
}

// reloadSinks applies a sink set. (A node.conf others could change, or
// read while it holds a dsn, never gets here: the watcher refuses it.)
func (a *Agent) reloadSinks(list []config.Sink) {
	if len(list) == 0 && a.ext.history.applied == 0 {
		return
	}
	if err := a.ext.history.sinks.Update(list); err != nil {
		a.log.Error("some history sinks refused", "err", err)
	}
	a.ext.history.applied++
	a.closeHistoryReaders()
}

// closeHistoryReaders drops the readers, so the next request opens the
// database the config names now.
func (a *Agent) closeHistoryReaders() {
	h := &a.ext.history
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, r := range h.readers {
		_ = r.db.Close()
		delete(h.readers, name)
	}
}

// stopSinks stops the sinks (each writes what it holds, briefly) and
// closes the readers.
func (a *Agent) stopSinks() {
	if a.ext.history.sinks != nil {
		_ = a.ext.history.sinks.Close()
	}
	a.closeHistoryReaders()
}

// historyDB returns a reader of the named sink's database ("" the first
// sink of node.conf).
func (a *Agent) historyDB(name string) (*history.DB, error) {
	sink, err := a.Config().FindSink(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", history.ErrNoSink, err)
	}
	t, err := a.sinkTarget(sink)
	if err != nil {
		return nil, err
	}
	h := &a.ext.history
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.readers[sink.Name]; ok {
		if r.target == t {
			return r.db, nil
		}
		_ = r.db.Close()
		delete(h.readers, sink.Name)
	}
	db, err := history.OpenReader(t)
	if err != nil {
		return nil, err
	}
	if h.readers == nil {
		h.readers = map[string]*historyReader{}
	}
	h.readers[sink.Name] = &historyReader{target: t, db: db}
	return db, nil
}

// historyHandler serves GET /v1/history and /v1/history/timeline.
func (a *Agent) historyHandler() http.Handler {
	return &history.Handler{Open: a.historyDB}
}

// sinkStats converts the sinks' figures for /metrics.
func (a *Agent) sinkStats() []metrics.SinkStats {
	if a.ext.history.sinks == nil {
		return nil
	}
	st := a.ext.history.sinks.Stats()
	out := make([]metrics.SinkStats, len(st))
	for i, s := range st {
		out[i] = metrics.SinkStats{Name: s.Name, Written: s.Written, Duplicates: s.Duplicates, Errors: s.Errors,
			Skipped: s.Skipped, Deleted: s.Deleted, Batches: s.Batches, BatchRecords: s.BatchRecords,
			BatchSeconds: s.BatchSeconds, LagRecords: s.LagRecords, LagSeconds: s.LagSeconds, Up: s.Up}
	}
	return out
}

// Journal answer limits of GET /v1/journal.
const (
	journalDefaultLimit = 200
	journalMaxLimit     = 5000
	journalScanBack     = 50000 // records read back at most to find them
)

// getJournal answers the newest records of the journal, oldest first, one
// JSON line each: the web page starts its event log with them. Parameters:
// kind (event, patch; default both), limit (default 200, at most 5000),
// and until=SEQ&epoch=E (default: the head) for the records up to SEQ.
func (a *Agent) getJournal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kinds := map[string]bool{events.KindEvent: true, events.KindPatch: true}
	if k := q.Get("kind"); k != "" {
		kinds = map[string]bool{}
		for _, s := range strings.Split(k, ",") {
			if s != events.KindEvent && s != events.KindPatch {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("kind %q: want event or patch", s))
				return
			}
			kinds[s] = true
		}
	}
	limit := journalDefaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > journalMaxLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1 to %d", s, journalMaxLimit))
			return
		}
		limit = n
	}
	head, epoch := a.bus.Position()
	until := head
	if s := q.Get("until"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("until %q: want a seq", s))
			return
		}
		if e := q.Get("epoch"); e != "" && e != epoch {
			// Another epoch: its records are not served; say so with an
			// empty answer rather than records of another numbering.
			w.Header().Set("Content-Type", "application/x-ndjson")
			return
		}
		until = min(n, head)
	}
	recs, err := a.lastRecords(until, epoch, limit, kinds)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	buf := make([]byte, 0, 64<<10)
	for _, rec := range recs {
		buf = append(append(buf, rec.JSON()...), '\n')
	}
	_, _ = w.Write(buf)
}

// pollContext is done already: Next with it returns only what is there.
var pollContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// lastRecords reads back from until for the newest limit records of the
// kinds asked, oldest first.
func (a *Agent) lastRecords(until uint64, epoch string, limit int, kinds map[string]bool) ([]*events.Record, error) {
	if until == 0 {
		return nil, nil
	}
	from := until - min(until, journalScanBack)
	from = max(from, a.bus.Oldest()-1)
	sub, err := a.bus.Subscribe(events.SubscribeOptions{Resume: true, Since: from, Epoch: epoch})
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	if sub.Reset() != "" {
		// Retention or an epoch change between the two calls: nothing to
		// show rather than records from elsewhere.
		return nil, nil
	}
	ring := make([]*events.Record, 0, limit)
	next := 0
	for {
		rec, err := sub.Next(pollContext)
		if err != nil || rec.Seq > until {
			break
		}
		if !kinds[rec.Kind] {
			continue
		}
		if len(ring) < limit {
			ring = append(ring, rec)
		} else {
			ring[next] = rec
			next = (next + 1) % limit
		}
		if rec.Seq == until {
			break
		}
	}
	return append(ring[next:], ring[:next]...), nil
}
