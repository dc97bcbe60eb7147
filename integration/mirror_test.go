package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"agent/events"
	"agent/stream"
)

// mirrorClient follows one agent's stream into a stream.Mirror, as any
// websocket client would: a snapshot first, then every record, resuming
// across reconnects.
type mirrorClient struct {
	s      *stream.Stream
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	m      stream.Mirror
	fulls  int
	resets int
	errs   []error
	ended  error
}

// mirrorDials alternates the mirrors between one record per frame and
// batch frames (the shared-frame path), so both run in real processes.
var mirrorDials atomic.Uint64

func dialMirror(t testing.TB, n *node) *mirrorClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	s, err := stream.Dial(ctx, stream.DialOptions{
		HTTPClient: stream.UnixHTTPClient(n.socket()),
		URL:        "http://unix/v1/events",
		Snapshot:   true,
		Batch:      mirrorDials.Add(1)%2 == 0,
		Reconnect:  true,
		MaxBackoff: 300 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("dial %s events: %v", n.name, err)
	}
	mc := &mirrorClient{s: s, done: make(chan struct{})}
	var rctx context.Context
	rctx, mc.cancel = context.WithCancel(context.Background())
	go mc.loop(rctx)
	t.Cleanup(mc.close)
	return mc
}

func (mc *mirrorClient) loop(ctx context.Context) {
	defer close(mc.done)
	for {
		rec, err := mc.s.Next(ctx)
		if err != nil {
			mc.mu.Lock()
			mc.ended = err
			mc.mu.Unlock()
			return
		}
		mc.mu.Lock()
		switch rec.Kind {
		case events.KindFull:
			mc.fulls++
		case events.KindReset:
			mc.resets++
		}
		if err := mc.m.Apply(rec); err != nil {
			mc.errs = append(mc.errs, err)
		}
		mc.mu.Unlock()
	}
}

func (mc *mirrorClient) close() {
	mc.cancel()
	_ = mc.s.Close()
	<-mc.done
}

// state returns a copy of the mirror's document (canonical), seq and epoch.
func (mc *mirrorClient) state() (doc string, seq uint64, epoch string, ready bool) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if d := mc.m.Doc(); d != nil {
		var v any
		if err := json.Unmarshal(d, &v); err == nil {
			doc = canonical(v)
		}
	}
	return doc, mc.m.Seq(), mc.m.Epoch(), mc.m.Ready()
}

// waitEqual waits until the mirror holds exactly the agent's cluster data.
func (mc *mirrorClient) waitEqual(t testing.TB, n *node) (seq uint64, epoch string) {
	t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		doc, seq, epoch, ready := mc.state()
		st := n.status()
		if ready && st != nil && doc == canonical(st) {
			return seq, epoch
		}
		mc.mu.Lock()
		ended := mc.ended
		mc.mu.Unlock()
		if ended != nil && !errors.Is(ended, context.Canceled) {
			t.Fatalf("mirror of %s: stream ended: %v", n.name, ended)
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror of %s never equal to daemon status (ready %v, seq %d):\nmirror %s\nstatus %s",
				n.name, ready, seq, doc, canonical(st))
		}
		time.Sleep(pollEvery)
	}
}

// TestMirrorExactAcrossRestart follows an agent's stream into a mirror
// across a restart of the agent, clean (SIGTERM) or not (SIGKILL): the
// client resumes in the same epoch, without a reset or a second snapshot,
// and its mirror ends equal to the agent's data. After the kill the seqs
// jump past the reserved block: an empty range, which the mirror takes.
func TestMirrorExactAcrossRestart(t *testing.T) {
	t.Parallel()
	for _, kill := range []bool{false, true} {
		name := "clean"
		if kill {
			name = "kill"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mirrorAcrossRestart(t, kill)
		})
	}
}

func mirrorAcrossRestart(t *testing.T, kill bool) {
	c := newCluster(t, clusterOpts{Nodes: 2})
	n1, n2 := c.node(1), c.node(2)
	c.waitConverged()

	mc := dialMirror(t, n1)
	n2.mustCLI("node", "freeze")
	n1.mustCLI("node", "freeze")
	n1.waitFor("monitor.nodes.n2.frozen!=0", detectTimeout)
	seq0, epoch0 := mc.waitEqual(t, n1)

	// The agent restarts under the subscriber; meanwhile its peer changes.
	if kill {
		n1.kill()
	} else {
		n1.stop()
	}
	n2.mustCLI("node", "thaw")
	n1.restart()
	n1.waitFor("monitor.nodes.n2.frozen=0", detectTimeout)
	n1.mustCLI("node", "thaw")
	n2.waitFor("cluster.nodes.n1.state=alive", detectTimeout)
	n2.mustCLI("node", "freeze", "--node", "n1")
	n1.waitFor("monitor.nodes.n1.frozen!=0", detectTimeout)
	seq1, epoch1 := mc.waitEqual(t, n1)

	mc.mu.Lock()
	defer mc.mu.Unlock()
	if epoch1 != epoch0 {
		t.Errorf("epoch changed across a restart: %s → %s", epoch0, epoch1)
	}
	if seq1 <= seq0 {
		t.Errorf("seq did not advance across the restart: %d → %d", seq0, seq1)
	}
	// The seqs of a clean restart follow on; a kill's jump past the
	// reserved block is thousands.
	if jumped := seq1-seq0 > 1000; jumped != kill {
		t.Errorf("seq %d → %d across the restart (kill %v)", seq0, seq1, kill)
	}
	if mc.fulls != 1 || mc.resets != 0 {
		t.Errorf("subscriber got %d full and %d reset records, want 1 and 0 (a resume without gap)", mc.fulls, mc.resets)
	}
	for _, err := range mc.errs {
		t.Errorf("mirror: %v", err)
	}
	t.Logf("mirror exact at seq %d of epoch %s (was %d before the restart)", seq1, epoch1, seq0)
}

// TestSubscribersComeAndGo connects and drops many subscribers while the
// data changes: every one that stays sees exactly the agent's data.
func TestSubscribersComeAndGo(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{Nodes: 2})
	n1, n2 := c.node(1), c.node(2)
	c.waitConverged()
	var keep []*mirrorClient
	for i := range 12 {
		mc := dialMirror(t, n1)
		if i%3 == 0 {
			keep = append(keep, mc)
		}
		action := []string{"freeze", "thaw"}[i%2]
		n2.mustCLI("node", action)
		if i%3 != 0 && i%2 == 1 {
			mc.close()
		}
	}
	n1.waitFor("monitor.nodes.n2.frozen=0", detectTimeout)
	for i, mc := range keep {
		t.Run(fmt.Sprint("subscriber", i), func(t *testing.T) {
			mc.waitEqual(t, n1)
			mc.mu.Lock()
			defer mc.mu.Unlock()
			for _, err := range mc.errs {
				t.Errorf("mirror: %v", err)
			}
		})
	}
}
