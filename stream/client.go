package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"agent/events"
)

// Errors of Stream.Next besides io.EOF (the agent ended the stream
// normally, as after limit=N).
var (
	// ErrStreamClosed is returned after Close.
	ErrStreamClosed = errors.New("stream closed")
	// ErrDisconnected: the connection was lost without a close frame (and
	// Reconnect is off, or the agent refused the reconnection).
	ErrDisconnected = errors.New("events stream disconnected")
)

// Defaults of DialOptions.
const (
	DefaultMaxBackoff    = 5 * time.Second
	DefaultClientMaxSize = 64 << 20
	minBackoff           = 100 * time.Millisecond
)

// DialOptions says which agent to subscribe to and what to ask for.
type DialOptions struct {
	// HTTPClient carries the connection; UnixHTTPClient makes one for the
	// agent's socket. Default http.DefaultClient.
	HTTPClient *http.Client
	// URL of the events endpoint: "http://unix/v1/events" (with a unix
	// socket client), "http://127.0.0.1:1215/v1/events", https or ws(s).
	URL string
	// Token, when set, is sent as "Authorization: Bearer TOKEN".
	Token string
	// Kinds selects record kinds ("event", "patch"); empty means both.
	Kinds []string
	// Filters are filter expressions, OR'ed, applied by the agent to each
	// patch and event record.
	Filters []string
	// Snapshot asks for a full record first (and again after a reset).
	Snapshot bool
	// Since and Epoch resume after record Since of Epoch. Resuming is asked
	// for when either is set; an empty Epoch means the agent's current one.
	Since uint64
	Epoch string
	// SinceTime, when not zero, starts at the first record at or after it.
	SinceTime time.Time
	// Reconnect makes the stream survive dropped connections: it redials
	// with backoff and resumes after the last record delivered.
	Reconnect bool
	// Batch asks the agent for several records per frame (the batch=1
	// extension). Next still returns one record at a time.
	Batch bool
	// MaxBackoff bounds the wait between reconnect attempts. Default
	// DefaultMaxBackoff.
	MaxBackoff time.Duration
	// MaxMessage is the largest frame accepted (a full record can be big).
	// Default DefaultClientMaxSize.
	MaxMessage int64
	// Logger receives reconnects. Default slog.Default().
	Logger *slog.Logger
}

