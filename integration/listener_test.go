package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawRequest sends one request to n's TCP listener and returns the status
// and the body.
func rawRequest(t testing.TB, n *node, method, path, host string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://%s%s", net.JoinHostPort(n.ip, strconv.Itoa(n.apiPort)), path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBrowsersCannotDriveTheAPI repeats the cross-site requests of a web
// page against a listener with auth = none: a text/plain POST from
// another origin, the same without Origin, and a rebound Host.
func TestBrowsersCannotDriveTheAPI(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 2})
	n1, n2 := c.node(1), c.node(2)
	c.waitConverged()

	code, body := rawRequest(t, n1, "POST", "/v1/nodes/n2/freeze", "",
		map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, "x")
	if code != http.StatusForbidden || !strings.Contains(body, "cross-origin") {
		t.Errorf("cross-site text/plain POST: %d %s, want 403", code, body)
	}
	code, body = rawRequest(t, n1, "POST", "/v1/nodes/n2/freeze", "", map[string]string{"Content-Type": "text/plain"}, "x")
	if code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST: %d %s, want 415", code, body)
	}
	code, body = rawRequest(t, n1, "GET", "/v1/status", "evil.example", nil, "")
	if code != http.StatusMisdirectedRequest || strings.Contains(body, "monitor") {
		t.Errorf("Host: evil.example: %d %.200s, want 421 without the document", code, body)
	}
	// What the CLI sends passes: a POST without a body nor an Origin.
	postOrder(t, n1, "freeze")
	n2.waitFor("monitor.nodes.n1.frozen!=0", detectTimeout)
	n1.waitFor("monitor.nodes.n2.frozen=0", detectTimeout)
}

// TestKeepAliveConnectionsBounded: one client opens 1000 keep-alive
// connections. The agent holds at most max_conns of them at once, closes
// each once idle, and its socket keeps answering meanwhile.
func TestKeepAliveConnectionsBounded(t *testing.T) {
	t.Parallel()
	const conns, maxConns = 1000, 100
	c := newCluster(t, clusterOpts{Nodes: 1, Listener: func(*node) string {
		return fmt.Sprintf("auth = none\nmax_conns = %d\nidle_timeout = 1s", maxConns)
	}})
	n := c.node(1)
	pid := n.pid()
	base, err := openFiles(pid)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(n.ip, strconv.Itoa(n.apiPort))

	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		closed, answers int
		failures        []string
	)
	for i := range conns {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 60*time.Second)
			if err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET /v1/whoami HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
			b, err := io.ReadAll(conn) // until the agent closes it
			mu.Lock()
			defer mu.Unlock()
			if strings.Contains(string(b), `"node":"n1"`) {
				answers++
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				failures = append(failures, "a keep-alive connection stayed open")
				return
			}
			closed++
		}(i)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	most := 0
	socketOK := false
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
			if k, err := openFiles(pid); err == nil && k > most {
				most = k
			}
			if !socketOK {
				_, _, code, err := n.run("daemon", "status", "--filter", "monitor.nodes.n1.status")
				socketOK = err == nil && code == 0
			}
		}
	}
	if len(failures) > 0 {
		t.Fatalf("%d failures, first: %s", len(failures), failures[0])
	}
	if closed != conns || answers != conns {
		t.Fatalf("%d of %d connections answered, %d closed by the agent", answers, conns, closed)
	}
	// The margin covers what the agent opens meanwhile (journal segment,
	// heartbeat TCP, socket clients).
	if most > base+maxConns+30 {
		t.Fatalf("the agent held %d files, %d before the clients: more than max_conns = %d", most, base, maxConns)
	}
	if !socketOK {
		t.Fatal("the unix socket did not answer while the listener was full")
	}
	t.Logf("open files: %d before, at most %d with %d clients (max_conns %d)", base, most, conns, maxConns)
}

// TestHugeFiltersRefused: a 600 KB filter is refused without being echoed;
// a filter of 30,000 terms, or of 1001, is refused.
func TestHugeFiltersRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1})
	n := c.node(1)
	for name, expr := range map[string]string{
		"600 KB":       "data.id=" + strings.Repeat("x", 600<<10),
		"30,000 terms": strings.Repeat("kind=event or ", 30000) + "kind=patch",
		"1001 terms":   strings.Repeat("a or ", 1000) + "a",
	} {
		code, body := rawRequest(t, n, "GET", "/v1/events?filter="+url.QueryEscape(expr), "", nil, "")
		if code != http.StatusBadRequest || len(body) > 1200 {
			t.Errorf("%s: %d, body of %d bytes: %.300s", name, code, len(body), body)
		}
		if !strings.Contains(body, "65536") && !strings.Contains(body, "more than 1000 terms") {
			t.Errorf("%s: the refusal does not say the limit: %.300s", name, body)
		}
	}
	// The CLI refuses it before sending it, just as briefly.
	_, errs, code := n.cli("wait", "--duration", "1s", "--filter", strings.Repeat("a or ", 20000)+"a")
	if code != 2 || len(errs) > 1200 {
		t.Errorf("agent wait with a huge filter: exit %d, %d bytes of stderr", code, len(errs))
	}
}

// TestGarbageHeartbeatLogLimited: thousands of garbage packets from two
// sources log at most one line per source per second, with the count of
// the lines held back.
func TestGarbageHeartbeatLogLimited(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 1})
	n := c.node(1)
	hb := &net.UDPAddr{IP: net.ParseIP(n.ip), Port: n.hbPort}
	sources := []string{"127.0.0.201", "127.0.0.202"}
	const bursts, perBurst = 3, 550 // per source: 1650 packets, 3300 in all
	for b := range bursts {
		for _, src := range sources {
			u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
			if err != nil {
				t.Fatal(err)
			}
			for i := range perBurst {
				// An unknown memberlist message type, then junk.
				_, _ = u.WriteToUDP([]byte{byte(100 + (i % 100)), 'j', 'u', 'n', 'k'}, hb)
			}
			u.Close()
		}
		if b < bursts-1 {
			time.Sleep(1100 * time.Millisecond) // the next burst falls in a later second
		}
	}
	waitCond(t, svcTimeout, "no held_back count in the log for each source", func() bool {
		log := n.logOf()
		for _, src := range sources {
			if !regexp.MustCompile(`peer=` + regexp.QuoteMeta(src) + ` held_back=\d+`).MatchString(log) {
				return false
			}
		}
		return true
	})
	if !n.running() {
		t.Fatal("the agent died of garbage")
	}
	stamp := regexp.MustCompile(`^time=(\S+)`)
	for _, src := range sources {
		perSecond := map[string]int{}
		lines := 0
		for _, line := range strings.Split(n.logOf(), "\n") {
			if !strings.Contains(line, "from="+src+":") {
				continue
			}
			lines++
			if m := stamp.FindStringSubmatch(line); m != nil && len(m[1]) >= 19 {
				perSecond[m[1][:19]]++
			}
		}
		for sec, k := range perSecond {
			if k > 1 {
				t.Errorf("%s: %d lines in second %s", src, k, sec)
			}
		}
		if lines == 0 || lines > 2*bursts {
			t.Errorf("%s: %d log lines for %d packets", src, lines, bursts*perBurst)
		}
	}
}
