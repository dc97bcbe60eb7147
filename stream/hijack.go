package stream

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// batchWriteBufferSize is the write buffer of a batch subscriber that
// writes its own frames through the websocket library (one with limit=).
// The library writes a frame's header and payload through it and flushes
// once per message, so a frame that fits costs one write(2); net/http's
// own 4 KiB buffer split a typical batch frame in two. Other subscribers
// write their frames whole, straight to the connection, and keep net/http's
// buffer for the library's small frames (progress, close, pong).
const batchWriteBufferSize = 32 << 10

// hijacker wraps a ResponseWriter so that the connection it hijacks writes
// through a frameConn, with a larger write buffer when bufSize says so.
type hijacker struct {
	http.ResponseWriter
	bufSize int        // 0: keep net/http's buffer
	fc      *frameConn // set by Hijack
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *hijacker) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack takes the connection over like the underlying writer does, and
// points its write buffer (flushed first: it is empty once net/http has
// sent the 101 response) at a frameConn.
func (w *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	w.fc = newFrameConn(conn)
	if w.bufSize > 0 {
		brw.Writer = bufio.NewWriterSize(w.fc, w.bufSize)
	} else {
		brw.Writer.Reset(w.fc)
	}
	return conn, brw, nil
}

// frameConn is a subscriber's connection. Everything written to it goes
// through it: the websocket library's frames (through its buffer, flushed
// once per frame) and the frames the stream encodes itself, written whole.
// That is what lets tryWrite write without blocking and keep the rest of a
// cut write to be sent before anything else, so that frames never
// interleave.
type frameConn struct {
	net.Conn
	raw syscall.RawConn // nil: the connection cannot be written without blocking (TLS)

	mu   sync.Mutex
	rest []byte // the end of a write that tryWrite could not finish
}

func newFrameConn(c net.Conn) *frameConn {
	fc := &frameConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			fc.raw = raw
		}
	}
	return fc
}

// canTry says whether tryWrite can work on this connection.
func (c *frameConn) canTry() bool { return c.raw != nil }

// Write writes the rest of a cut write, if any, then p, blocking.
func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rest) > 0 {
		if _, err := c.Conn.Write(c.rest); err != nil {
			return 0, err
		}
		c.rest = nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	return c.Conn.Write(p)
}

// pending says whether the rest of a cut write is waiting.
func (c *frameConn) pending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rest) > 0
}

// What tryWrite did.
type tryResult int

const (
	wroteNone tryResult = iota // nothing: the connection is busy, full or broken
	wroteSome                  // part; the rest is kept for the next Write
	wroteAll
)

// tryWrite writes p without blocking: with one write(2) on the socket, or
// not at all when another write holds the connection or a rest is waiting.
// What the socket does not take is kept, and the next Write sends it first.
// A broken connection takes nothing; the next Write reports the error.
func (c *frameConn) tryWrite(p []byte) tryResult {
	if c.raw == nil || !c.mu.TryLock() {
		return wroteNone
	}
	defer c.mu.Unlock()
	if len(c.rest) > 0 {
		return wroteNone
	}
	n := 0
	_ = c.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := syscall.Write(int(fd), p[n:])
			if m > 0 {
				n += m
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || m <= 0 {
				break
			}
		}
		return true // never wait for the socket
	})
	switch {
	case n == len(p):
		return wroteAll
	case n > 0:
		c.rest = append([]byte(nil), p[n:]...)
		return wroteSome
	}
	return wroteNone
}
