package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"agent/internal/testutil"
)

// TestReadyAndAlive: Ready is closed once a node has joined its peer, and
// once a node whose seeds do not answer has waited out the rejoin grace;
// Alive answers while the agent runs and fails once it has stopped.
func TestReadyAndAlive(t *testing.T) {
	nodes := startCluster(t, 2)
	for _, n := range nodes {
		select {
		case <-n.Ready():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never ready", n.Name())
		}
	}

	root := shortTemp(t)
	nobody := testutil.FreePort(t)
	writeConf(t, root, fmt.Sprintf("[node]\nname = alone\n[cluster]\nname = test\nseeds = 127.0.0.1:%d\n[hb]\naddr = 127.0.0.1\nport = 0\nprofile = local\n", nobody))
	alone := startAgent(t, root) // waits until idle: the rejoin grace has passed
	select {
	case <-alone.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("a node alone never ready after the rejoin grace")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := alone.Alive(ctx); err != nil {
		t.Fatalf("Alive of a running agent: %v", err)
	}
	alone.Stop()
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := alone.Alive(short); err == nil {
		t.Fatal("Alive of a stopped agent answered")
	}
}
