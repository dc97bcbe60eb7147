package heartbeat

import (
	"context"
	"io"
	"log/slog"
)

// slogWriter routes memberlist's log lines to slog at a level read from
// their [LEVEL] prefix.
type slogWriter struct{ log *slog.Logger }

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
	w.log.Log(context.Background(), level, line, "source", "memberlist")
	return len(p), nil
}
