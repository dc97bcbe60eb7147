package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"agent/internal/testutil"
	"agent/stream"
	"agent/triggers"
)

// TestTriggersEndToEnd: a trigger of node.conf fires with its records on
// stdin, shows in GET /v1/triggers and /metrics, and a live edit of its
// match expires its open stream with reason reload.
func TestTriggersEndToEnd(t *testing.T) {
	root := shortTemp(t)
	out := filepath.Join(root, "trig.out")
	trig := func(match string) string {
		return fmt.Sprintf("[trigger#orders]\nmatch = %s\ndistinct = data.node\ncount = 2\n"+
			"fire_command = /bin/sh -c \"echo == $AGENT_TRIGGER_OUTCOME $AGENT_TRIGGER_REASON >> %[2]s; cat >> %[2]s\"\n"+
			"expire_command = /bin/sh -c \"echo == $AGENT_TRIGGER_OUTCOME $AGENT_TRIGGER_REASON >> %[2]s; cat >> %[2]s\"\n", match, out)
	}
	writeConf(t, root, nodeConf("n1", trig(`data.id in ["node_freeze","node_thaw"]`)))
	a := startAgent(t, root)
	setFrozen(t, a, 1)
	setFrozen(t, a, 0)
	testutil.Eventually(t, 30*time.Second, func() bool {
		b, _ := os.ReadFile(out)
		return bytes.Count(b, []byte("\n")) == 3
	}, "the fire command never wrote its two records")
	b, _ := os.ReadFile(out)
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if string(lines[0]) != "== fire count" || !bytes.Contains(lines[1], []byte(`"id":"node_freeze"`)) || !bytes.Contains(lines[2], []byte(`"id":"node_thaw"`)) {
		t.Fatalf("fire run:\n%s", b)
	}

	setFrozen(t, a, 1)
	client := stream.UnixHTTPClient(a.Paths().Socket)
	var list []triggers.Listed
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, body := apiGet(t, client, "http://unix/v1/triggers")
		return code == 200 && json.Unmarshal(body, &list) == nil && len(list) == 1 && len(list[0].Open) == 1
	}, "GET /v1/triggers never showed the open stream: %v", func() any { return list })
	if l := list[0]; l.Name != "orders" || l.Open[0].Key != "data.node=n1" || l.Open[0].Count != 1 || l.Fires != 1 || l.Count != 2 {
		t.Fatalf("listed %+v", l)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, body := apiGet(t, client, "http://unix/metrics")
		return code == 200 && bytes.Contains(body, []byte(`agent_trigger_fires_total{trigger="orders"} 1`)) &&
			bytes.Contains(body, []byte(`agent_trigger_open_streams{trigger="orders"} 1`))
	}, "/metrics never showed the trigger: %s", func() any { _, body := apiGet(t, client, "http://unix/metrics"); return string(body) })

	// A live edit of match: the open stream expires with reason reload.
	writeConf(t, root, nodeConf("n1", trig("data.id=node_thaw")))
	testutil.Eventually(t, 30*time.Second, func() bool {
		b, _ := os.ReadFile(out)
		return bytes.Contains(b, []byte("== expire reload\n"))
	}, "the reload never expired the open stream")
	testutil.Eventually(t, 30*time.Second, func() bool {
		return bytes.Contains(eventsOf(t, a.Agent), []byte(`"applied":["triggers"]`)) &&
			bytes.Contains(eventsOf(t, a.Agent), []byte(`"id":"trigger_expire","reason":"reload"`))
	}, "node_config_change or trigger_expire missing")
}
