package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"agent/events"
	"agent/history"
	"agent/internal/agenttest"
	"agent/internal/testutil"
)

// TestBrowserLogBacklog loads the page while the journal already holds
// records: the log starts with them, not empty.
func TestBrowserLogBacklog(t *testing.T) {
	f := newFakeAgent(t, threeNodes(), "")
	at := time.Now().UTC()
	for i, id := range []string{"node_join", "node_up", "node_freeze"} {
		data, _ := json.Marshal(map[string]any{"id": id, "reason": "test", "node": "n2"})
		f.backlog = append(f.backlog, events.NewRecord(uint64(8+i), "e1", at, "n1", events.KindEvent, data))
	}
	data, _ := json.Marshal(map[string]any{"id": "node_down", "node": "n3"})
	f.backlog = append(f.backlog, events.NewRecord(7, "old-epoch", at, "n1", events.KindEvent, data))
	b := openPage(t, f.srv.URL+"/")
	b.waitFor("connected", jsLive)
	b.waitFor("backlog shown", `agentUI.backlog === "done" && document.querySelectorAll('#log tbody tr[data-id]').length === 3`)
	got := eval[[]string](b, `Array.from(document.querySelectorAll('#log tbody tr[data-id]'), r => r.dataset.id)`)
	if strings.Join(got, ",") != "node_freeze,node_up,node_join" {
		t.Errorf("log rows %v, want the backlog newest first", got)
	}
	// Live records follow the backlog.
	f.event("n1", map[string]any{"id": "node_thaw", "reason": "cli", "node": "n2"})
	b.waitFor("live record on top", `document.querySelector('#log tbody tr[data-id]').dataset.id === "node_thaw"`)
	b.checkConsole()
}

