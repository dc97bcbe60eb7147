package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agent/internal/testutil"
	"agent/monitor"
	"agent/stream"
)

// TestLooseTokenFileRefused: a token file others can read stops the
// agent at start with the path and the fix.
func TestLooseTokenFileRefused(t *testing.T) {
	root := shortTemp(t)
	tokenFile := filepath.Join(root, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeConf(t, root, nodeConf("n1", fmt.Sprintf("[listener]\naddr = 127.0.0.1:%d\nauth = token\ntoken_file = %s\n", testutil.FreePort(t), tokenFile)))
	a, err := openAgent(root)
	if err == nil {
		a.Close()
		t.Fatal("a 0644 token file was accepted")
	}
	for _, want := range []string{tokenFile, "readable by group or others (mode 0644)", "chmod go-r"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestListenerGuardAuthNone: with auth = none, a cross-site POST and a
// rebound Host are refused; the CLI's POST passes; the unix socket is
// exempt.
func TestListenerGuardAuthNone(t *testing.T) {
	root := shortTemp(t)
	port := testutil.FreePort(t)
	writeConf(t, root, nodeConf("n1", fmt.Sprintf("[listener]\naddr = 127.0.0.1:%d\nauth = none\nidle_timeout = 1s\n", port)))
	a := startAgent(t, root)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	do := func(method, path, host, origin, ctype, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("POST", "/v1/nodes/n1/freeze", "", "http://evil.example", "text/plain", "x"); code != 403 {
		t.Errorf("cross-site POST: %d, want 403", code)
	}
	if code := do("GET", "/v1/status", "evil.example", "", "", ""); code != 421 {
		t.Errorf("Host evil.example: %d, want 421", code)
	}
	if _, _, d := a.Store().Local(); d.Frozen != 0 {
		t.Fatal("a refused request froze the node")
	}
	if code := do("POST", "/v1/nodes/n1/freeze", "", "", "", ""); code != 200 {
		t.Errorf("POST without body nor Origin: %d, want 200", code)
	}
	// The socket is exempt: whoever can open it is the agent's user.
	code, _ := apiPost(t, stream.UnixHTTPClient(a.Paths().Socket), "http://evil.example/v1/nodes/n1/thaw")
	if code != 200 {
		t.Errorf("socket POST with another Host: %d, want 200", code)
	}
	// Idle keep-alive connections are closed by the agent.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 64<<10)
	for {
		if _, err := conn.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("an idle keep-alive connection stayed open past idle_timeout")
			}
			break // closed by the agent
		}
	}
}

// TestRefusedSubscribersCounted: past [listener] max_subscribers a stream
// gets HTTP 503 naming the setting, and /metrics counts the refusal.
func TestRefusedSubscribersCounted(t *testing.T) {
	root := shortTemp(t)
	writeConf(t, root, nodeConf("n1", "[listener]\nmax_subscribers = 1\n"))
	a := startAgent(t, root)
	c := stream.UnixHTTPClient(a.Paths().Socket)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := stream.Dial(ctx, stream.DialOptions{HTTPClient: c, URL: "http://unix/v1/events", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, err = stream.Dial(ctx, stream.DialOptions{HTTPClient: c, URL: "http://unix/v1/events", Logger: quiet()})
	var he *stream.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || !strings.Contains(he.Message, "max_subscribers") {
		t.Fatalf("second subscriber: %v, want 503 naming max_subscribers", err)
	}
	code, body := apiGet(t, c, "http://unix/metrics")
	if code != 200 || !strings.Contains(string(body), "\nagent_stream_refused_total 1\n") {
		t.Fatalf("/metrics does not count the refused subscriber (%d):\n%s", code, body)
	}
}

// TestOrderOverMaxDataIs422: a freeze that would make this node's data
// bigger than [node] max_data is refused with HTTP 422 naming the limit,
// and nothing changes.
func TestOrderOverMaxDataIs422(t *testing.T) {
	root := shortTemp(t)
	writeConf(t, root, strings.Replace(nodeConf("n1", ""), "[node]\n", "[node]\nmax_data = 4KiB\n", 1))
	a := startAgent(t, root)
	// Fill the data to a few bytes under the limit: a freeze (0 becoming
	// a unix time) then passes it.
	fill := func(n int) error {
		_, _, err := a.Store().UpdateLocal("test", func(d *monitor.NodeData) { d.Labels["fill"] = strings.Repeat("x", n) })
		return err
	}
	_, raw, _ := a.Store().Local()
	n := 4096 - len(raw) - 10
	for tries := 0; ; tries++ {
		if tries == 100 {
			t.Fatalf("could not fill the data to just under max_data (%d bytes)", len(raw))
		}
		err := fill(n)
		if errors.Is(err, monitor.ErrDataTooLarge) { // the rest grew meanwhile
			n -= 8
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, raw, _ = a.Store().Local(); 4096-len(raw) <= 3 {
			break
		}
		n += 4096 - len(raw) - 3
	}
	code, body := apiPost(t, stream.UnixHTTPClient(a.Paths().Socket), "http://unix/v1/nodes/n1/freeze")
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "max_data 4096") {
		t.Fatalf("freeze over max_data: %d %s, want 422 naming max_data", code, body)
	}
	if _, _, d := a.Store().Local(); d.Frozen != 0 {
		t.Fatal("the refused freeze was applied")
	}
}
