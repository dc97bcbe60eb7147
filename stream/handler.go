package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"agent/events"
)

// Log attribute keys.
const (
	logKeyRemote = "remote"
	logKeyQuery  = "query"
	logKeyError  = "error"
	logKeyCode   = "code"
	logKeyReason = "reason"
)

// Defaults of HandlerConfig.
const (
	DefaultProgress     = 5 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultCloseGrace   = 2 * time.Second
	DefaultBatchWindow  = 20 * time.Millisecond
	DefaultReadLimit    = 4 << 10
)

// maxBatchBytes bounds one batch=1 frame; a record bigger than that goes
// alone in its frame.
const maxBatchBytes = 256 << 10

// HandlerConfig configures the GET /v1/events handler.
type HandlerConfig struct {
	// Bus is the agent's record bus. Required.
	Bus Bus
	// Snapshot atomically takes the cluster data and subscribes after it:
	// doc is exact at seq and sub delivers seq+1 onward. Needed for
	// snapshot=1; without it such requests get HTTP 501.
	Snapshot func() (doc json.RawMessage, sub events.Subscriber, seq uint64, err error)
	// ParseFilter compiles one filter expression (SPEC section 6) into a
	// predicate over a record's JSON. Without it filter= gets HTTP 400.
	ParseFilter func(expr string) (func(record []byte) bool, error)
	// Nodename is written in the full, reset and progress records.
	Nodename string
	// Progress is how long a subscriber may go without a message before it
	// gets a progress record. Default DefaultProgress.
	Progress time.Duration
	// MaxLag is the lag limit of each subscription, in records; 0 means the
	// bus default.
	MaxLag int
	// WriteTimeout bounds one websocket write; a subscriber whose socket
	// stays full longer is dropped. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// CloseGrace bounds the close handshake with a subscriber. Default
	// DefaultCloseGrace.
	CloseGrace time.Duration
	// BatchWindow is how long a batch=1 subscriber gathers records before a
	// frame is written. Default DefaultBatchWindow.
	BatchWindow time.Duration
	// ReadLimit is the largest frame a client may send. Default
	// DefaultReadLimit.
	ReadLimit int64
	// OriginPatterns lists the browser origins allowed besides the agent's
	// own host (see websocket.AcceptOptions).
	OriginPatterns []string
	// MaxSubscribers caps the open streams; one more gets HTTP 503. 0
	// means no cap.
	MaxSubscribers int
	// Now gives the time written in records. Default time.Now.
	Now func() time.Time
	// Logger receives one line per abnormal disconnect. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work.
func (c *HandlerConfig) Validate() error {
	if c.Bus == nil {
		return errors.New("stream handler: Bus is required")
	}
	for name, d := range map[string]time.Duration{"Progress": c.Progress, "WriteTimeout": c.WriteTimeout, "CloseGrace": c.CloseGrace, "BatchWindow": c.BatchWindow} {
		if d < 0 {
			return fmt.Errorf("stream handler: %s is negative (%s)", name, d)
		}
	}
	if c.MaxLag < 0 || c.ReadLimit < 0 || c.MaxSubscribers < 0 {
		return errors.New("stream handler: MaxLag, ReadLimit and MaxSubscribers must not be negative")
	}
	return nil
}

func (c *HandlerConfig) setDefaults() {
	if c.Progress == 0 {
		c.Progress = DefaultProgress
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.CloseGrace == 0 {
		c.CloseGrace = DefaultCloseGrace
	}
	if c.BatchWindow == 0 {
		c.BatchWindow = DefaultBatchWindow
	}
	if c.ReadLimit == 0 {
		c.ReadLimit = DefaultReadLimit
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Handler serves GET /v1/events. Close ends every stream it serves.
type Handler struct {
	cfg HandlerConfig
	log *slog.Logger

	// ctx is cancelled by Close; every session watches it.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed and wg.Add against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup

	invalid error // from Validate; answered to every request

	fr *framer // shared batch frames

	subscribers     atomic.Int64 // streams open or opening
	slowDisconnects atomic.Uint64
	refused         atomic.Uint64 // past MaxSubscribers
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns the handler of GET /v1/events. When cfg does not
// validate, every request gets HTTP 500 with the reason (and it is logged
// once), so that wiring mistakes show without crashing the agent.
func NewHandler(cfg HandlerConfig) *Handler {
	err := cfg.Validate()
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "stream"), ctx: ctx, cancel: cancel, invalid: err}
	h.fr = &framer{h: h}
	if err != nil {
		h.log.Error("events handler misconfigured", logKeyError, err)
	}
	return h
}

// Stats are the handler's figures for /metrics.
type Stats struct {
	// Subscribers is the number of open streams.
	Subscribers int64
	// SlowDisconnects counts streams closed because they could not keep up.
	SlowDisconnects uint64
	// Refused counts subscriptions refused past MaxSubscribers.
	Refused uint64
}

// Stats returns the handler's current figures.
func (h *Handler) Stats() Stats {
	return Stats{Subscribers: h.subscribers.Load(), SlowDisconnects: h.slowDisconnects.Load(), Refused: h.refused.Load()}
}

// Close closes every stream with status 1001 (going away), refuses new
// ones with HTTP 503, and waits until all their goroutines have ended.
func (h *Handler) Close() error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
	return nil
}

func (h *Handler) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

// httpError writes {"error": msg} with status code.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// ServeHTTP checks the query, subscribes, upgrades to a websocket and
// streams until the client goes, the subscription ends or Close.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpError(w, http.StatusMethodNotAllowed, "events: method "+r.Method+" not allowed, use GET")
		return
	}
	if !h.enter() {
		httpError(w, http.StatusServiceUnavailable, "events: agent is shutting down")
		return
	}
	defer h.wg.Done()
	if h.invalid != nil {
		httpError(w, http.StatusInternalServerError, h.invalid.Error())
		return
	}

	req, err := parseRequest(r.URL.Query(), h.cfg.ParseFilter)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		httpError(w, http.StatusUpgradeRequired, "events: this endpoint is a websocket (Upgrade: websocket)")
		return
	}
	if req.snapshot && h.cfg.Snapshot == nil {
		httpError(w, http.StatusNotImplemented, "events: snapshot is not available on this agent")
		return
	}

	// The slot is taken before the subscription and the upgrade, so that
	// a burst of clients cannot all pass the check.
	if n := h.subscribers.Add(1); h.cfg.MaxSubscribers > 0 && n > int64(h.cfg.MaxSubscribers) {
		h.subscribers.Add(-1)
		h.refused.Add(1)
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("events: %d subscribers already, the most this agent serves ([listener] max_subscribers)", h.cfg.MaxSubscribers))
		return
	}
	defer h.subscribers.Add(-1)

	s := &session{h: h, req: req}
	if err := s.open(); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, events.ErrClosed) {
			code = http.StatusServiceUnavailable
		}
		httpError(w, code, "events: "+err.Error())
		return
	}
	defer func() { s.sub.Close() }()

	opts := &websocket.AcceptOptions{OriginPatterns: h.cfg.OriginPatterns, CompressionMode: websocket.CompressionDisabled}
	// A browser cannot set Authorization on a websocket; it may offer the
	// token as a subprotocol. The middleware checked it; echo it back or the
	// browser drops the connection.
	if p := firstSubprotocol(r.Header); p != "" {
		opts.Subprotocols = []string{p}
	}
	conn, err := websocket.Accept(largeWriteBuffer{w}, r, opts)
	if err != nil {
		// Accept has answered the request.
		h.log.Debug("websocket accept failed", logKeyRemote, r.RemoteAddr, logKeyError, err)
		return
	}
	s.conn = conn
	s.log = h.log.With(logKeyRemote, r.RemoteAddr)
	s.run(r.Context())
}

// firstSubprotocol returns the first token of Sec-WebSocket-Protocol.
func firstSubprotocol(hd http.Header) string {
	for _, v := range hd.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				return p
			}
		}
	}
	return ""
}
