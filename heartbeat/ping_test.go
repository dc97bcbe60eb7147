package heartbeat

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPingAnswersOnlyWhileTheLoopRuns: a running heartbeat answers, a
// stopped one never does (the probe then ends with its context).
func TestPingAnswersOnlyWhileTheLoopRuns(t *testing.T) {
	n := startNode(t, "n1", 0, nil, nil)
	t.Cleanup(n.kill)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.hb.Ping(ctx); err != nil {
		t.Fatalf("ping of a running heartbeat: %v", err)
	}
	n.kill()
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := n.hb.Ping(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping of a stopped heartbeat: %v, want the deadline", err)
	}
}
