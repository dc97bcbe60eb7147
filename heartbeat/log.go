package heartbeat

import (
	"context"
	"io"
	"log/slog"

	"agent/internal/ratelog"
)

// slogWriter routes memberlist's log lines to slog at a level read from
// their [LEVEL] prefix. Its warnings and errors that blame a source are
// limited to one line per source per second (badPacketEvery), with the
// count of those held back; those about malformed input are counted by
// bad.
type slogWriter struct {
	log   *slog.Logger
	limit *ratelog.Limiter
	bad   func()
}

var _ io.Writer = (*slogWriter)(nil)

func (w *slogWriter) Write(p []byte) (int, error) {
	line := string(p)
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
		line = line[:len(line)-1]
	}
	level := slog.LevelInfo
	switch {
	case len(line) > 7 && line[:7] == "[DEBUG]":
		level = slog.LevelDebug
	case len(line) > 6 && line[:6] == "[WARN]":
		level = slog.LevelWarn
	case len(line) > 5 && line[:5] == "[ERR]":
		level = slog.LevelError
	}
	attrs := []any{"source", "memberlist"}
	if src, ok := packetSource(line); ok && level >= slog.LevelWarn && w.limit != nil {
		if malformed(line) && w.bad != nil {
			w.bad()
		}
		allow, held := w.limit.Allow(src)
		if !allow {
			return len(p), nil
		}
		attrs = append(attrs, "peer", src)
		if held > 0 {
			attrs = append(attrs, "held_back", held)
		}
	}
	w.log.Log(context.Background(), level, line, attrs...)
	return len(p), nil
}
