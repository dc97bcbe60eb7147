package web_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"
)

// Selectors and expressions over the page, shared by the tests.
const (
	jsNodeRows   = `document.querySelectorAll('#nodes tbody tr[data-node]').length`
	jsN2Frozen   = `document.querySelector('#nodes tr[data-node="n2"]')?.dataset.frozen === "1"`
	jsFreezeRow  = `document.querySelector('#log tbody tr[data-id="node_freeze"]') !== null`
	jsLive       = `window.agentUI && agentUI.connected && agentUI.ready`
	jsSeq        = `agentUI.seq`
	jsBannerShow = `!document.getElementById('banner').hidden`
)

func TestBrowserLivePage(t *testing.T) {
	f := newFakeAgent(t, threeNodes(), "")
	b := openPage(t, f.srv.URL+"/")
	b.waitFor("three nodes", jsNodeRows+` === 3`)
	b.waitFor("connected", jsLive)
	if got := eval[string](b, `document.querySelector('#matrix td[data-leader="1"]')?.dataset.node`); got != "n1" {
		t.Errorf("leader of the first service shown on %q, want n1", got)
	}
	if got := eval[string](b, `document.querySelector('#matrix tr[data-service="db"] td[data-node="n2"]').className`); got != "cell warn" {
		t.Errorf("db on n2 has class %q, want cell warn", got)
	}
	if got := eval[string](b, `document.querySelector('#nodes tr[data-node="n2"]').textContent`); !contains(got, "a/b~c=x") {
		t.Errorf("n2 row %q lacks its labels", got)
	}

	// A patch freezing n2, then the event, as the agent sends them.
	f.patch("n2", `[{"op":"replace","path":"/monitor/nodes/n2/frozen","value":1795341601},{"op":"replace","path":"/monitor/nodes/n2/gen","value":8}]`)
	f.event("n1", map[string]any{"id": "node_freeze", "reason": "peer", "node": "n2"})
	b.waitFor("n2 frozen", jsN2Frozen)
	b.waitFor("node_freeze in the log", jsFreezeRow)
	if got := eval[int](b, jsSeq); got != 12 {
		t.Errorf("page at seq %d, want 12", got)
	}
	b.screenshot("frozen")

	// The detail view shows the record's JSON.
	if err := b.do(chromedp.Click(chromedp.CSS(`#log tbody tr[data-id="node_freeze"]`))); err != nil {
		t.Fatal(err)
	}
	b.waitFor("detail", `!document.getElementById('detail').hidden && document.getElementById('detail-json').textContent.includes('"node_freeze"')`)

	// The filter hides what does not match and says where a filter is wrong.
	f.event("n1", map[string]any{"id": "instance_start", "reason": "target", "svcname": "web"})
	b.waitFor("instance_start in the log", `document.querySelector('#log tbody tr[data-id="instance_start"]') !== null`)
	setFilter(b, `data.id~^instance_ and data.svcname=web`)
	b.waitFor("filtered log", `document.querySelectorAll('#log tbody tr').length === 1 && document.querySelector('#log tbody tr').dataset.id === "instance_start"`)
	setFilter(b, `data.id=`)
	b.waitFor("filter error", `document.getElementById('filter-error').textContent.includes('column 9')`)
	setFilter(b, ``)
	b.waitFor("unfiltered log", `document.querySelectorAll('#log tbody tr[data-id]').length === 2`)

	// A dropped connection resumes after the last record, and a record
	// published meanwhile arrives once.
	f.drop()
	f.event("n3", map[string]any{"id": "node_thaw", "reason": "cli", "node": "n3"})
	b.waitFor("node_thaw after reconnect", `document.querySelector('#log tbody tr[data-id="node_thaw"]') !== null`)
	qs := f.accepted()
	last := qs[len(qs)-1]
	if len(qs) < 2 || last.Get("since") != "13" || last.Get("epoch") != "e1" || last.Get("snapshot") != "1" || last.Get("batch") != "1" {
		t.Errorf("reconnection queries %v, want the last with since=13 epoch=e1 snapshot=1 batch=1", qs)
	}
	if n := eval[int](b, `document.querySelectorAll('#log tbody tr[data-id="node_thaw"]').length`); n != 1 {
		t.Errorf("node_thaw shown %d times", n)
	}

	// After an unclean stop the agent's seqs jump past an empty range in
	// the same epoch: the page follows the jump on the same connection,
	// without a new snapshot.
	conns, seq := len(f.accepted()), eval[int](b, jsSeq)
	f.jump(65536)
	f.patch("n2", `[{"op":"replace","path":"/monitor/nodes/n2/frozen","value":0},{"op":"replace","path":"/monitor/nodes/n2/gen","value":9}]`)
	b.waitFor("n2 thawed after the jump", fmt.Sprintf("!(%s) && %s === %d", jsN2Frozen, jsSeq, seq+65536+1))
	if got := len(f.accepted()); got != conns {
		t.Errorf("the page opened %d new connections on a seq jump, want none (a jump is not a gap)", got-conns)
	}

	// Lost history: the page gets a reset and a new snapshot.
	doc := threeNodes()
	doc = []byte(replaceOnce(string(doc), `"n3": {"state": "alive"`, `"n3": {"state": "dead"`))
	f.restart("e2", doc)
	b.waitFor("n3 dead after reset", `document.querySelector('#nodes tr[data-node="n3"]')?.dataset.state === "dead" && agentUI.epoch === "e2"`)
	b.waitFor("reset in the log", `document.querySelector('#log tbody tr.kind-reset') !== null`)
	b.waitFor("live again", jsLive+` && !(`+jsBannerShow+`)`)
	b.screenshot("after-reset")
	b.checkConsole()
}

