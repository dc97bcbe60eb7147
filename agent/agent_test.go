package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"agent/agent"
	"agent/config"
	"agent/internal/agenttest"
	"agent/internal/testutil"
	"agent/monitor"
	"agent/stream"
)

type testAgent = agenttest.Node

// shortTemp returns a short directory: unix socket paths are limited to
// 108 bytes and t.TempDir can be long.
func shortTemp(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ag")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// writeConf writes root/etc/node.conf.
func writeConf(t *testing.T, root, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "node.conf"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func nodeConf(name string, extra string) string {
	return fmt.Sprintf("[node]\nname = %s\n[cluster]\nname = test\n[hb]\naddr = 127.0.0.1\nport = 0\nprofile = local\n%s", name, extra)
}

// openAgent builds an agent on root's files, with a quiet logger,
// without running it.
func openAgent(root string) (*agent.Agent, error) {
	return agent.New(agent.Options{Paths: config.ResolvePaths(root, os.Geteuid(), ""), Logger: quiet()})
}

// setFrozen sets the frozen field of a's own node data (0 thaws), as
// `agent node freeze` does.
func setFrozen(t *testing.T, a *testAgent, v int64) {
	t.Helper()
	if _, _, err := a.Store().UpdateLocal("cli", func(d *monitor.NodeData) { d.Frozen = v }); err != nil {
		t.Fatal(err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var (
	startAgent    = agenttest.Start
	waitConverged = agenttest.WaitConverged
	startCluster  = func(t *testing.T, n int) []*testAgent { return agenttest.StartCluster(t, n, agenttest.Options{}) }
)

// canonical re-encodes JSON with sorted keys.
func canonical(t *testing.T, raw []byte) string {
	t.Helper()
	c, err := monitor.Canonical(raw)
	if err != nil {
		t.Fatalf("canonical: %v in %s", err, raw)
	}
	return string(c)
}

// TestMirrorProperty checks SPEC section 4: a subscriber that takes a
// snapshot and applies every patch holds exactly the agent's document,
// across thousands of changes on three nodes and a disconnect/resume.
func TestMirrorProperty(t *testing.T) {
	leak := testutil.CheckGoroutines(t)
	func() {
		agents := startCluster(t, 3)
		n1 := agents[0]
		ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
		defer cancel()
		// The test reads nothing while it makes its changes: on a loaded
		// machine that outlasts the agent's write timeout and the agent
		// drops the stream as a slow subscriber, by design. Reconnect
		// resumes it without gap or duplicate, which is the property.
		opts := stream.DialOptions{HTTPClient: stream.UnixHTTPClient(n1.Paths().Socket), URL: "http://unix/v1/events", Snapshot: true, Batch: true, Reconnect: true, Logger: quiet()}
		st, err := stream.Dial(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		m := &stream.Mirror{}
		apply := func(st *stream.Stream, until func() bool) {
			for !until() {
				rec, err := st.Next(ctx)
				if err != nil {
					t.Fatalf("stream: %v", err)
				}
				if err := m.Apply(rec); err != nil {
					t.Fatalf("mirror: %v", err)
				}
			}
		}
		rng := rand.New(rand.NewSource(7))
		change := func(i int) {
			a := agents[rng.Intn(len(agents))]
			_, _, err := a.Store().UpdateLocal("cli", func(d *monitor.NodeData) {
				switch rng.Intn(3) {
				case 0:
					if d.Frozen == 0 {
						d.Frozen = int64(1700000000 + i)
					} else {
						d.Frozen = 0
					}
				case 1:
					d.Labels[fmt.Sprintf("k%d", rng.Intn(10))] = fmt.Sprint(i)
				case 2:
					delete(d.Labels, fmt.Sprintf("k%d", rng.Intn(10)))
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 1000; i++ {
			change(i)
		}
		// Read part of the stream, then drop the connection and resume.
		apply(st, func() bool { return m.Ready() && m.Seq() > 200 })
		st.Close()
		opts.Snapshot, opts.Since, opts.Epoch = false, m.Seq(), m.Epoch()
		st, err = stream.Dial(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for i := 1000; i < 2000; i++ {
			change(i)
		}
		waitConverged(t, agents)
		apply(st, func() bool {
			seq, _ := n1.Bus().Position()
			return m.Seq() >= seq
		})
		if got, want := canonical(t, m.Doc()), canonical(t, n1.Store().Document()); got != want {
			t.Fatalf("mirror differs from the agent's document:\nmirror %s\nagent  %s", got, want)
		}
		for _, a := range agents {
			a.Stop()
		}
	}()
	leak()
}

func apiGet(t *testing.T, c *http.Client, url string) (int, []byte) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func apiPost(t *testing.T, c *http.Client, url string) (int, []byte) {
	t.Helper()
	resp, err := c.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestAPIStatusAndForwardedFreeze(t *testing.T) {
	agents := startCluster(t, 2)
	c := stream.UnixHTTPClient(agents[0].Paths().Socket)

	code, body := apiGet(t, c, "http://unix/v1/status?filter=monitor.nodes.n2.frozen")
	if code != 200 || strings.TrimSpace(string(body)) != "0" {
		t.Fatalf("status filter: %d %s", code, body)
	}
	code, body = apiGet(t, c, "http://unix/v1/status?filter=monitor.nodes.nosuch")
	if code != 404 || !strings.Contains(string(body), `"error"`) {
		t.Fatalf("missing path: %d %s", code, body)
	}
	code, body = apiPost(t, c, "http://unix/v1/nodes/n2/freeze")
	if code != 200 {
		t.Fatalf("freeze n2: %d %s", code, body)
	}
	if d, _ := agents[1].Store().Node("n2"); d.Frozen == 0 {
		t.Fatal("n2 did not freeze itself")
	}
	code, _ = apiPost(t, c, "http://unix/v1/nodes/n2/thaw")
	if d, _ := agents[0].Store().Node("n2"); code != 200 || d.Frozen != 0 {
		t.Fatalf("thaw n2: %d, frozen %d", code, d.Frozen)
	}
	code, body = apiPost(t, c, "http://unix/v1/nodes/nosuch/freeze")
	if code != 404 {
		t.Fatalf("unknown node: %d %s", code, body)
	}
	code, _ = apiPost(t, c, "http://unix/v1/nodes/n1/melt")
	if code != 404 {
		t.Fatalf("unknown action: %d", code)
	}
	code, body = apiGet(t, c, "http://unix/v1/whoami")
	if code != 200 || !strings.Contains(string(body), `"n1"`) {
		t.Fatalf("whoami: %d %s", code, body)
	}
}

func TestTokenListener(t *testing.T) {
	root := shortTemp(t)
	tokenFile := filepath.Join(root, "token")
	port := testutil.FreePort(t)
	writeConf(t, root, nodeConf("n1", fmt.Sprintf("[listener]\naddr = 127.0.0.1:%d\nauth = token\ntoken_file = %s\n", port, tokenFile)))
	a := startAgent(t, root)
	tok, err := os.ReadFile(tokenFile)
	if err != nil || a.Token() == "" || strings.TrimSpace(string(tok)) != a.Token() {
		t.Fatalf("token file not created: %v %q", err, tok)
	}
	if info, _ := os.Stat(tokenFile); info.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", info.Mode())
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, path := range []string{"/v1/status", "/metrics", "/v1/whoami"} {
		if code, _ := apiGet(t, http.DefaultClient, base+path); code != 401 {
			t.Fatalf("%s without token: %d, want 401", path, code)
		}
	}
	// The page and its assets load without the token: the page asks for it.
	for _, path := range []string{"/", "/static/app.js"} {
		if code, _ := apiGet(t, http.DefaultClient, base+path); code != 200 {
			t.Fatalf("%s without token: %d, want 200", path, code)
		}
	}
	req, _ := http.NewRequest("GET", base+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	req.Header.Set("Authorization", "Bearer "+a.Token())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("good token: %d", resp.StatusCode)
	}
	// A browser passes the token as the websocket subprotocol.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://127.0.0.1:"+fmt.Sprint(port)+"/v1/events?snapshot=1", &websocket.DialOptions{Subprotocols: []string{a.Token()}})
	if err != nil {
		t.Fatalf("websocket with token subprotocol: %v", err)
	}
	_, msg, err := conn.Read(ctx)
	if err != nil || !bytes.Contains(msg, []byte(`"kind":"full"`)) {
		t.Fatalf("first message %s, %v", msg, err)
	}
	conn.Close(websocket.StatusNormalClosure, "")
	_, resp, err = websocket.Dial(ctx, "ws://127.0.0.1:"+fmt.Sprint(port)+"/v1/events", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("websocket without token: %v", err)
	}
}

func TestBadConfigRefused(t *testing.T) {
	root := shortTemp(t)
	writeConf(t, root, "[node]\nname = n1\nnmae = x\n")
	_, err := openAgent(root)
	if err == nil || !strings.Contains(err.Error(), "node.conf:3") || !strings.Contains(err.Error(), "nmae") {
		t.Fatalf("err = %v, want file:line naming the key", err)
	}
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("err %v is not config.ErrInvalid", err)
	}
}

func TestFrozenAndGenSurviveRestart(t *testing.T) {
	root := shortTemp(t)
	writeConf(t, root, nodeConf("n1", ""))
	a := startAgent(t, root)
	if _, _, err := a.Store().UpdateLocal("cli", func(d *monitor.NodeData) { d.Frozen = time.Now().Unix() }); err != nil {
		t.Fatal(err)
	}
	gen1, _, d1 := a.Store().Local()
	a.Stop()

	b := startAgent(t, root)
	gen2, _, d2 := b.Store().Local()
	if d2.Frozen != d1.Frozen || d2.Frozen == 0 {
		t.Fatalf("frozen %d after restart, was %d", d2.Frozen, d1.Frozen)
	}
	if gen2 <= gen1 {
		t.Fatalf("gen went backwards across a restart: %d then %d", gen1, gen2)
	}
	// The record numbering survives too.
	seq, _ := b.Bus().Position()
	if seq == 0 {
		t.Fatal("no records after restart")
	}
}

func TestLabelsReloadLive(t *testing.T) {
	root := shortTemp(t)
	writeConf(t, root, nodeConf("n1", ""))
	a := startAgent(t, root)
	writeConf(t, root, strings.Replace(nodeConf("n1", ""), "name = n1\n", "name = n1\nlabels = zone=b\n", 1))
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, _, d := a.Store().Local()
		return d.Labels["zone"] == "b"
	}, "labels not reloaded")
	// An invalid edit keeps the running config.
	writeConf(t, root, "[node]\nname = n1\nbogus = 1\n")
	testutil.Eventually(t, 10*time.Second, func() bool {
		return bytes.Contains(eventsOf(t, a.Agent), []byte(`"reason":"invalid"`))
	}, "no node_config_change invalid event")
	if _, _, d := a.Store().Local(); d.Labels["zone"] != "b" {
		t.Fatalf("labels lost after an invalid edit: %v", d.Labels)
	}
}

// eventsOf reads every retained record of a's bus.
func eventsOf(t *testing.T, a *agent.Agent) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := stream.Dial(ctx, stream.DialOptions{HTTPClient: stream.UnixHTTPClient(a.Paths().Socket), URL: "http://unix/v1/events", Kinds: []string{"event"}, Since: 0, Epoch: "", SinceTime: time.Unix(1, 0), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out bytes.Buffer
	head, _ := a.Bus().Position()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		rec, err := st.Next(rctx)
		rcancel()
		if err != nil {
			return out.Bytes()
		}
		out.Write(rec.JSON())
		out.WriteByte('\n')
		if rec.Seq >= head {
			return out.Bytes()
		}
	}
}

func TestMetricsAndPage(t *testing.T) {
	agents := startCluster(t, 2)
	c := stream.UnixHTTPClient(agents[0].Paths().Socket)
	if _, _, err := agents[1].Store().UpdateLocal("cli", func(d *monitor.NodeData) { d.Frozen = 1 }); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, body := apiGet(t, c, "http://unix/metrics")
		return code == 200 && bytes.Contains(body, []byte(`agent_events_total{id="node_freeze"} 1`)) &&
			bytes.Contains(body, []byte(`agent_cluster_nodes{state="alive"} 2`)) &&
			bytes.Contains(body, []byte(`agent_records_published_total{kind="patch"}`))
	}, "metrics never showed the freeze event and both nodes alive")
	code, body := apiGet(t, c, "http://unix/")
	if code != 200 || !bytes.Contains(body, []byte("<html")) {
		t.Fatalf("GET /: %d %.200s", code, body)
	}
}

// TestHooksEndToEnd: a hook of node.conf gets the freeze event on stdin,
// a live edit adds a second hook, and a loose node.conf mode is refused.
func TestHooksEndToEnd(t *testing.T) {
	root := shortTemp(t)
	out1, out2 := filepath.Join(root, "h1.out"), filepath.Join(root, "h2.out")
	writeConf(t, root, nodeConf("n1", hookConf("one", "node_freeze", out1)))
	a := startAgent(t, root)
	setFrozen(t, a, 1)
	testutil.Eventually(t, 30*time.Second, func() bool {
		b, _ := os.ReadFile(out1)
		return bytes.Contains(b, []byte(`"id":"node_freeze"`)) && bytes.Contains(b, []byte(`"reason":"cli"`))
	}, "hook one never got node_freeze")

	writeConf(t, root, nodeConf("n1", hookConf("one", "node_freeze", out1)+hookConf("two", "node_thaw", out2)))
	testutil.Eventually(t, 30*time.Second, func() bool {
		return bytes.Contains(eventsOf(t, a.Agent), []byte(`"applied":["hooks"]`))
	}, "hook reload not applied")
	setFrozen(t, a, 0)
	testutil.Eventually(t, 30*time.Second, func() bool {
		b, _ := os.ReadFile(out2)
		return bytes.Contains(b, []byte(`"id":"node_thaw"`))
	}, "hook two never got node_thaw")
	// The run is counted when the command has exited, a little after its
	// output is written.
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, body := apiGet(t, stream.UnixHTTPClient(a.Paths().Socket), "http://unix/metrics")
		return code == 200 && bytes.Contains(body, []byte(`agent_hook_runs_total{hook="two"} 1`))
	}, "hook run never counted in /metrics")
}

// TestReachedWhileStarting: a restarted agent's peers keep rejoining its
// address, so cluster data can arrive while agent.New is still building
// the agent. What that data triggers (records, the orchestrator's wake-up,
// event counters) must find the agent ready.
func TestReachedWhileStarting(t *testing.T) {
	peer := startCluster(t, 1)[0]
	for i, busy := 0, 0; i < 8; i++ {
		root := shortTemp(t)
		port := testutil.FreePort(t)
		writeConf(t, root, strings.Replace(nodeConf(fmt.Sprintf("s%d", i), ""), "port = 0", fmt.Sprintf("port = %d", port), 1))
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		stop := testutil.Repeat(2000, func() { _, _ = peer.Heartbeat().Memberlist().Join([]string{addr}) })
		a, err := agent.New(agent.Options{Paths: config.ResolvePaths(root, os.Geteuid(), ""), Logger: quiet(),
			StatsInterval: -1, TuneHeartbeat: testutil.FastTimings})
		stop()
		if err != nil && strings.Contains(err.Error(), "address already in use") && busy < 5 {
			// The free port was taken by another test meanwhile: another.
			busy++
			i--
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = a.Close()
	}
}
