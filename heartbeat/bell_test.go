package heartbeat

import (
	"testing"
	"time"

	"agent/internal/ride"
)

// TestBellRungByProbes: memberlist's probes and their acks ring the bell,
// so a timer with an open window fires long before its deadline.
func TestBellRungByProbes(t *testing.T) {
	bells := []*ride.Bell{ride.New(), ride.New()}
	i := 0
	startCluster(t, 2, func(c *Config) { c.Bell = bells[i]; i++ })
	for _, b := range bells {
		tm := b.NewTimer()
		tm.Reset(time.Hour, time.Hour)
		select {
		case <-tm.C:
		case <-time.After(30 * time.Second):
			t.Fatal("the bell did not ring in 30 s of probes")
		}
		if rides, deadlines := b.Stats(); rides == 0 || deadlines != 0 {
			t.Fatalf("stats = %d rides, %d deadlines, want rides only", rides, deadlines)
		}
	}
}