func TestBrowserDisconnectedBanner(t *testing.T) {
	f := newFakeAgent(t, threeNodes(), "")
	b := openPage(t, f.srv.URL+"/")
	b.waitFor("connected", jsLive)
	f.srv.CloseClientConnections()
	f.close() // the agent is gone
	b.waitFor("banner", jsBannerShow+` && document.getElementById('banner').textContent.includes('Disconnected')`)
	b.waitFor("stale look", `document.getElementById('live').classList.contains('stale')`)
	b.screenshot("disconnected")
	b.checkConsole("ERR_CONNECTION_REFUSED", "WebSocket connection", "Failed to load resource")
}

func TestBrowserToken(t *testing.T) {
	// "/" and "=" cannot be in a subprotocol: the page sends the b64 form.
	const token = "s3cr/t+=="
	f := newFakeAgent(t, threeNodes(), token)
	b := openPage(t, f.srv.URL+"/")
	b.waitFor("token form", `!document.getElementById('token-form').hidden`)
	b.screenshot("token-form")
	if err := b.do(
		chromedp.SendKeys(chromedp.CSS(`#token-input`), token),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
	); err != nil {
		t.Fatal(err)
	}
	b.waitFor("connected with the token", jsLive+` && `+jsNodeRows+` === 3`)
	if got := eval[string](b, `sessionStorage.getItem("agent.token")`); got != token {
		t.Errorf("sessionStorage token %q", got)
	}
	// A reload reconnects without asking.
	if err := b.do(chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	b.waitFor("connected after reload", jsLive)
	if eval[bool](b, `!document.getElementById('token-form').hidden`) {
		t.Error("token asked again after reload")
	}
	b.checkConsole("401", "WebSocket connection", "Failed to load resource")
}

func TestBrowserTokenInURL(t *testing.T) {
	const token = "0123abcd"
	f := newFakeAgent(t, threeNodes(), token)
	b := openPage(t, f.srv.URL+"/?token="+token)
	b.waitFor("connected", jsLive)
	if u := eval[string](b, `location.href`); contains(u, token) {
		t.Errorf("token left in the address %s", u)
	}
	b.checkConsole()
}

// setFilter types text into the filter box as a user would.
func setFilter(b *browser, text string) {
	b.t.Helper()
	eval[bool](b, `(() => { const e = document.getElementById('filter'); e.value = `+strconv.Quote(text)+`; e.dispatchEvent(new Event('input')); return true })()`)
}

func contains(s, sub string) bool { return len(sub) == 0 || indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func replaceOnce(s, old, repl string) string {
	i := indexOf(s, old)
	if i < 0 {
		panic(fmt.Sprintf("%q not in document", old))
	}
	return s[:i] + repl + s[i+len(old):]
}
