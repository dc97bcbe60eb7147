package agent

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"agent/config"
	"agent/events"
	"agent/filter"
	"agent/internal/clip"
	"agent/stream"
	"agent/web"
)

// served is one HTTP server and the listener it serves.
type served struct {
	srv *http.Server
	ln  net.Listener
}

// listen binds the unix socket (always) and the TCP listener (when
// [listener] addr is set) and builds the API handler.
func (a *Agent) listen() error {
	cfg := a.Config()
	l := cfg.Listener
	a.stream = stream.NewHandler(stream.HandlerConfig{
		Bus:            stream.BusAdapter{Bus: a.bus},
		Snapshot:       a.snapshot,
		ParseFilter:    parseRecordFilter,
		Nodename:       cfg.Node.Name,
		Progress:       a.opts.ProgressInterval,
		MaxSubscribers: l.MaxSubscribers,
		Logger:         a.log,
	})
	api := a.handler()

	if err := os.MkdirAll(filepath.Dir(a.paths.Socket), 0o700); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	if err := removeStaleSocket(a.paths.Socket); err != nil {
		return err
	}
	ln, err := net.Listen("unix", a.paths.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.paths.Socket, err)
	}
	if err := os.Chmod(a.paths.Socket, 0o600); err != nil {
		_ = ln.Close()
		return fmt.Errorf("restrict %s: %w", a.paths.Socket, err)
	}
	a.unixLn = ln
	a.servers = append(a.servers, served{srv: newServer(api, l.IdleTimeout), ln: ln})

	if l.Addr == "" {
		return nil
	}
	if l.Auth == config.AuthToken {
		a.token, err = loadOrCreateToken(l.TokenFile)
		if err != nil {
			return err
		}
	}
	tcp, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return fmt.Errorf("[listener] addr %s: %w", l.Addr, err)
	}
	tcp = limitListener(tcp, a.connCap(l.MaxConns))
	a.tcpLn = tcp
	srv := newServer(guard(a.authenticate(api), l.Hosts), l.IdleTimeout)
	if l.TLSCert != "" {
		cert, err := loadTLS(l.TLSCert, l.TLSKey)
		if err != nil {
			return err
		}
		srv.TLSConfig = cert
		a.tcpLn = tlsListener(tcp, cert)
	}
	a.servers = append(a.servers, served{srv: srv, ln: a.tcpLn})
	return nil
}

// newServer serves h; an idle keep-alive connection is closed after idle.
func newServer(h http.Handler, idle time.Duration) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle}
}

// removeStaleSocket removes a socket file left by an agent that is gone,
// and refuses to start when another agent answers on it.
func removeStaleSocket(path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("another agent is running on %s", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// loadOrCreateToken reads the listener token, creating a random one (mode
// 0600) on first start. A token file that others could read or change is
// refused: the error names it and the fix.
func loadOrCreateToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		if err := config.CheckSecretFile(path); err != nil {
			return "", fmt.Errorf("[listener] token_file: %w", err)
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			return "", fmt.Errorf("%s: empty token", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read token: %w", err)
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create token directory: %w", err)
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	if err := config.CheckSecretFile(path); err != nil {
		return "", fmt.Errorf("[listener] token_file: %w", err)
	}
	return tok, nil
}

// authenticate guards the TCP listener: with a token, every request
// carries it as "Authorization: Bearer TOKEN", or (browsers' websockets)
// as the first subprotocol (see web.BearerToken). The page and its static
// files are served without it: the page asks for the token.
func (a *Agent) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.token == "" || r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/static/") || r.URL.Path == "/favicon.ico" {
			next.ServeHTTP(w, r)
			return
		}
		got := web.BearerToken(r)
		if subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="agent"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handler is the API of SPEC section 7.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.getStatus)
	mux.HandleFunc("GET /v1/whoami", a.getWhoami)
	mux.Handle("GET /v1/events", a.stream)
	mux.HandleFunc("POST /v1/nodes/{name}/{action}", a.postNodeOrder)
	a.routeExtensions(mux)
	return jsonMuxErrors(mux)
}

// jsonMuxErrors answers the requests the mux has no route for (404) or no
// route for with this method (405) with a JSON error, as every other
// error of the API, instead of the mux's text/plain; the Allow header of
// a 405 is kept.
func jsonMuxErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			// Through the mux, which sets the path values.
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.code {
		case http.StatusMethodNotAllowed:
			if allow := rec.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
				writeError(w, rec.code, fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, allow))
				return
			}
			writeError(w, rec.code, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
		case http.StatusNotFound, 0:
			writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
		default:
			// A redirect (a path to clean) or anything else the mux
			// says: pass it on as it is.
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
		}
	})
}

// statusRecorder keeps the status and headers of the mux's own answer.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}
func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return len(b), nil
}

// snapshot takes the cluster data and subscribes right after it, under the
// store lock, so that the patches after seq rebuild the document exactly.
// seq is the subscription's own start, not a Position read beside it:
// records published without the store lock (hook_skipped events, say) may
// come between two bus calls, and the snapshot would then claim a seq the
// subscription has already passed.
func (a *Agent) snapshot() (json.RawMessage, events.Subscriber, uint64, error) {
	var sub *events.Subscription
	doc, err := a.store.SnapshotWith(func() error {
		var err error
		sub, err = a.bus.Subscribe(events.SubscribeOptions{})
		return err
	})
	if err != nil {
		return nil, nil, 0, err
	}
	return doc, sub, sub.Start(), nil
}

// parseRecordFilter compiles a filter expression over records.
func parseRecordFilter(expr string) (func([]byte) bool, error) {
	e, err := filter.Parse(expr)
	if err != nil {
		return nil, err
	}
	return e.Match, nil
}

func (a *Agent) getStatus(w http.ResponseWriter, r *http.Request) {
	doc := a.store.Document()
	path := r.URL.Query().Get("filter")
	if path == "" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(doc, '\n'))
		return
	}
	raw, ok := filter.Get(doc, path)
	if !ok {
		writeError(w, http.StatusNotFound, "no value at "+clip.String(path))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(raw + "\n"))
}

// getWhoami names the node and cluster this agent serves.
func (a *Agent) getWhoami(w http.ResponseWriter, _ *http.Request) {
	cfg := a.Config()
	writeJSON(w, map[string]string{"node": cfg.Node.Name, "cluster": cfg.Cluster.Name, "heartbeat": a.hb.Addr()})
}

// maxErrorBody bounds an error message: the inputs it repeats are clipped
// where they are named (clip.MaxEcho bytes each), and this is the last
// guard.
const maxErrorBody = 1024

// writeError answers {"error": msg} with status code.
func writeError(w http.ResponseWriter, code int, msg string) {
	msg = clip.N(msg, maxErrorBody)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// writeJSON answers v with status 200.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
