package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"agent/events"
)

var (
	// errShutdown is the cause of a session's end when the handler closes.
	errShutdown = errors.New("agent shutting down")
	// errClientGone is the cause when the client's side of the socket ends.
	errClientGone = errors.New("client went away")
)

// session is one websocket subscriber. All its fields are owned by the
// goroutine running ServeHTTP, except where noted.
type session struct {
	h    *Handler
	req  *request
	conn *websocket.Conn
	fc   *frameConn // the connection under conn
	log  *slog.Logger
	sel  *selector // of a shared session (one that follows a framer)

	sub   events.Subscriber
	first []*events.Record // full, reset or progress records to send first

	// lastSeq is the newest seq the subscriber has been given or passed
	// over (filtered out); progress records carry it, so a client resuming
	// from it misses nothing it asked for.
	lastSeq uint64
	epoch   string

	lastWrite time.Time // monotonic; when the last frame went out
	sent      int       // patch and event records sent, for limit

	writeTimer *time.Timer // kills the connection when a write hangs
	batchTimer *time.Timer
	timedOut   atomic.Bool // set by writeTimer

	// w is the window at whose end a shared session stands, when it stands
	// at the end of one (lastSeq == w.to).
	w *window
	// back is signalled when the fan-out writer hands the session back.
	back chan struct{}

	// mu guards owner and reg, and, while the fan-out writer has the
	// session (owner is ownWriter), w, lastSeq, epoch and lastWrite: the
	// writer and the session's goroutine both use them then.
	mu    sync.Mutex
	owner int
	reg   uint64 // counts the givings to the writer
}

// record makes a full, reset or progress record for this subscriber.
func (s *session) record(seq uint64, kind string, data json.RawMessage) *events.Record {
	return events.NewRecord(seq, s.epoch, s.h.cfg.Now(), s.h.cfg.Nodename, kind, data)
}

// open subscribes as the request says and queues the records that precede
// the stream. On success s.sub is set and must be closed.
func (s *session) open() error {
	cfg := &s.h.cfg
	req := s.req
	head, epoch := cfg.Bus.Position()
	s.epoch = epoch

	if req.resume {
		ep := req.epoch
		if ep == "" {
			ep = epoch
		}
		sub, err := cfg.Bus.Subscribe(events.SubscribeOptions{Resume: true, Since: req.since, Epoch: ep, MaxLag: cfg.MaxLag})
		reason := ""
		if errors.Is(err, events.ErrFuture) {
			reason = fmt.Sprintf("resume point %d of epoch %s is after the newest record %d", req.since, ep, head)
			sub, err = cfg.Bus.Subscribe(events.SubscribeOptions{MaxLag: cfg.MaxLag})
		}
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		if reason == "" {
			reason = sub.Reset()
		}
		if reason == "" {
			s.sub, s.lastSeq = sub, sub.Start()
			return nil
		}
		s.first = append(s.first, s.reset(sub.Start(), reason))
		if !req.snapshot {
			s.sub, s.lastSeq = sub, sub.Start()
			return nil
		}
		sub.Close()
		return s.openSnapshot()
	}
	if req.snapshot {
		return s.openSnapshot()
	}

	sub, err := cfg.Bus.Subscribe(events.SubscribeOptions{SinceTime: req.sinceTime, MaxLag: cfg.MaxLag})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	s.sub, s.lastSeq = sub, sub.Start()
	if reason := sub.Reset(); reason != "" {
		s.first = append(s.first, s.reset(sub.Start(), reason))
	} else {
		// Tell the client at once where it starts, so that a reconnect
		// before the first record misses nothing.
		s.first = append(s.first, s.record(sub.Start(), events.KindProgress, nil))
	}
	return nil
}

func (s *session) reset(seq uint64, reason string) *events.Record {
	data, _ := json.Marshal(map[string]string{"reason": reason})
	return s.record(seq, events.KindReset, data)
}

func (s *session) openSnapshot() error {
	doc, sub, seq, err := s.h.cfg.Snapshot()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	s.first = append(s.first, s.record(seq, events.KindFull, doc))
	s.sub, s.lastSeq = sub, seq
	return nil
}

// run streams until the end, then closes the websocket and waits for the
// reader goroutine. reqCtx is the request's context.
func (s *session) run(reqCtx context.Context) {
	cfg := &s.h.cfg
	ctx, cancel := context.WithCancelCause(reqCtx)
	defer cancel(nil)
	stopShutdown := context.AfterFunc(s.h.ctx, func() { cancel(errShutdown) })
	defer stopShutdown()

	// The reader's context is separate: cancelling it force-closes the
	// socket (the library closes the connection when a read's context
	// ends), which is what kill does once the polite close had its chance.
	readCtx, readCancel := context.WithCancel(context.Background())
	kill := func() {
		readCancel()
		_ = s.conn.CloseNow()
	}
	s.writeTimer = time.AfterFunc(time.Hour, func() {
		s.timedOut.Store(true)
		kill()
	})
	s.writeTimer.Stop()
	killTimer := time.AfterFunc(time.Hour, kill)
	killTimer.Stop()
	// A write blocked on a full socket would hold up shutdown: give it the
	// grace period, then kill.
	stopKill := context.AfterFunc(ctx, func() { killTimer.Reset(cfg.CloseGrace) })
	s.batchTimer = time.NewTimer(time.Hour)
	s.batchTimer.Stop()

	s.conn.SetReadLimit(cfg.ReadLimit)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		cancel(s.readLoop(readCtx))
	}()

	code, reason := s.stream(ctx)

	stopKill()
	killTimer.Reset(cfg.CloseGrace)
	if code != 0 {
		_ = s.conn.Close(code, reason)
	}
	kill()
	<-readerDone
	killTimer.Stop()
	s.writeTimer.Stop()
	s.batchTimer.Stop()
}