// HTTPError is an agent's refusal of the subscription request.
type HTTPError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the agent's {"error": ...}, or the start of the body.
	Message string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("agent answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Stream is a subscription to an agent's records. Next is to be called
// from one goroutine at a time; Close from any.
type Stream struct {
	opts DialOptions
	log  *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	out chan *events.Record // unbuffered: a record is delivered when Next takes it
	err error               // why the stream ended; written by run before out is closed

	// Owned by the run goroutine.
	have    bool // lastSeq and epoch are known
	lastSeq uint64
	epoch   string
}

// Dial connects to the events endpoint. An error connecting or a refusal
// by the agent is returned at once, whatever Reconnect says.
func Dial(ctx context.Context, opts DialOptions) (*Stream, error) {
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxMessage == 0 {
		opts.MaxMessage = DefaultClientMaxSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if _, err := url.Parse(opts.URL); err != nil {
		return nil, fmt.Errorf("events URL %q: %w", opts.URL, err)
	}
	s := &Stream{opts: opts, log: opts.Logger.With("component", "stream-client", "url", opts.URL), out: make(chan *events.Record)}
	conn, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(conn)
	}()
	return s, nil
}

// Next returns the next record: patch and event records in seq order,
// and full, reset and progress records where the agent sends them. With
// Reconnect, a dropped connection is resumed inside Next without gap or
// duplicate. At the end of a stream with a limit it returns io.EOF; after
// Close, ErrStreamClosed. A done ctx returns ctx's error and leaves the
// stream usable.
func (s *Stream) Next(ctx context.Context) (*events.Record, error) {
	select {
	case rec, ok := <-s.out:
		if !ok {
			return nil, s.err
		}
		return rec, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close ends the stream and waits for its goroutine.
func (s *Stream) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// run owns the connection: it reads records, hands them to Next, and
// reconnects when allowed.
func (s *Stream) run(conn *websocket.Conn) {
	defer close(s.out)
	backoff := min(minBackoff, s.opts.MaxBackoff)
	for {
		delivered, err := s.read(conn)
		_ = conn.CloseNow()
		if s.ctx.Err() != nil {
			s.err = ErrStreamClosed
			return
		}
		if !s.opts.Reconnect || !retryable(err) {
			s.err = err
			return
		}
		if delivered {
			backoff = min(minBackoff, s.opts.MaxBackoff)
		}
		s.log.Info("events stream dropped, reconnecting", logKeyError, err)
		for {
			if !s.sleep(backoff) {
				s.err = ErrStreamClosed
				return
			}
			backoff = min(2*backoff, s.opts.MaxBackoff)
			conn, err = s.dial(s.ctx)
			if err == nil {
				break
			}
			if s.ctx.Err() != nil {
				s.err = ErrStreamClosed
				return
			}
			if !retryable(err) {
				s.err = err
				return
			}
			s.log.Debug("events reconnect failed", logKeyError, err)
		}
	}
}

// sleep waits d with ±20% jitter; false when the stream is closed.
func (s *Stream) sleep(d time.Duration) bool {
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// retryable says whether a reconnect may help.
func retryable(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, errBadRecord) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode >= 500 || he.StatusCode == http.StatusTooManyRequests
	}
	return true
}

var errBadRecord = errors.New("bad record from agent")

// read delivers the records of one connection until it ends.
func (s *Stream) read(conn *websocket.Conn) (delivered bool, err error) {
	for {
		_, data, err := conn.Read(s.ctx)
		if err != nil {
			return delivered, closeError(err)
		}
		for len(data) > 0 {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			if len(line) == 0 {
				continue
			}
			rec, err := events.ParseRecord(line)
			if err != nil {
				return delivered, fmt.Errorf("%w: %w", errBadRecord, err)
			}
			if !s.accept(rec) {
				continue
			}
			select {
			case s.out <- rec:
				delivered = true
			case <-s.ctx.Done():
				return delivered, ErrStreamClosed
			}
		}
	}
}

// closeError turns the end of a connection into the error Next returns.
func closeError(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Code == websocket.StatusNormalClosure {
			return io.EOF
		}
		return fmt.Errorf("events stream closed by agent (status %d): %s: %w", int(ce.Code), ce.Reason, err)
	}
	// Not %w: a cut connection is not the io.EOF of a normal end.
	return fmt.Errorf("%w: %v", ErrDisconnected, err)
}

// accept drops what a resumed connection repeats, and tracks the resume
// point.
func (s *Stream) accept(rec *events.Record) bool {
	switch rec.Kind {
	case events.KindFull, events.KindReset:
	case events.KindProgress:
		if s.have && rec.Epoch == s.epoch && rec.Seq < s.lastSeq {
			return false
		}
	default:
		if s.have && rec.Epoch == s.epoch && rec.Seq <= s.lastSeq {
			return false
		}
	}
	s.have, s.lastSeq, s.epoch = true, rec.Seq, rec.Epoch
	return true
}

// query builds the request: the options at first, the resume point once
// something was delivered.
func (s *Stream) query() url.Values {
	o := &s.opts
	q := url.Values{}
	if len(o.Kinds) > 0 {
		q.Set(paramKind, strings.Join(o.Kinds, ","))
	}
	for _, f := range o.Filters {
		q.Add(paramFilter, f)
	}
	if o.Snapshot {
		q.Set(paramSnapshot, "1")
	}
	if o.Batch {
		q.Set(paramBatch, "1")
	}
	switch {
	case s.have:
		q.Set(paramSince, strconv.FormatUint(s.lastSeq, 10))
		q.Set(paramEpoch, s.epoch)
	case o.Since > 0 || o.Epoch != "":
		q.Set(paramSince, strconv.FormatUint(o.Since, 10))
		if o.Epoch != "" {
			q.Set(paramEpoch, o.Epoch)
		}
	case !o.SinceTime.IsZero():
		q.Set(paramSinceTime, o.SinceTime.UTC().Format(time.RFC3339Nano))
	}
	return q
}

func (s *Stream) dial(ctx context.Context) (*websocket.Conn, error) {
	u, err := url.Parse(s.opts.URL)
	if err != nil {
		return nil, fmt.Errorf("events URL %q: %w", s.opts.URL, err)
	}
	u.RawQuery = s.query().Encode()
	hd := http.Header{}
	if s.opts.Token != "" {
		hd.Set("Authorization", "Bearer "+s.opts.Token)
	}
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: s.opts.HTTPClient, HTTPHeader: hd})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, refusal(resp)
		}
		return nil, fmt.Errorf("connect to %s: %w", s.opts.URL, err)
	}
	conn.SetReadLimit(s.opts.MaxMessage)
	return conn, nil
}

// refusal reads an agent's refusal.
func refusal(resp *http.Response) error {
	e := &HTTPError{StatusCode: resp.StatusCode}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
	}
	var msg struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &msg) == nil && msg.Error != "" {
		e.Message = msg.Error
	} else {
		e.Message = strings.TrimSpace(string(body))
	}
	return e
}

// UnixHTTPClient returns an HTTP client that reaches the agent over its
// unix socket at path, whatever host the URL names (use "http://unix/...").
func UnixHTTPClient(path string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &http.Client{Transport: tr}
}
