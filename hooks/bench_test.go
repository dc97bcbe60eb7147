package hooks

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"agent/events"
)

// waitIdle waits until the hook is done with seq and no command runs.
func waitIdle(b *testing.B, r *Runner, name string, seq uint64) {
	deadline := time.Now().Add(waitLong)
	for {
		if h, ok := statsOf(r, name); ok && h.Seq >= seq && !h.Running {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("hook %s not done with seq %d", name, seq)
		}
		time.Sleep(time.Millisecond) // coarse: polling must not take the CPU from the runner
	}
}

// BenchmarkPublishToStdin measures the latency from Publish to the hook
// having read the record from its stdin (fork and exec of a /bin/sh script
// included), one event at a time.
func BenchmarkPublishToStdin(b *testing.B) {
	dir := b.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		b.Fatal(err)
	}
	// Read-write, so that opening does not wait for a writer and the
	// reader never sees EOF between runs.
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rd := bufio.NewReader(f)

	bus := openBus(b, events.Config{Dir: filepath.Join(dir, "journal")})
	r := newRunner(b, Config{Bus: bus, Dir: filepath.Join(dir, "hooks")})
	cmd := script(b, dir, "h.sh", `read -r line; echo "$AGENT_SEQ" > "$1"`)
	update(b, r, hook("lat", cmd, fifo))

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		rec := publishEvent(bus, "bench", map[string]any{"i": i})
		if _, err := rd.ReadString('\n'); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		waitIdle(b, r, "lat", rec.Seq)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkRuns measures hook runs per second on a burst of events: one
// hook runs its command once per event, one at a time.
func BenchmarkRuns(b *testing.B) {
	for _, bc := range []struct {
		name string
		cmd  func(dir string) []string
	}{
		// No shell: the runner's own cost plus fork and exec.
		{"true", func(string) []string { return []string{"/bin/true"} }},
		// A /bin/sh script reading its stdin.
		{"sh-cat", func(dir string) []string {
			return []string{script(b, dir, "h.sh", `cat > /dev/null`)}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			bus := openBus(b, events.Config{Dir: filepath.Join(dir, "journal")})
			r := newRunner(b, Config{Bus: bus, Dir: filepath.Join(dir, "hooks")})
			update(b, r, hook("runs", bc.cmd(dir)...))
			b.ResetTimer()
			cpu0 := selfCPU(b)
			start := time.Now()
			var last *events.Record
			for i := range b.N {
				last = publishEvent(bus, "bench", map[string]any{"i": i})
			}
			waitIdle(b, r, "runs", last.Seq)
			elapsed := time.Since(start)
			cpu := selfCPU(b) - cpu0
			b.StopTimer()
			if h, _ := statsOf(r, "runs"); h.Runs != uint64(b.N) || h.Failures != 0 {
				b.Fatalf("stats %+v after %d events", h, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "runs/s")
			// The agent's own CPU per run (not the command's): steadier than
			// runs/s on a busy machine.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "agent-cpu-us/run")
		})
	}
}

// selfCPU returns the user and system CPU time this process used so far.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