// readLoop reads what the client sends, which is nothing useful: small
// messages are ignored. It returns why the client side ended.
func (s *session) readLoop(ctx context.Context) error {
	for {
		_, r, err := s.conn.Reader(ctx)
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errClientGone, err)
		}
	}
}

// stream writes the first records then the subscription's until something
// ends it, and returns the close status to send (0: none, the connection
// is gone).
func (s *session) stream(ctx context.Context) (websocket.StatusCode, string) {
	cfg := &s.h.cfg
	s.lastWrite = time.Now()
	for _, rec := range s.first {
		if err := s.write(rec.JSON()); err != nil {
			return s.endWrite(ctx, err)
		}
	}
	s.first = nil
	if s.req.shared() {
		s.sel = s.h.sels.get(s.req)
		defer s.h.sels.put(s.sel)
		if s.req.batch {
			return s.follow(ctx, s.h.fr)
		}
		return s.follow(ctx, s.h.fan)
	}

	// idle ends when a progress record may be due. It is renewed only then,
	// not per record, to keep allocations off the hot path.
	var idle idleTimer
	idle.arm(ctx, s.lastWrite.Add(cfg.Progress))
	defer idle.stop()
	for {
		rec, err := s.sub.Next(idle.ctx)
		if err != nil {
			if ctx.Err() != nil {
				return s.endCtx(ctx)
			}
			if idle.ctx.Err() != nil {
				if err := s.progressIfDue(); err != nil {
					return s.endWrite(ctx, err)
				}
				idle.arm(ctx, s.lastWrite.Add(cfg.Progress))
				continue
			}
			return s.endSub(err)
		}
		s.see(rec)
		if !s.req.pass(rec) {
			continue
		}
		if s.req.batch {
			err = s.writeBatch(ctx, rec)
		} else {
			s.sent++
			err = s.write(rec.JSON())
		}
		if err != nil {
			return s.endWrite(ctx, err)
		}
		if s.req.limit > 0 && s.sent >= s.req.limit {
			return websocket.StatusNormalClosure, "limit reached"
		}
	}
}

// catchUp writes the records after s.lastSeq up to and including seq to,
// read from the subscription, several to a write(2): in batch frames of at
// most maxBatchBytes, or one message per record, encoded here. It returns
// the error that ended the subscription, or the write's.
func (s *session) catchUp(to uint64) (subErr, writeErr error) {
	s.sub.Skip(s.lastSeq)
	bp := getBatch()
	batch := (*bp)[:0]
	defer func() { putBatch(bp, batch) }()
	flush := func() error {
		var err error
		if s.req.batch {
			err = s.write(batch)
		} else {
			err = s.writeRaw(batch)
		}
		batch = batch[:0]
		return err
	}
	for s.lastSeq < to {
		rec, err := s.sub.Next(doneCtx)
		if err != nil {
			if errors.Is(err, doneCtx.Err()) {
				err = fmt.Errorf("records %d to %d are not in the stream", s.lastSeq+1, to)
			}
			return err, nil
		}
		s.see(rec)
		if !s.req.pass(rec) {
			continue
		}
		raw := rec.JSON()
		if len(batch) > 0 && len(batch)+1+maxFrameHeader+len(raw) > maxBatchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		switch {
		case !s.req.batch:
			batch = appendFrame(batch, raw)
			continue
		case len(batch) > 0:
			batch = append(batch, '\n')
		}
		batch = append(batch, raw...)
	}
	if len(batch) > 0 {
		return nil, flush()
	}
	return nil, nil
}

func (s *session) see(rec *events.Record) {
	if rec.Seq > s.lastSeq {
		s.lastSeq = rec.Seq
	}
	if rec.Epoch != "" {
		s.epoch = rec.Epoch
	}
}

