package heartbeat

import (
	"net"
	"strings"
	"time"

	"agent/internal/ratelog"
)

// badPacketEvery is the period of the malformed-packet log limit: one line
// per source per period, the next one saying how many were held back.
const badPacketEvery = time.Second

// newBadPacketLimiter returns the limiter of memberlist's complaints about
// what a source sent.
func newBadPacketLimiter(now func() time.Time) *ratelog.Limiter {
	return ratelog.New(badPacketEvery, 0, now)
}

// packetSource returns the IP address a memberlist log line blames
// ("... from=10.0.0.7:7946"), without the port, so that one sender cannot
// dodge the limit by changing ports. The checksum complaint names no
// source: it gets a key of its own.
func packetSource(line string) (string, bool) {
	i := strings.LastIndex(line, "from=")
	if i < 0 {
		if strings.Contains(line, "invalid checksum") {
			return "checksum", true
		}
		return "", false
	}
	addr := line[i+len("from="):]
	if j := strings.IndexByte(addr, ' '); j >= 0 {
		addr = addr[:j]
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host, true
	}
	return addr, addr != ""
}

// malformedMarks are the words of memberlist's complaints about a packet
// or stream it could not read: those are counted as bad messages.
var malformedMarks = []string{"decode", "not supported", "missing message type", "invalid msgType",
	"Decrypt", "checksum", "label", "decompress", "truncated", "failed to receive"}

// malformed reports whether a memberlist log line is about input it could
// not read.
func malformed(line string) bool {
	for _, m := range malformedMarks {
		if strings.Contains(line, m) {
			return true
		}
	}
	return false
}
