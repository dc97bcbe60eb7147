package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"agent/events"
	"agent/stream"
)

// fanoutChildFlag runs agent-bench as the subscribers of the fan-out
// measurement, in a process of their own, so that the agent side's CPU is
// measured alone.
const fanoutChildFlag = "fanout-child"

// fanoutResult is what the child process reports on stdout.
type fanoutResult struct {
	Deliveries int     `json:"deliveries"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	Err        string  `json:"err,omitempty"`
	// ChildCores is filled by the parent: the subscribers' own CPU.
	ChildCores float64 `json:"-"`
}

// fanoutRow measures the stream with subs websocket subscribers (batch=1)
// in a child process while this process publishes rate records/s for
// seconds: delivery latency from the records' own publish time, and the
// CPU this process (bus + websocket handler) used meanwhile.
func (b *bench) fanoutRow(subs, rate int, seconds time.Duration) {
	res, cores, err := measureFanout(subs, rate, seconds)
	metric := fmt.Sprintf("stream fan-out, %d subscribers × %d records/s (batch=1, subscribers in another process)", subs, rate)
	if err != nil {
		b.add(metric, "error: "+err.Error(), "", nil)
		return
	}
	want := float64(subs * rate)
	got := float64(res.Deliveries) / seconds.Seconds()
	ok := cores <= 1 && res.P99ms <= 100 && got >= 0.95*want
	b.add(metric, fmt.Sprintf("%.0f deliveries/s, p50 %.1f ms, p99 %.1f ms, agent side %.2f core (subscribers %.2f core)", got, res.P50ms, res.P99ms, cores, res.ChildCores),
		"p99 ≤ 100 ms within one core", &ok)
}

func measureFanout(subs, rate int, seconds time.Duration) (fanoutResult, float64, error) {
	var res fanoutResult
	bus, err := events.Open(events.Config{Logger: quiet(), MaxLag: 1 << 20, RingSize: 1 << 17})
	if err != nil {
		return res, 0, err
	}
	defer bus.Close()
	h := stream.NewHandler(stream.HandlerConfig{Bus: stream.BusAdapter{Bus: bus}, Logger: quiet()})
	defer h.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, 0, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	self, err := os.Executable()
	if err != nil {
		return res, 0, err
	}
	total := int(seconds.Seconds() * float64(rate))
	url := "ws://" + ln.Addr().String() + "/v1/events?batch=1"
	cmd := exec.Command(self, "--"+fanoutChildFlag, fmt.Sprintf("%s,%d,%d", url, subs, total))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, 0, err
	}
	if err := cmd.Start(); err != nil {
		return res, 0, err
	}
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	rd := bufio.NewReader(out)
	line, err := rd.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		return res, 0, fmt.Errorf("subscribers did not start: %q %v", line, err)
	}

	payload := json.RawMessage(`[{"op":"replace","path":"/monitor/nodes/n1/labels/k","value":"v0123456789"}]`)
	cpu0 := processCPU()
	start := time.Now()
	for i := range total {
		bus.Publish("n1", events.KindPatch, payload)
		next := start.Add(time.Duration(i+1) * time.Second / time.Duration(rate))
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
	line, err = rd.ReadString('\n')
	wall := time.Since(start)
	cores := (processCPU() - cpu0).Seconds() / wall.Seconds()
	if err != nil {
		return res, 0, fmt.Errorf("subscribers ended without a result: %v", err)
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, 0, err
	}
	waited = true
	if err := cmd.Wait(); err == nil && cmd.ProcessState != nil {
		res.ChildCores = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() / wall.Seconds()
	}
	if res.Err != "" {
		return res, 0, errors.New(res.Err)
	}
	return res, cores, nil
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fanoutChild connects the subscribers, says "ready", reads until each
// got every record, and prints a fanoutResult.
func fanoutChild(arg string) {
	parts := strings.Split(arg, ",")
	report := func(r fanoutResult) {
		out, _ := json.Marshal(r)
		fmt.Println(string(out))
	}
	if len(parts) != 3 {
		report(fanoutResult{Err: "want URL,SUBS,RECORDS"})
		return
	}
	subs, _ := strconv.Atoi(parts[1])
	total, _ := strconv.Atoi(parts[2])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conns := make([]*websocket.Conn, 0, subs)
	for range subs {
		c, _, err := websocket.Dial(ctx, parts[0], nil)
		if err != nil {
			report(fanoutResult{Err: err.Error()})
			return
		}
		c.SetReadLimit(-1)
		conns = append(conns, c)
	}
	fmt.Println("ready")
	var mu sync.Mutex
	var lat []time.Duration
	deliveries := 0
	var wg sync.WaitGroup
	errc := make(chan error, subs)
	for i, c := range conns {
		wg.Add(1)
		go func(sample bool) {
			defer wg.Done()
			defer c.CloseNow()
			got := 0
			var mine []time.Duration
			var buf bytes.Buffer
			patch := []byte(`"kind":"patch"`)
			for got < total {
				_, r, err := c.Reader(ctx)
				if err == nil {
					buf.Reset()
					_, err = buf.ReadFrom(r)
				}
				if err != nil {
					errc <- err
					return
				}
				data := buf.Bytes()
				if !sample {
					got += bytes.Count(data, patch)
					continue
				}
				// Latency is sampled on a tenth of the subscribers, from
				// the record's publish time (same machine, same clock).
				now := time.Now()
				for line := range bytes.SplitSeq(data, []byte{'\n'}) {
					if !bytes.Contains(line, patch) {
						continue
					}
					got++
					if rec, err := events.ParseRecord(line); err == nil {
						mine = append(mine, now.Sub(rec.Time))
					}
				}
			}
			mu.Lock()
			deliveries += got
			lat = append(lat, mine...)
			mu.Unlock()
		}(i%10 == 0)
	}
	wg.Wait()
	select {
	case err := <-errc:
		report(fanoutResult{Err: err.Error()})
		return
	default:
	}
	report(fanoutResult{Deliveries: deliveries, P50ms: msf(quantile(lat, 0.5)), P99ms: msf(quantile(lat, 0.99))})
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