// writeBatch gathers the records that follow first for one batch window,
// then writes them in one frame separated by "\n". It sleeps through the
// window rather than waking for each record, then takes what came; that is
// what makes batch=1 cheap for the bus and the scheduler.
func (s *session) writeBatch(ctx context.Context, first *events.Record) error {
	s.sent++
	s.batchTimer.Reset(s.h.cfg.BatchWindow)
	select {
	case <-s.batchTimer.C:
	case <-ctx.Done():
		s.batchTimer.Stop()
		return ctx.Err()
	}
	bp := getBatch()
	batch := append((*bp)[:0], first.JSON()...)
	// Next with a context already done returns what is available without
	// waiting: the batch ends where the subscriber has caught up.
	for len(batch) < maxBatchBytes && (s.req.limit == 0 || s.sent < s.req.limit) {
		// An error here (caught up, or the end of the subscription) ends
		// the batch; an ending error comes back at the next Next.
		rec, err := s.sub.Next(doneCtx)
		if err != nil {
			break
		}
		s.see(rec)
		if !s.req.pass(rec) {
			continue
		}
		s.sent++
		batch = append(batch, '\n')
		batch = append(batch, rec.JSON()...)
	}
	err := s.write(batch)
	putBatch(bp, batch)
	return err
}

// batchPool holds batch buffers between frames, so that a subscriber
// holds one only while it fills and writes it: a thousand subscribers that
// fell behind do not each keep a quarter-megabyte buffer.
var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func getBatch() *[]byte { return batchPool.Get().(*[]byte) }

// putBatch returns bp, now holding b, to the pool, unless b grew past what
// is worth keeping.
func putBatch(bp *[]byte, b []byte) {
	if cap(b) <= 2*maxBatchBytes {
		*bp = b[:0]
		batchPool.Put(bp)
	}
}

// progressIfDue writes a progress record when nothing was written for the
// progress interval.
func (s *session) progressIfDue() error {
	if time.Since(s.lastWrite) < s.h.cfg.Progress {
		return nil
	}
	return s.write(s.record(s.lastSeq, events.KindProgress, nil).JSON())
}

// doneCtx is a context that is always done.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// write sends one text frame, bounded by the write timeout.
func (s *session) write(p []byte) error {
	// The write gets a context without Done so that the library does not
	// arm a timer per frame; writeTimer bounds it instead.
	s.writeTimer.Reset(s.h.cfg.WriteTimeout)
	err := s.conn.Write(context.Background(), websocket.MessageText, p)
	s.writeTimer.Stop()
	s.lastWrite = time.Now()
	return err
}

// writeRaw writes p, frames encoded here, bounded by the write timeout;
// the rest of a write the fan-out writer cut goes first.
func (s *session) writeRaw(p []byte) error {
	s.writeTimer.Reset(s.h.cfg.WriteTimeout)
	_, err := s.fc.Write(p)
	s.writeTimer.Stop()
	s.lastWrite = time.Now()
	return err
}

func (s *session) endWrite(ctx context.Context, err error) (websocket.StatusCode, string) {
	if ctx.Err() != nil {
		return s.endCtx(ctx)
	}
	if s.timedOut.Load() {
		s.log.Info("subscriber dropped: write timed out", "timeout", s.h.cfg.WriteTimeout)
	} else {
		s.log.Debug("subscriber write failed", logKeyError, err)
	}
	return 0, ""
}

func (s *session) endCtx(ctx context.Context) (websocket.StatusCode, string) {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errShutdown):
		return websocket.StatusGoingAway, "agent shutting down"
	case errors.Is(cause, errClientGone):
		if websocket.CloseStatus(cause) != -1 || errors.Is(cause, io.EOF) || errors.Is(cause, io.ErrUnexpectedEOF) ||
			errors.Is(cause, net.ErrClosed) || errors.Is(cause, websocket.ErrMessageTooBig) || s.timedOut.Load() {
			// Closed by the client, or already answered by the library.
			s.log.Debug("subscriber gone", logKeyError, cause)
			return 0, ""
		}
		s.log.Info("subscriber dropped: bad frame", logKeyError, cause)
		return websocket.StatusProtocolError, closeReason("bad frame: " + cause.Error())
	}
	return 0, ""
}

func (s *session) endSub(err error) (websocket.StatusCode, string) {
	switch {
	case errors.Is(err, events.ErrSlow):
		s.h.slowDisconnects.Add(1)
		reason := closeReason("could not keep up: " + err.Error())
		s.log.Warn("subscriber dropped", logKeyCode, int(websocket.StatusPolicyViolation), logKeyReason, reason)
		return websocket.StatusPolicyViolation, reason
	case errors.Is(err, events.ErrClosed):
		return websocket.StatusGoingAway, "stream closed"
	}
	s.log.Error("subscription failed", logKeyError, err)
	return websocket.StatusInternalError, closeReason("subscription failed: " + err.Error())
}

// closeReason cuts a reason to the 123 bytes a close frame can carry,
// without splitting a UTF-8 sequence.
func closeReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// idleTimer is a context that ends at a deadline, renewable.
type idleTimer struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (t *idleTimer) arm(parent context.Context, deadline time.Time) {
	t.stop()
	t.ctx, t.cancel = context.WithDeadline(parent, deadline)
}

func (t *idleTimer) stop() {
	if t.cancel != nil {
		t.cancel()
	}
}
