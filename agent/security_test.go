package agent_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agent/agent"
	"agent/config"
	"agent/internal/testutil"
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
	a, err := agent.New(agent.Options{Paths: config.ResolvePaths(root, os.Geteuid(), ""), Logger: quiet()})
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
