package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
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
	// WarmP99ms is the p99 of the warm-up records.
	WarmP99ms float64 `json:"warm_p99_ms"`
	Err       string  `json:"err,omitempty"`
	// ChildCores is the subscribers' own CPU over the measured records.
	ChildCores float64 `json:"child_cores"`
}

// fanoutWarmup is how long records flow before the measurement starts:
// the first second after a thousand subscribers connect at once is spent
// growing buffers, heaps and socket queues on both sides, and is not the
// steady state the target is about. The README gives that transient too.
const fanoutWarmup = 2 * time.Second

// fanoutRow measures the stream with subs websocket subscribers (batch=1)
// in a child process while this process publishes rate records/s for
// fanoutWarmup then seconds: delivery latency of the records after the
// warm-up, from their own publish time, and the CPU this process (bus +
// websocket handler) used meanwhile.
func (b *bench) fanoutRow(subs, rate int, seconds time.Duration) {
	childProfile := ""
	if b.profile != "" {
		childProfile = fmt.Sprintf("%s.child%d", b.profile, subs)
	}
	res, cores, err := measureFanout(subs, rate, seconds, childProfile)
	metric := fmt.Sprintf("stream fan-out, %d subscribers × %d records/s (batch=1, subscribers in another process, after %s warm-up)", subs, rate, fanoutWarmup)
	if err != nil {
		b.add(metric, "error: "+err.Error(), "", nil)
		return
	}
	want := float64(subs * rate)
	got := float64(res.Deliveries) / (seconds + fanoutWarmup).Seconds()
	ok := cores <= 1 && res.P99ms <= 100 && got >= 0.95*want
	b.add(metric, fmt.Sprintf("%.0f deliveries/s, p50 %.1f ms, p99 %.1f ms, agent side %.2f core (subscribers %.2f core); warm-up p99 %.0f ms",
		got, res.P50ms, res.P99ms, cores, res.ChildCores, res.WarmP99ms),
		"p99 ≤ 100 ms within one core", &ok)
}

