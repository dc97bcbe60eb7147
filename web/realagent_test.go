package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"agent/internal/agenttest"
	"agent/internal/testutil"
)

// Environment of TestBrowserRealAgent, besides envWebURL.
const (
	// envToken is the listener token, when auth = token.
	envToken = "AGENT_TOKEN"
	// envWebNodes is how many nodes the page must show (default: at least 1).
	envWebNodes = "AGENT_WEB_NODES"
	// envFreezeNode is the node the test freezes then thaws (default: the
	// second node of the table; none with a one-node cluster).
	envFreezeNode = "AGENT_WEB_FREEZE_NODE"
)

// TestBrowserRealAgent points the browser at a running agent's page
// (AGENT_WEB_URL=http://127.0.0.1:1215/), waits for the live cluster, freezes
// a node through the API and waits for the page to show it frozen and the
// node_freeze event, then thaws it.
func TestBrowserRealAgent(t *testing.T) {
	raw := os.Getenv(envWebURL)
	if raw == "" {
		t.Skip("set " + envWebURL + " to run the page against a real agent")
	}
	page, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", envWebURL, err)
	}
	token := os.Getenv(envToken)
	want := 1
	if s := os.Getenv(envWebNodes); s != "" {
		if want, err = strconv.Atoi(s); err != nil {
			t.Fatalf("%s: %v", envWebNodes, err)
		}
	}
	checkRealAgent(t, page, token, want, os.Getenv(envFreezeNode))
}

// TestBrowserCluster runs the page of a real 3-node cluster (in-process
// agents on 127.0.0.1-3 with their TCP listeners): three alive nodes, a
// freeze of n2 shown frozen with its node_freeze event, then the thaw.
func TestBrowserCluster(t *testing.T) {
	chromiumPath(t) // skips (or fails when required) before starting agents
	port := testutil.FreePort(t)
	nodes := agenttest.StartCluster(t, 3, agenttest.Options{
		Extra: fmt.Sprintf("[listener]\naddr = 127.0.0.%%d:%d\nauth = none\n", port),
	})
	page, err := url.Parse("http://" + nodes[0].ListenAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	checkRealAgent(t, page, "", 3, "n2")
}

// checkRealAgent loads the page of a running agent, waits for want alive
// nodes, freezes node (default: the second in the table) through the API,
// waits for the page to show it frozen and its node_freeze event, then
// thaws it.
func checkRealAgent(t *testing.T, page *url.URL, token string, want int, node string) {
	t.Helper()
	if token != "" {
		q := page.Query()
		q.Set("token", token)
		page.RawQuery = q.Encode()
	}
	b := openPage(t, page.String())
	b.waitFor("live", jsLive)
	b.waitFor(strconv.Itoa(want)+" nodes", jsNodeRows+` === `+strconv.Itoa(want))
	b.waitFor("alive nodes", `document.querySelectorAll('#nodes tbody tr[data-state="alive"]').length === `+strconv.Itoa(want))
	b.screenshot("live")

	if node == "" {
		names := eval[[]string](b, `Array.from(document.querySelectorAll('#nodes tbody tr[data-node]'), r => r.dataset.node)`)
		if len(names) < 2 {
			t.Log("one node: freeze not tried")
			b.checkConsole()
			return
		}
		node = names[1]
	}
	api := *page
	api.RawQuery, api.Fragment = "", ""
	base := strings.TrimSuffix(api.String(), "/")
	order := func(action string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), browserWait)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/nodes/"+url.PathEscape(node)+"/"+action, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", action, node, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %s", action, node, resp.StatusCode, body)
		}
	}
	sel, _ := json.Marshal(`#nodes tr[data-node="` + node + `"]`)
	start := time.Now()
	order("freeze")
	t.Cleanup(func() { order("thaw") })
	b.waitFor(node+" frozen", `document.querySelector(`+string(sel)+`)?.dataset.frozen === "1"`)
	b.waitFor("node_freeze of "+node, `Array.from(document.querySelectorAll('#log tbody tr[data-id="node_freeze"]')).some(r => r.textContent.includes('"node":"`+node+`"'))`)
	t.Logf("freeze of %s shown in %v", node, time.Since(start).Round(time.Millisecond))
	b.screenshot("frozen")
	start = time.Now()
	order("thaw")
	b.waitFor(node+" thawed", `document.querySelector(`+string(sel)+`)?.dataset.frozen === "0"`)
	t.Logf("thaw of %s shown in %v", node, time.Since(start).Round(time.Millisecond))
	b.checkConsole()
}
