package agent_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"agent/stream"
)

// TestAPIErrorsAreJSON: a route that does not exist or a wrong method gets
// the API's JSON error, with the mux's status and Allow header.
func TestAPIErrorsAreJSON(t *testing.T) {
	agents := startCluster(t, 1)
	c := stream.UnixHTTPClient(agents[0].Paths().Socket)
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"POST", "/v1/status", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/v1/nodes/n1/freeze", http.StatusMethodNotAllowed, "GET, HEAD, POST"},
		{"GET", "/v1/nosuch", http.StatusNotFound, ""},
		{"PUT", "/metrics", http.StatusMethodNotAllowed, "GET, HEAD"},
	} {
		req, _ := http.NewRequest(tc.method, "http://unix"+tc.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || err != nil || body.Error == "" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %q, error %q (%v); want %d with a JSON error",
				tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body.Error, err, tc.code)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	// A route with path values still gets them through the wrapper.
	if code, body := apiPost(t, c, "http://unix/v1/nodes/n1/freeze"); code != http.StatusOK {
		t.Fatalf("freeze n1 through the wrapper: %d %s", code, body)
	}
}
