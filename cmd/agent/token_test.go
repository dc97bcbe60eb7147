package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"agent/config"
)

func TestOwnListener(t *testing.T) {
	for _, tc := range []struct {
		listen string
		hosts  []string
		server string
		want   bool
	}{
		{"127.0.0.1:1215", nil, "http://127.0.0.1:1215", true},
		{"127.0.0.1:1215", nil, "http://localhost:1215", true},
		{"127.0.0.1:1215", nil, "https://127.0.0.1:1215/", true},
		{"127.0.0.1:1215", nil, "http://127.0.0.1:1216", false},
		{"127.0.0.1:1215", nil, "http://127.0.0.2:1215", false},
		{"127.0.0.1:1215", nil, "http://anyhost:1215", false},
		{"127.0.0.1:80", nil, "http://127.0.0.1", true},
		{"127.0.0.1:80", nil, "https://127.0.0.1", false},
		{"10.0.0.1:1215", nil, "http://10.0.0.1:1215", true},
		{"10.0.0.1:1215", nil, "http://127.0.0.1:1215", false},
		{"10.0.0.1:1215", nil, "http://localhost:1215", false},
		{"0.0.0.0:1215", nil, "http://127.0.0.1:1215", true},
		{"0.0.0.0:1215", nil, "http://127.9.9.9:1215", true},
		{"0.0.0.0:1215", nil, "http://localhost:1215", true},
		{"0.0.0.0:1215", nil, "http://[::1]:1215", true},
		{"0.0.0.0:1215", nil, "http://10.0.0.1:1215", false},
		{"0.0.0.0:1215", nil, "http://n1.example.com:1215", false},
		{"0.0.0.0:1215", []string{"n1.example.com"}, "http://N1.example.com:1215", true},
		{"[::]:1215", nil, "http://[::1]:1215", true},
		{"localhost:1215", nil, "http://localhost:1215", true},
		{"localhost:1215", nil, "http://evil.example:1215", false},
		{"", nil, "http://127.0.0.1:1215", false},
	} {
		u, err := url.Parse(tc.server)
		if err != nil {
			t.Fatal(err)
		}
		l := config.ListenerSection{Addr: tc.listen, Hosts: tc.hosts}
		if got := ownListener(u, l); got != tc.want {
			t.Errorf("listener %s hosts %v, --server %s: own = %v, want %v", tc.listen, tc.hosts, tc.server, got, tc.want)
		}
	}
}

// TestTokenStaysHome: the local token file goes to the local listener
// only; another server gets --token or nothing, and no redirect carries a
// token away.
func TestTokenStaysHome(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // path -> Authorization
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		if r.URL.Path == "/v1/status" && r.URL.Query().Get("redirected") == "" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer foreign.Close()

	root := t.TempDir()
	tokenFile := filepath.Join(root, "token")
	if err := os.WriteFile(tokenFile, []byte("local-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The local listener is on another port of the same address.
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("[listener]\naddr = 127.0.0.1:1\ntoken_file = %s\n", tokenFile)
	if err := os.WriteFile(filepath.Join(root, "etc", "node.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGENT_TOKEN", "")
	cli(root, "--server", foreign.URL, "daemon", "status")
	mu.Lock()
	if a := seen["/v1/status"]; a != "" {
		t.Errorf("the local token went to a foreign server: %q", a)
	}
	if _, ok := seen["/elsewhere"]; ok {
		t.Errorf("a redirect was followed")
	}
	mu.Unlock()

	cli(root, "--server", foreign.URL, "--token", "for-foreign", "daemon", "status")
	mu.Lock()
	if a := seen["/v1/status"]; a != "Bearer for-foreign" {
		t.Errorf("--token not sent to --server: %q", a)
	}
	mu.Unlock()
}
