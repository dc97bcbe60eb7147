package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"agent/config"
	"agent/stream"
)

// client talks to one agent's API, over its unix socket or over TCP.
type client struct {
	http  *http.Client
	base  string // "http://unix" for the socket
	token string
	where string // for error messages
}

// paths resolves the agent's file layout from --root. A relative root is
// made absolute: the socket path goes into a unix:// URL, where a relative
// path would read as a host name.
func (g *globals) paths() config.Paths {
	home, _ := os.UserHomeDir()
	root := g.root
	if root != "" {
		if abs, err := filepath.Abs(root); err == nil {
			root = abs
		}
	}
	return config.ResolvePaths(root, os.Geteuid(), home)
}

// client builds the API client --server (or the local socket) names.
func (g *globals) client() (*client, error) {
	server := g.server
	if server == "" {
		server = "unix://" + g.paths().Socket
	}
	u, err := url.Parse(server)
	if err != nil {
		return nil, failf("--server %q: %v", server, err)
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			path = u.Opaque
		}
		return &client{http: stream.UnixHTTPClient(path), base: "http://unix", where: path}, nil
	case "http", "https":
		tok := g.token
		if tok == "" {
			tok = g.localToken(u)
		}
		// A redirect must not carry the token elsewhere.
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		return &client{http: hc, base: strings.TrimRight(server, "/"), token: tok, where: server}, nil
	default:
		return nil, failf("--server %q: want unix:///path, http://host:port or https://host:port", server)
	}
}

// localToken reads the token file named by the local node.conf, so that a
// user of this node needs no --token for its own listener, but only when
// server is that listener (ownListener): the local token never goes to
// another host or port. --token (AGENT_TOKEN) is the token of --server.
func (g *globals) localToken(server *url.URL) string {
	host, _ := os.Hostname()
	n, err := config.LoadNode(g.paths().NodeConf, host)
	if err != nil || n.Listener.TokenFile == "" || !ownListener(server, n.Listener) {
		return ""
	}
	data, err := os.ReadFile(n.Listener.TokenFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// ownListener reports whether server names the listener l of this node:
// its port, on its configured address, or, when that is a bound-all
// address (0.0.0.0, ::), on a loopback address, localhost or a name of
// [listener] hosts.
func ownListener(server *url.URL, l config.ListenerSection) bool {
	if l.Addr == "" {
		return false
	}
	lhost, lport, err := net.SplitHostPort(l.Addr)
	if err != nil {
		return false
	}
	port := server.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[server.Scheme]
	}
	if port != lport {
		return false
	}
	host := strings.TrimSuffix(server.Hostname(), ".")
	local := strings.EqualFold(host, "localhost")
	ip, ipErr := netip.ParseAddr(host)
	if ipErr == nil {
		ip = ip.Unmap()
		local = ip.IsLoopback()
	}
	if la, err := netip.ParseAddr(lhost); err == nil {
		la = la.Unmap()
		if la.IsUnspecified() {
			return local || slices.ContainsFunc(l.Hosts, func(h string) bool { return strings.EqualFold(strings.TrimSuffix(h, "."), host) })
		}
		// A loopback listener is also reached as localhost.
		return (ipErr == nil && ip == la) || (la.IsLoopback() && strings.EqualFold(host, "localhost"))
	}
	// The listener is configured by name (localhost, or a name of this
	// host): the same name only.
	return strings.EqualFold(host, strings.TrimSuffix(lhost, "."))
}

// do sends a request and decodes a JSON answer into out (when not nil).
// Errors name the agent and carry its {"error": ...} message.
func (c *client) do(ctx context.Context, method, path string, out any) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, failf("%v", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.connError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, failf("read answer of %s: %v", c.where, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if msg == "" {
			msg = emptyReply(c.where, method, path, resp.StatusCode)
		}
		return nil, &apiError{status: resp.StatusCode, msg: msg}
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return nil, failf("answer of %s is not JSON: %v", c.where, err)
		}
	}
	return body, nil
}

// emptyReply describes a refusal that came without a message.
func emptyReply(where, method, path string, status int) string {
	return fmt.Sprintf("%s answered %s %s with %d %s and no message", where, method, path, status, http.StatusText(status))
}

// fetchStatus gets the cluster data from the agent --server (or the local
// socket) names.
func (g *globals) fetchStatus(ctx context.Context) ([]byte, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	body, err := c.do(ctx, "GET", "/v1/status", nil)
	if err != nil {
		return nil, asExit(err)
	}
	return body, nil
}

// apiError is an agent's refusal: exit 2 with its message.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// connError turns a failed connection into one clear exit-2 line.
func (c *client) connError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if strings.HasPrefix(c.base, "http://unix") {
		return failf("no agent answers on %s (is `agent daemon run` running? --root or --server may point elsewhere): %v", c.where, err)
	}
	return failf("no agent answers at %s: %v", c.where, err)
}

// streamURL is the events endpoint URL.
func (c *client) streamURL() string { return c.base + "/v1/events" }

// dialOptions starts the options of a stream subscription.
func (c *client) dialOptions() stream.DialOptions {
	return stream.DialOptions{HTTPClient: c.http, URL: c.streamURL(), Token: c.token, Reconnect: true, Batch: true, Logger: quietLogger()}
}

// asExit converts an API or stream error into an exit error.
func asExit(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return failf("%s", ae.msg)
	}
	var he *stream.HTTPError
	if errors.As(err, &he) {
		if he.Message == "" {
			return failf("the agent answered the stream request with %d %s and no message", he.StatusCode, http.StatusText(he.StatusCode))
		}
		return failf("%s", he.Message)
	}
	return failf("%v", err)
}

// withDuration is ctx with a deadline d from now when d > 0, else ctx
// made cancellable.
func withDuration(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}
