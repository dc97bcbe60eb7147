package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"agent/events"
)

// The fan-out subscribers run in a child process, so that the agent's CPU
// is measured alone. Each is a minimal websocket reader: a hand-written
// handshake, then frame headers read from a buffer and payloads skipped,
// except on one subscriber in ten, which reads each record's seq and time
// (without decoding the rest) for the latency. What they measure is the
// agent, not a JSON parser or a websocket library.

// fanoutChildFlag runs agent-bench as the fan-out subscribers.
const fanoutChildFlag = "fanout-child"

// childArgs is what the parent tells the child (as JSON in the flag).
type childArgs struct {
	URL   string `json:"url"`
	Subs  int    `json:"subs"`
	Batch bool   `json:"batch"`
	// Records is how many patch or event records each subscriber reads
	// before it is done; the first Warm of them are the warm-up.
	Records int `json:"records"`
	Warm    int `json:"warm"`
	// Deadline bounds the whole reading.
	Deadline time.Duration `json:"deadline"`
}

// fanoutResult is what the child process reports on stdout.
type fanoutResult struct {
	Deliveries int     `json:"deliveries"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	// WarmP99ms is the p99 of the warm-up records.
	WarmP99ms float64 `json:"warm_p99_ms"`
	Err       string  `json:"err,omitempty"`
	// ChildCores is the subscribers' own CPU over the measured records.
	ChildCores float64 `json:"child_cores"`
}

// childReadBuffer is each subscriber's read buffer: what the agent writes
// at once to one subscriber is a few KiB.
const childReadBuffer = 16 << 10

// fanoutChild connects the subscribers, says "ready", reads until each
// got every record, and prints a fanoutResult. With profile it writes a CPU
// profile of the reading there.
func fanoutChild(arg, profile string) {
	report := func(r fanoutResult) {
		out, _ := json.Marshal(r)
		fmt.Println(string(out))
	}
	var a childArgs
	if err := json.Unmarshal([]byte(arg), &a); err != nil {
		report(fanoutResult{Err: "bad arguments: " + err.Error()})
		return
	}
	if err := raiseOpenFiles(); err != nil {
		report(fanoutResult{Err: err.Error()})
		return
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		report(fanoutResult{Err: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.Deadline)
	defer cancel()

	// Dial in parallel: ten thousand handshakes one after the other take a
	// while on a loaded machine.
	conns := make([]*frameReader, a.Subs)
	var dialErr error
	var dmu sync.Mutex
	var dwg sync.WaitGroup
	next := 0
	for range 16 {
		dwg.Go(func() {
			for {
				dmu.Lock()
				i := next
				next++
				failed := dialErr != nil
				dmu.Unlock()
				if i >= a.Subs || failed {
					return
				}
				fr, err := dialFrames(ctx, u)
				dmu.Lock()
				if err != nil && dialErr == nil {
					dialErr = fmt.Errorf("subscriber %d: %w", i, err)
				}
				conns[i] = fr
				dmu.Unlock()
			}
		})
	}
	dwg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.conn.Close()
			}
		}
	}()
	if dialErr != nil {
		report(fanoutResult{Err: dialErr.Error()})
		return
	}
	if deadline, ok := ctx.Deadline(); ok {
		for _, c := range conns {
			_ = c.conn.SetReadDeadline(deadline)
		}
	}
	if profile != "" {
		if f, err := os.Create(profile); err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}

	// The subscribers' CPU is taken from the first measured record seen to
	// the end.
	var measureOnce sync.Once
	var cpu0 time.Duration
	var measured time.Time
	startMeasure := func() { measureOnce.Do(func() { cpu0, measured = processCPU(), time.Now() }) }

	fmt.Println("ready")
	var mu sync.Mutex
	var lat, warmLat []time.Duration
	deliveries := 0
	var wg sync.WaitGroup
	errc := make(chan error, a.Subs)
	for i, c := range conns {
		c.sample = i%10 == 0
		c.batch = a.Batch
		c.warm = a.Warm
		c.measuring = startMeasure
		wg.Go(func() {
			err := c.read(a.Records)
			mu.Lock()
			deliveries += c.got
			lat = append(lat, c.lat...)
			warmLat = append(warmLat, c.warmLat...)
			mu.Unlock()
			if err != nil {
				errc <- fmt.Errorf("after %d records: %w", c.got, err)
			}
		})
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
	report(fanoutResult{
		Deliveries: deliveries,
		P50ms:      msf(quantile(lat, 0.5)), P99ms: msf(quantile(lat, 0.99)), MaxMs: msf(quantile(lat, 1)),
		WarmP99ms: msf(quantile(warmLat, 0.99)), ChildCores: childCores,
	})
}

// frameReader is one subscriber's connection, read frame by frame.
type frameReader struct {
	conn net.Conn
	br   *bufio.Reader

	sample    bool // read each record's seq and time
	batch     bool // a frame may hold several records separated by "\n"
	warm      int
	measuring func()

	got          int
	firstSeq     uint64 // seq of the first record read
	lat, warmLat []time.Duration
	payload      []byte // a sampled frame's payload
}

// dialFrames connects to the events endpoint u and makes the websocket
// handshake by hand.
func dialFrames(ctx context.Context, u *url.URL) (*frameReader, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13" +
		"\r\nSec-WebSocket-Key: YWdlbnQtYmVuY2gta2V5MQ==\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, childReadBuffer)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		conn.Close()
		return nil, fmt.Errorf("handshake: %s %s", resp.Status, body)
	}
	return &frameReader{conn: conn, br: br}, nil
}

// progressKind marks a progress record, which the subscribers do not count.
var progressKind = []byte(`"kind":"progress"`)

// read reads frames until it got records patch or event records.
func (r *frameReader) read(records int) error {
	var hdr [8]byte
	for r.got < records {
		if _, err := io.ReadFull(r.br, hdr[:2]); err != nil {
			return err
		}
		op, masked, n := hdr[0]&0x0f, hdr[1]&0x80 != 0, uint64(hdr[1]&0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(r.br, hdr[:2]); err != nil {
				return err
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(r.br, hdr[:8]); err != nil {
				return err
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		if masked || n > 1<<30 {
			return errors.New("bad frame from the agent (masked or too big)")
		}
		switch op {
		case 0x1: // text
		case 0x8: // close
			p := make([]byte, n)
			if _, err := io.ReadFull(r.br, p); err != nil {
				return err
			}
			if len(p) >= 2 {
				return fmt.Errorf("closed by the agent: %d %s", binary.BigEndian.Uint16(p), p[2:])
			}
			return errors.New("closed by the agent")
		default: // ping, pong: skip
			if _, err := r.br.Discard(int(n)); err != nil {
				return err
			}
			continue
		}
		if err := r.message(int(n)); err != nil {
			return err
		}
	}
	return nil
}

// message reads the payload of a text frame of n bytes and counts its
// records.
func (r *frameReader) message(n int) error {
	if r.sample {
		now := time.Now()
		if cap(r.payload) < n {
			r.payload = make([]byte, n)
		}
		r.payload = r.payload[:n]
		if _, err := io.ReadFull(r.br, r.payload); err != nil {
			return err
		}
		for line := range bytes.SplitSeq(r.payload, []byte{'\n'}) {
			if bytes.Contains(line, progressKind) {
				continue
			}
			r.got++
			seq, t, ok := recordSeqTime(line)
			if !ok {
				return fmt.Errorf("unreadable record %.100q", line)
			}
			if r.firstSeq == 0 {
				r.firstSeq = seq
			}
			if seq >= r.firstSeq+uint64(r.warm) {
				r.measuring()
				r.lat = append(r.lat, now.Sub(t))
			} else {
				r.warmLat = append(r.warmLat, now.Sub(t))
			}
		}
		return nil
	}
	if !r.batch {
		// One record: look at its head for the kind, skip the rest.
		head, err := r.br.Peek(min(n, 160))
		if err != nil {
			return err
		}
		if !bytes.Contains(head, progressKind) {
			r.got++
		}
		_, err = r.br.Discard(n)
		return err
	}
	lines, left := 0, n
	var head []byte
	for left > 0 {
		chunk, err := r.br.Peek(min(left, r.br.Size()))
		if err != nil {
			return err
		}
		if left == n {
			head = append(head[:0], chunk[:min(len(chunk), 160)]...)
		}
		lines += bytes.Count(chunk, []byte{'\n'})
		left -= len(chunk)
		if _, err := r.br.Discard(len(chunk)); err != nil {
			return err
		}
	}
	if lines == 0 && bytes.Contains(head, progressKind) {
		return nil
	}
	r.got += lines + 1
	return nil
}

// recordSeqTime reads the seq and the time of a record line without
// decoding the rest.
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
