package agent

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
)

func TestProcsStep(t *testing.T) {
	type step struct {
		used      float64
		want      int
		wantQuiet int
	}
	cases := []struct {
		name  string
		cur   int
		max   int
		steps []step
	}{
		{"quiet windows bring one P", 4, 4, []step{
			{0.05, 4, 1}, {0.02, 4, 2}, {0.01, 1, 0}, {0.01, 1, 0},
		}},
		{"a busy window in between starts the count again", 2, 2, []step{
			{0.05, 2, 1}, {0.3, 2, 0}, {0.05, 2, 1}, {0.05, 2, 2}, {0.05, 1, 0},
		}},
		{"half a core on one P gives every P back", 1, 4, []step{
			{0.2, 1, 0}, {0.49, 1, 0}, {0.5, 4, 0}, {0.9, 4, 0},
		}},
		{"a one-CPU machine stays as it is", 1, 1, []step{
			{0.0, 1, 0}, {0.9, 1, 0},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cur, quiet := c.cur, 0
			for i, s := range c.steps {
				cur, quiet = procsStep(cur, c.max, s.used, quiet)
				if cur != s.want || quiet != s.wantQuiet {
					t.Fatalf("window %d (%.2f cores): %d Ps, %d quiet; want %d, %d", i, s.used, cur, quiet, s.want, s.wantQuiet)
				}
			}
		})
	}
}

// The governor gives the process its Ps back when it stops.
func TestGovernProcsRestores(t *testing.T) {
	max := runtime.GOMAXPROCS(0)
	if max < 2 {
		t.Skip("one CPU: the governor has nothing to do")
	}
	a := &Agent{log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	runtime.GOMAXPROCS(1) // as if it had lowered them
	go func() { defer close(done); a.governProcs(ctx, max) }()
	cancel()
	<-done
	if got := runtime.GOMAXPROCS(0); got != max {
		t.Fatalf("GOMAXPROCS after the governor stopped = %d, want %d", got, max)
	}
}
