// Package agenttest runs in-process agents for the tests of the packages
// built on package agent (the CLI, the web page): each agent has its own
// root directory, a heartbeat on a free loopback port and memberlist
// timings shrunk to milliseconds.
package agenttest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agent/agent"
	"agent/config"
	"agent/internal/testutil"
	"agent/monitor"
)

// Node is one running agent.
type Node struct {
	*agent.Agent
	// Root is the agent's --root directory.
	Root   string
	cancel context.CancelFunc
	done   chan error
}

// Stop stops the agent (graceful leave) and releases it. Safe to call twice.
func (n *Node) Stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	_ = n.Close()
	n.cancel = nil
}

// Options adjust the cluster a test starts.
type Options struct {
	// Extra is appended to every node.conf (for instance a [listener]
	// section); %d in it is replaced by the node's index (1-based).
	Extra string
	// Cluster is more lines of the [cluster] section (quorum = true).
	Cluster string
	// Services are written to every node's svc directory, by name.
	Services map[string]string
	// ServicesByNode are written to one node's svc directory: node name,
	// then service name.
	ServicesByNode map[string]map[string]string
}

// StartCluster starts n agents named n1..nN that join n1, waits until they
// hold the same cluster data, and stops them in t.Cleanup.
func StartCluster(t testing.TB, n int, opts Options) []*Node {
	t.Helper()
	base, err := os.MkdirTemp("", "agt") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	var nodes []*Node
	var seeds []string
	for i := 1; i <= n; i++ {
		root := filepath.Join(base, fmt.Sprintf("n%d", i))
		extra := strings.ReplaceAll(opts.Extra, "%d", fmt.Sprint(i))
		conf := fmt.Sprintf("[node]\nname = n%d\n[cluster]\nname = test\nseeds = %s\n%s\n[hb]\naddr = 127.0.0.1\nport = 0\nprofile = local\n%s",
			i, strings.Join(seeds, " "), opts.Cluster, extra)
		if err := os.MkdirAll(filepath.Join(root, "etc", "svc"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc", "node.conf"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		svcs := map[string]string{}
		for name, text := range opts.Services {
			svcs[name] = text
		}
		for name, text := range opts.ServicesByNode[fmt.Sprintf("n%d", i)] {
			svcs[name] = text
		}
		for name, text := range svcs {
			if err := os.WriteFile(filepath.Join(root, "etc", "svc", name+".conf"), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		node := Start(t, root)
		if seeds == nil {
			seeds = []string{node.Heartbeat().Addr()}
		}
		nodes = append(nodes, node)
	}
	WaitConverged(t, nodes)
	return nodes
}

// Start runs the agent under root and waits until its status is idle.
func Start(t testing.TB, root string) *Node {
	t.Helper()
	a, err := agent.New(agent.Options{
		Paths:         config.ResolvePaths(root, os.Geteuid(), ""),
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		StatsInterval: -1,
		ForgetAfter:   time.Hour,
		TuneHeartbeat: testutil.FastTimings,
		LeaveTimeout:  500 * time.Millisecond,
		ReadyPeriod:   200 * time.Millisecond,
		RejoinGrace:   2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{Agent: a, Root: root, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- a.Run(ctx) }()
	t.Cleanup(n.Stop)
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, _, d := a.Store().Local()
		return d.Status == monitor.StatusIdle
	}, "%s never idle", a.Name())
	return n
}

// MonitorNodes returns the monitor.nodes section of a document.
func MonitorNodes(doc []byte) string {
	var d struct {
		Monitor struct {
			Nodes json.RawMessage `json:"nodes"`
		} `json:"monitor"`
	}
	_ = json.Unmarshal(doc, &d)
	return string(d.Monitor.Nodes)
}

// WaitConverged waits until every node holds every node's data, identical.
func WaitConverged(t testing.TB, nodes []*Node) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() bool {
		want := MonitorNodes(nodes[0].Store().Document())
		if len(nodes[0].Store().NodeNames()) != len(nodes) {
			return false
		}
		for _, n := range nodes[1:] {
			if MonitorNodes(n.Store().Document()) != want {
				return false
			}
		}
		return true
	}, "cluster data never converged")
}
