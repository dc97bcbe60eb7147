package web_test

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"agent/web"
)

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIndex(t *testing.T) {
	h := web.Handler()
	for _, p := range []string{"/", "/index.html"} {
		resp := get(t, h, http.MethodGet, p)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", p, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: content type %q", p, ct)
		}
		if resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s: headers %v", p, resp.Header)
		}
		b := body(t, resp)
		for _, want := range []string{"<!doctype html>", `src="static/app.js"`, `href="static/app.css"`, `id="nodes"`, `id="matrix"`, `id="log"`} {
			if !strings.Contains(b, want) {
				t.Errorf("GET %s: no %q in the page", p, want)
			}
		}
	}
}

func TestAssets(t *testing.T) {
	h := web.Handler()
	want := map[string]string{
		"/static/app.js":    "text/javascript; charset=utf-8",
		"/static/patch.js":  "text/javascript; charset=utf-8",
		"/static/filter.js": "text/javascript; charset=utf-8",
		"/static/app.css":   "text/css; charset=utf-8",
	}
	for p, ct := range want {
		resp := get(t, h, http.MethodGet, p)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != ct {
			t.Errorf("GET %s: content type %q, want %q", p, got, ct)
		}
		if b := body(t, resp); len(b) < 100 {
			t.Errorf("GET %s: %d bytes", p, len(b))
		}
	}
	// Every script and style the page names is served.
	page := body(t, get(t, h, http.MethodGet, "/"))
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		ref := m[1]
		if strings.HasPrefix(ref, "data:") {
			continue
		}
		if !slices.Contains(web.Assets(), "/"+ref) {
			t.Errorf("the page refers to %s, which is not served", ref)
		}
	}
}

func TestNoExternalURLs(t *testing.T) {
	h := web.Handler()
	bad := regexp.MustCompile(`(?i)https?://|//cdn|cdn\.|googleapis|unpkg|jsdelivr|@import|url\(\s*['"]?//`)
	for _, p := range web.Assets() {
		b := body(t, get(t, h, http.MethodGet, p))
		if loc := bad.FindStringIndex(b); loc != nil {
			line := strings.Count(b[:loc[0]], "\n") + 1
			t.Errorf("%s:%d: external reference %q", p, line, b[loc[0]:loc[1]])
		}
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := web.Handler()
	resp := get(t, h, http.MethodGet, "/nope")
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /nope: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp := get(t, h, http.MethodGet, "/static/../web.go"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /static/../web.go: %d", resp.StatusCode)
	}
	resp = get(t, h, http.MethodPost, "/")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Errorf("POST /: %d", resp.StatusCode)
	}
	resp = get(t, h, http.MethodHead, "/")
	if resp.StatusCode != http.StatusOK || body(t, resp) != "" || resp.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD /: %d", resp.StatusCode)
	}
}

func TestETag(t *testing.T) {
	h := web.Handler()
	etag := get(t, h, http.MethodGet, "/static/app.js").Header.Get("ETag")
	if resp := get(t, h, http.MethodGet, "/static/app.js", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match %s: %d", etag, resp.StatusCode)
	}
	if resp := get(t, h, http.MethodGet, "/static/app.js", "If-None-Match", `"other"`); resp.StatusCode != http.StatusOK {
		t.Errorf("If-None-Match other: %d", resp.StatusCode)
	}
}

func TestBearerToken(t *testing.T) {
	enc := web.TokenProtocolPrefix + base64.RawURLEncoding.EncodeToString([]byte("a/b+c=="))
	for _, tc := range []struct {
		name string
		hdr  []string
		want string
	}{
		{"none", nil, ""},
		{"header", []string{"Authorization", "Bearer s3cret"}, "s3cret"},
		{"header case", []string{"Authorization", "bearer s3cret"}, "s3cret"},
		{"basic", []string{"Authorization", "Basic eDp5"}, ""},
		{"raw protocol", []string{"Upgrade", "websocket", "Sec-WebSocket-Protocol", "s3cret"}, "s3cret"},
		{"first protocol", []string{"Upgrade", "websocket", "Sec-WebSocket-Protocol", "s3cret, other"}, "s3cret"},
		{"encoded protocol", []string{"Upgrade", "websocket", "Sec-WebSocket-Protocol", enc}, "a/b+c=="},
		{"bad encoding", []string{"Upgrade", "websocket", "Sec-WebSocket-Protocol", "b64.***"}, ""},
		{"protocol without upgrade", []string{"Sec-WebSocket-Protocol", "s3cret"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/events", nil)
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				r.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			if got := web.BearerToken(r); got != tc.want {
				t.Errorf("BearerToken = %q, want %q", got, tc.want)
			}
		})
	}
}