// TestBrowserHistory searches the history of a real agent whose SQLite
// sink holds 250 events of the last hour: the timeline, the pages, a
// search by event id, and a filter error.
func TestBrowserHistory(t *testing.T) {
	chromiumPath(t)
	port := testutil.FreePort(t)
	nodes := agenttest.StartCluster(t, 1, agenttest.Options{
		// The agent's own sink writes patches: the view searches events,
		// so what it shows is the 250 rows below, whatever the agent does.
		Extra: fmt.Sprintf("[listener]\naddr = 127.0.0.%%d:%d\nauth = none\n[sink#h]\nkinds = patch\n", port),
	})
	db, err := history.Open(history.Target{Dialect: history.SQLite, Path: filepath.Join(nodes[0].Root, "var", "h.db"), Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Migrate(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var recs []*events.Record
	for i := range 250 {
		id := "instance_status_change"
		switch {
		case i%5 == 0:
			id = "node_down"
		case i%7 == 0:
			id = "instance_start"
		}
		data, _ := json.Marshal(map[string]any{"id": id, "reason": "test", "i": i})
		at := now.Add(-50 * time.Minute).Add(time.Duration(i) * 10 * time.Second)
		recs = append(recs, events.NewRecord(uint64(i+1), "hist", at, "n1", events.KindEvent, data))
	}
	if _, err := db.Insert(ctx, history.Origin{Cluster: "test", Agent: "old"}, recs); err != nil {
		t.Fatal(err)
	}

	b := openPage(t, "http://"+nodes[0].ListenAddr()+"/#history")
	b.waitFor("first search", `window.agentHistory && agentHistory.searches >= 1 && agentHistory.loading === 0`)
	if e := eval[string](b, `agentHistory.error`); e != "" {
		t.Fatalf("history error: %s", e)
	}
	b.waitFor("a page of 100", `document.querySelectorAll('#h-log tbody tr').length === 100`)
	if got := eval[int](b, `Number(document.querySelector('#h-log tbody tr').dataset.seq)`); got != 250 {
		t.Errorf("first row seq %d, want the newest (250)", got)
	}
	bars := eval[int](b, `document.querySelectorAll('#h-chart rect.bar').length`)
	if bars < 40 {
		t.Errorf("%d bars in the timeline, want one per id and minute (at least 40)", bars)
	}
	total := eval[int](b, `agentHistory.timeline.buckets.reduce((a, x) => a + x.n, 0)`)
	if total != 250 {
		t.Errorf("timeline counts %d records, want 250", total)
	}
	if !strings.Contains(eval[string](b, `document.getElementById('h-legend').textContent`), "node_down 50") {
		t.Errorf("legend %q lacks node_down 50", eval[string](b, `document.getElementById('h-legend').textContent`))
	}
	b.screenshot("history")

	// Pages: 100, 100, 50, then back.
	click := func(sel string) {
		t.Helper()
		if err := b.do(chromedp.Click(chromedp.CSS(sel))); err != nil {
			t.Fatal(err)
		}
	}
	click("#h-older")
	b.waitFor("page 2", `agentHistory.loading === 0 && document.querySelector('#h-log tbody tr').dataset.seq === "150"`)
	click("#h-older")
	b.waitFor("page 3", `agentHistory.loading === 0 && document.querySelectorAll('#h-log tbody tr').length === 50 && document.getElementById('h-older').disabled`)
	click("#h-newer")
	b.waitFor("back to page 2", `agentHistory.loading === 0 && document.querySelector('#h-log tbody tr').dataset.seq === "150"`)

	// A search by event id.
	setValue := func(sel, v string) {
		t.Helper()
		js, _ := json.Marshal(v)
		eval[bool](b, `(document.querySelector('`+sel+`').value = `+string(js)+`, true)`)
	}
	setValue("#h-event", "node_down")
	click("#h-search")
	b.waitFor("node_down only", `agentHistory.loading === 0 && agentHistory.records.length === 50 && agentHistory.records.every(r => r.data.id === "node_down")`)
	b.waitFor("timeline of node_down", `agentHistory.timeline.buckets.every(x => x.id === "node_down")`)

	// A filter applied after SQL, and a filter that does not parse.
	setValue("#h-filter", "data.i>=200")
	click("#h-search")
	b.waitFor("filtered", `agentHistory.loading === 0 && agentHistory.records.length === 10`)
	setValue("#h-filter", "data.i>=")
	click("#h-search")
	b.waitFor("filter error", `document.getElementById('h-error').textContent.includes('column 9')`)

	// A search by node: nodename n1 holds them all, n2 none.
	setValue("#h-filter", "")
	setValue("#h-event", "")
	setValue("#h-node", "n2")
	click("#h-search")
	b.waitFor("no record of n2", `agentHistory.loading === 0 && agentHistory.error === "" && agentHistory.records.length === 0`)
	setValue("#h-node", "n1")
	click("#h-search")
	b.waitFor("n1's records", `agentHistory.loading === 0 && agentHistory.records.length === 100 && agentHistory.records.every(r => r.nodename === "n1")`)

	// A time range, typed in the browser's local time: records 101 to 150
	// (10 s apart) and no others.
	base := now.Add(-50 * time.Minute)
	setTime := func(sel string, at time.Time) {
		t.Helper()
		eval[bool](b, fmt.Sprintf(`(() => {
			const d = new Date(%d), p = (n) => String(n).padStart(2, "0");
			document.querySelector(%q).value = d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T" + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
			return true;
		})()`, at.UnixMilli(), sel))
	}
	setTime("#h-since", base.Add(995*time.Second))
	setTime("#h-until", base.Add(1495*time.Second))
	click("#h-search")
	b.waitFor("the range", `agentHistory.loading === 0 && agentHistory.records.length === 50 && agentHistory.records.every(r => r.seq >= 101 && r.seq <= 150)`)
	b.waitFor("the timeline of the range", `agentHistory.timeline.buckets.reduce((a, x) => a + x.n, 0) === 50`)

	// Back to the live view.
	click("#tab-live")
	b.waitFor("live view", `!document.getElementById('live').hidden && document.getElementById('history').hidden`)
	b.checkConsole("400 (Bad Request)")
}
