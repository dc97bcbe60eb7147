package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHostAllowed(t *testing.T) {
	names := []string{"agent.example.com", "N1"}
	for host, want := range map[string]bool{
		"127.0.0.1:1215":          true,
		"127.0.0.1":               true,
		"10.1.2.3:80":             true,
		"[::1]:1215":              true,
		"[::1]":                   true,
		"[fe80::1%eth0]:1215":     true,
		"localhost:1215":          true,
		"LOCALHOST.":              true,
		"agent.example.com:1215":  true,
		"Agent.Example.COM.:1215": true,
		"n1":                      true,
		"evil.example":            false,
		"evil.example:1215":       false,
		"127.0.0.1.evil.example":  false,
		"localhost.evil.example":  false,
		"":                        false,
		":1215":                   false,
		"[]:80":                   false,
	} {
		if got := hostAllowed(host, names); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestGuard(t *testing.T) {
	reached := 0
	h := guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }), []string{"agent.example.com"})
	for _, tc := range []struct {
		name, method, host, origin, fetchSite, ctype, body string
		want                                               int
	}{
		{"get", "GET", "127.0.0.1:1215", "", "", "", "", 200},
		{"rebound name", "GET", "evil.example", "", "", "", "", 421},
		{"named host", "GET", "agent.example.com:1215", "", "", "", "", 200},
		{"cli post", "POST", "127.0.0.1:1215", "", "", "", "", 200},
		{"cross-site form post", "POST", "127.0.0.1:1215", "http://evil.example", "", "text/plain", "x", 403},
		{"cross-site post without body", "POST", "127.0.0.1:1215", "http://evil.example", "", "", "", 403},
		{"cross-site by fetch metadata", "POST", "127.0.0.1:1215", "", "cross-site", "", "", 403},
		{"same-origin post", "POST", "127.0.0.1:1215", "http://127.0.0.1:1215", "same-origin", "", "", 200},
		{"text/plain body", "POST", "127.0.0.1:1215", "", "", "text/plain", "x", 415},
		{"form body", "POST", "127.0.0.1:1215", "", "", "application/x-www-form-urlencoded", "a=b", 415},
		{"json body", "POST", "127.0.0.1:1215", "", "", "application/json; charset=utf-8", "{}", 200},
		{"get with a cross origin", "GET", "127.0.0.1:1215", "http://evil.example", "cross-site", "", "", 200},
	} {
		r := httptest.NewRequest(tc.method, "http://x/v1/nodes/n2/freeze", strings.NewReader(tc.body))
		r.Host = tc.host
		if tc.body == "" {
			r.ContentLength = 0
		}
		for k, v := range map[string]string{"Origin": tc.origin, "Sec-Fetch-Site": tc.fetchSite, "Content-Type": tc.ctype} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		before := reached
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
		}
		if (tc.want == 200) != (reached > before) {
			t.Errorf("%s: handler reached = %v", tc.name, reached > before)
		}
		if tc.want != 200 && !strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("%s: body %s is not a JSON error", tc.name, w.Body)
		}
	}
}
