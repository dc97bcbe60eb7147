package stream

import (
	"bufio"
	"net"
	"net/http"
)

// writeBufferSize is the write buffer of a subscriber's connection. The
// websocket library writes a frame's header and payload through it and
// flushes once per message, so a frame that fits costs one write(2);
// net/http's own 4 KiB buffer split a typical batch frame in two.
const writeBufferSize = 32 << 10

// largeWriteBuffer wraps a ResponseWriter so that the connection it hijacks
// comes with a writeBufferSize write buffer.
type largeWriteBuffer struct {
	http.ResponseWriter
}

// Unwrap gives http.ResponseController the writer underneath.
func (w largeWriteBuffer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack takes the connection over like the underlying writer does, and
// swaps its write buffer for a larger one (after flushing the old, which
// is empty once net/http has sent the 101 response).
func (w largeWriteBuffer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	brw.Writer = bufio.NewWriterSize(conn, writeBufferSize)
	return conn, brw, nil
}
