package heartbeat

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPacketSource(t *testing.T) {
	for line, want := range map[string]string{
		"[ERR] memberlist: msg type (77) not supported from=127.0.0.9:41000":                          "127.0.0.9",
		"[ERR] memberlist: Failed to decode ping request: EOF from=[::1]:5":                           "::1",
		"[ERR] memberlist: Received invalid msgType (9) from=10.1.2.3:999 (packet handler)":           "10.1.2.3",
		"[WARN] memberlist: Got invalid checksum for UDP packet: 1, 2":                                "checksum",
		"[ERR] memberlist: Failed to receive user message: read: EOF from=<unknown address>":          "<unknown",
		"[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed, network may be": "",
	} {
		got, ok := packetSource(line)
		if got != want || ok != (want != "") {
			t.Errorf("packetSource(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
}

// TestBadPacketLogLimited: a flood of garbage from two sources logs one
// line per source per second, then one line with the count held back; all
// of it is counted.
func TestBadPacketLogLimited(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	var bad atomic.Int64
	w := &slogWriter{
		log:   slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		limit: newBadPacketLimiter(func() time.Time { return now }),
		bad:   func() { bad.Add(1) },
	}
	for i := range 3300 {
		src := 1 + i%2
		fmt.Fprintf(w, "[ERR] memberlist: msg type (%d) not supported from=127.0.0.%d:%d\n", i%250, src, 40000+i)
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines for 3300 packets from 2 sources in one second, want 2:\n%s", n, buf.String())
	}
	if bad.Load() != 3300 {
		t.Fatalf("counted %d bad packets, want 3300", bad.Load())
	}
	now = now.Add(time.Second)
	fmt.Fprintf(w, "[ERR] memberlist: Failed to decode ping request: EOF from=127.0.0.1:1\n")
	if !strings.Contains(buf.String(), "held_back=1649") {
		t.Fatalf("no count of the lines held back:\n%s", buf.String())
	}
	// Lines that blame no source are not limited.
	buf.Reset()
	for range 3 {
		fmt.Fprintf(w, "[WARN] memberlist: Binding to public address without encryption!\n")
	}
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Fatalf("%d of 3 unrelated warnings logged", n)
	}
}