func measureFanout(subs, rate int, seconds time.Duration, childProfile string) (fanoutResult, float64, error) {
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
	warm := int(fanoutWarmup.Seconds() * float64(rate))
	total := warm + int(seconds.Seconds()*float64(rate))
	url := "ws://" + ln.Addr().String() + "/v1/events?batch=1"
	cmd := exec.Command(self, "--"+fanoutChildFlag, fmt.Sprintf("%s,%d,%d,%d", url, subs, total, warm), "--cpuprofile", childProfile)
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
	var cpu0 time.Duration
	var measured time.Time
	start := time.Now()
	for i := range total {
		if i == warm {
			cpu0, measured = processCPU(), time.Now()
		}
		bus.Publish("n1", events.KindPatch, payload)
		next := start.Add(time.Duration(i+1) * time.Second / time.Duration(rate))
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
	line, err = rd.ReadString('\n')
	cores := (processCPU() - cpu0).Seconds() / time.Since(measured).Seconds()
	if err != nil {
		return res, 0, fmt.Errorf("subscribers ended without a result: %v", err)
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, 0, err
	}
	waited = true
	_ = cmd.Wait()
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
// got every record, and prints a fanoutResult. With profile it writes a CPU
// profile of the reading there.
func fanoutChild(arg, profile string) {
	parts := strings.Split(arg, ",")
	report := func(r fanoutResult) {
		out, _ := json.Marshal(r)
		fmt.Println(string(out))
	}
	if len(parts) != 4 {
		report(fanoutResult{Err: "want URL,SUBS,RECORDS,WARMUP_RECORDS"})
		return
	}
	subs, _ := strconv.Atoi(parts[1])
	total, _ := strconv.Atoi(parts[2])
	warm, _ := strconv.Atoi(parts[3])
	// The subscribers' CPU is taken from the first measured record seen to
	// the end.
	var measureOnce sync.Once
	var cpu0 time.Duration
	var measured time.Time
	startMeasure := func() { measureOnce.Do(func() { cpu0, measured = processCPU(), time.Now() }) }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conns := make([]*websocket.Conn, 0, subs)
	// Each connection reads through a 64 KiB buffer, as a browser does,
	// rather than the 4 KiB the websocket library reads with: a batch frame
	// then costs one read(2), not three.
	var dialer net.Dialer
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
		},
	}}
	for range subs {
		c, _, err := websocket.Dial(ctx, parts[0], &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			report(fanoutResult{Err: err.Error()})
			return
		}
		c.SetReadLimit(-1)
		conns = append(conns, c)
	}
	if profile != "" {
		if f, err := os.Create(profile); err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	fmt.Println("ready")
	var mu sync.Mutex
	var lat, warmLat []time.Duration
	deliveries := 0
	var wg sync.WaitGroup
	errc := make(chan error, subs)
	for i, c := range conns {
		wg.Add(1)
		go func(sample bool) {
			defer wg.Done()
			defer c.CloseNow()
			got := 0
			var mine, mineWarm []time.Duration
			// Fixed-size buffers: a subscriber that reads whole messages
			// into a growing buffer ends up holding the largest frame it
			// ever saw, a thousand times over.
			br := bufio.NewReaderSize(nil, 32<<10)
			chunk := make([]byte, 32<<10)
			for got < total {
				_, r, err := c.Reader(ctx)
				if err == nil {
					var n int
					if sample {
						n, err = readSampled(br, r, uint64(warm), &mine, &mineWarm, startMeasure)
					} else {
						n, err = countRecords(r, chunk)
					}
					got += n
				}
				if err != nil {
					errc <- err
					return
				}
			}
			mu.Lock()
			deliveries += got
			lat = append(lat, mine...)
			warmLat = append(warmLat, mineWarm...)
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
	startMeasure() // no-op unless no record was measured
	childCores := (processCPU() - cpu0).Seconds() / time.Since(measured).Seconds()
	report(fanoutResult{Deliveries: deliveries, P50ms: msf(quantile(lat, 0.5)), P99ms: msf(quantile(lat, 0.99)), WarmP99ms: msf(quantile(warmLat, 0.99)), ChildCores: childCores})
}

// bufferedConn reads a connection through a buffer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// progressKind marks a progress record, which the subscribers do not count.
var progressKind = []byte(`"kind":"progress"`)

// countRecords counts the records of one message, reading it in chunks.
func countRecords(r io.Reader, chunk []byte) (int, error) {
	lines, size := 0, 0
	var head []byte
	for {
		n, err := r.Read(chunk)
		if size == 0 && n > 0 {
			head = append(head[:0], chunk[:min(n, 256)]...)
		}
		size += n
		lines += bytes.Count(chunk[:n], []byte{'\n'})
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if lines == 0 && bytes.Contains(head, progressKind) {
		return 0, nil
	}
	return lines + 1, nil
}

// readSampled reads one message line by line and appends the delivery
// latency of each record after seq warm to lat, of the others to warmLat,
// from its publish time (same machine, same clock); the first record after
// warm calls measuring.
func readSampled(br *bufio.Reader, r io.Reader, warm uint64, lat, warmLat *[]time.Duration, measuring func()) (int, error) {
	br.Reset(r)
	now := time.Now()
	got := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && !bytes.Contains(line, progressKind) {
			got++
			if seq, t, ok := recordSeqTime(line); ok && seq > warm {
				measuring()
				*lat = append(*lat, now.Sub(t))
			} else if ok {
				*warmLat = append(*warmLat, now.Sub(t))
			}
		}
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// recordSeqTime reads the seq and the time of a record line without
// decoding the rest: the subscribers' process shares the machine with the
// agent, and what it spends is taken from the agent being measured.
func recordSeqTime(line []byte) (uint64, time.Time, bool) {
	seqKey, timeKey := []byte(`{"seq":`), []byte(`"time":"`)
	if !bytes.HasPrefix(line, seqKey) {
		return 0, time.Time{}, false
	}
	end := bytes.IndexByte(line, ',')
	if end < len(seqKey) {
		return 0, time.Time{}, false
	}
	seq, err := strconv.ParseUint(string(line[len(seqKey):end]), 10, 64)
	if err != nil {
		return 0, time.Time{}, false
	}
	i := bytes.Index(line, timeKey)
	if i < 0 || len(line) < i+len(timeKey)+len(events.TimeFormat) {
		return 0, time.Time{}, false
	}
	t, err := time.Parse(events.TimeFormat, string(line[i+len(timeKey):i+len(timeKey)+len(events.TimeFormat)]))
	return seq, t, err == nil
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
