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
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"agent/events"
)

// The fan-out subscribers run in a child process, so that the agent's CPU
// is measured alone. Each is a minimal websocket reader: a hand-written
// handshake, then its socket read from one of a few epoll loops (one per
// CPU, not a goroutine per socket), frame headers parsed in the buffer and
// payloads skipped, except on one subscriber in ten, which reads each
// record's seq and time (without decoding the rest) for the latency. What they measure is the
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
				c.close()
			}
		}
	}()
	if dialErr != nil {
		report(fanoutResult{Err: dialErr.Error()})
		return
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

	for i, c := range conns {
		c.sample = i%10 == 0
		c.batch = a.Batch
		c.warm = a.Warm
		c.measuring = startMeasure
	}
	fmt.Println("ready")
	deadline, _ := ctx.Deadline()
	err = readAll(conns, a.Records, deadline, runtime.NumCPU())
	var lat, warmLat []time.Duration
	deliveries := 0
	for _, c := range conns {
		deliveries += c.got
		lat = append(lat, c.lat...)
		warmLat = append(warmLat, c.warmLat...)
	}
	if err != nil {
		report(fanoutResult{Err: err.Error()})
		return
	}
	startMeasure() // no-op unless no record was measured
	childCores := (processCPU() - cpu0).Seconds() / time.Since(measured).Seconds()
	report(fanoutResult{
		Deliveries: deliveries,
		P50ms:      msf(quantile(lat, 0.5)), P99ms: msf(quantile(lat, 0.99)), MaxMs: msf(quantile(lat, 1)),
		WarmP99ms: msf(quantile(warmLat, 0.99)), ChildCores: childCores,
	})
}

// frameReader is one subscriber's connection: its socket (non-blocking,
// read from an epoll group) and the bytes not parsed yet.
type frameReader struct {
	fd  int
	buf []byte

	sample    bool // read each record's seq and time
	batch     bool // a frame may hold several records separated by "\n"
	warm      int
	measuring func()

	got          int
	firstSeq     uint64 // seq of the first record read
	lat, warmLat []time.Duration
}

// dialFrames connects to the events endpoint u, makes the websocket
// handshake by hand, and takes the socket from the Go runtime: the
// subscribers are read from a few epoll loops (readAll), not from a
// goroutine each, which would cost the child a core of scheduling on a
// machine where the agent needs it.
func dialFrames(ctx context.Context, u *url.URL) (*frameReader, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13" +
		"\r\nSec-WebSocket-Key: YWdlbnQtYmVuY2gta2V5MQ==\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, childReadBuffer)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("handshake: %s %s", resp.Status, body)
	}
	r := &frameReader{fd: -1, buf: make([]byte, 0, childReadBuffer)}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		r.buf = append(r.buf, b...)
	}
	// A duplicate of the socket shares its (non-blocking) file status;
	// the original goes with conn.
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return nil, err
	}
	var dupErr error
	if err := rc.Control(func(fd uintptr) { r.fd, dupErr = syscall.Dup(int(fd)) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup: %w", dupErr)
	}
	return r, nil
}

func (r *frameReader) close() {
	if r.fd >= 0 {
		_ = syscall.Close(r.fd)
		r.fd = -1
	}
}

// readAll reads every subscriber until each got records, or the deadline:
// groups goroutines, each blocked in epoll_wait on its share.
func readAll(subs []*frameReader, records int, deadline time.Time, groups int) error {
	errs := make([]error, groups)
	var wg sync.WaitGroup
	for g := range groups {
		share := subs[g*len(subs)/groups : (g+1)*len(subs)/groups]
		wg.Go(func() { errs[g] = readGroup(share, records, deadline) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readGroup reads subs from one epoll set until each got records.
func readGroup(subs []*frameReader, records int, deadline time.Time) error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	defer syscall.Close(epfd)
	left := 0
	for i, r := range subs {
		if err := r.consume(time.Now()); err != nil { // what came with the handshake
			return err
		}
		if r.got >= records {
			continue
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(i)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, r.fd, &ev); err != nil {
			return fmt.Errorf("epoll add: %w", err)
		}
		left++
	}
	events := make([]syscall.EpollEvent, 256)
	for left > 0 {
		wait := time.Until(deadline)
		if wait <= 0 {
			return fmt.Errorf("%d subscribers still reading at the deadline", left)
		}
		n, err := syscall.EpollWait(epfd, events, int(min(wait, time.Second)/time.Millisecond)+1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll wait: %w", err)
		}
		for _, ev := range events[:n] {
			r := subs[ev.Fd]
			done, err := r.readOnce(records)
			if err != nil {
				return fmt.Errorf("after %d records: %w", r.got, err)
			}
			if done {
				_ = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, r.fd, nil)
				left--
			}
		}
	}
	return nil
}

// readOnce reads what the socket holds (consume left room for it) and
// parses it; done says the subscriber got its records.
func (r *frameReader) readOnce(records int) (done bool, err error) {
	n, err := syscall.Read(r.fd, r.buf[len(r.buf):cap(r.buf)])
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return false, nil
	case err != nil:
		return false, err
	case n == 0:
		return false, io.EOF
	}
	r.buf = r.buf[:len(r.buf)+n]
	if err := r.consume(time.Now()); err != nil {
		return false, err
	}
	return r.got >= records, nil
}

// progressKind marks a progress record, which the subscribers do not count.
var progressKind = []byte(`"kind":"progress"`)

// consume parses the frames at the head of r.buf, counts their records,
// and keeps the bytes of an incomplete frame, with room for all of it, for
// the next read. now is when they were read.
func (r *frameReader) consume(now time.Time) error {
	b, need := r.buf, 0
frames:
	for len(b) >= 2 {
		op, masked, n, h := b[0]&0x0f, b[1]&0x80 != 0, uint64(b[1]&0x7f), 2
		switch n {
		case 126:
			if len(b) < 4 {
				break frames
			}
			n, h = uint64(binary.BigEndian.Uint16(b[2:4])), 4
		case 127:
			if len(b) < 10 {
				break frames
			}
			n, h = binary.BigEndian.Uint64(b[2:10]), 10
		}
		if masked || n > 1<<30 {
			return errors.New("bad frame from the agent (masked or too big)")
		}
		if uint64(len(b)-h) < n {
			need = h + int(n)
			break
		}
		p := b[h : h+int(n)]
		b = b[h+int(n):]
		switch op {
		case 0x1: // text
			if err := r.message(p, now); err != nil {
				return err
			}
		case 0x8: // close
			if len(p) >= 2 {
				return fmt.Errorf("closed by the agent: %d %s", binary.BigEndian.Uint16(p), p[2:])
			}
			return errors.New("closed by the agent")
		}
	}
	if need > cap(r.buf) {
		grown := make([]byte, len(b), need)
		copy(grown, b)
		r.buf = grown
		return nil
	}
	r.buf = r.buf[:copy(r.buf, b)]
	return nil
}

// message counts the records of a text frame's payload p; on a sampled
// subscriber it reads each one's seq and time for the latency.
func (r *frameReader) message(p []byte, now time.Time) error {
	if r.sample {
		for line := range bytes.SplitSeq(p, []byte{'\n'}) {
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
	lines := 0
	if r.batch {
		lines = bytes.Count(p, []byte{'\n'})
	}
	if lines == 0 && bytes.Contains(p[:min(len(p), 160)], progressKind) {
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
