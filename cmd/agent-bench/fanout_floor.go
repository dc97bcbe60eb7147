package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"agent/events"
)

// The floor row runs the 10,000-subscriber case without the agent: the
// same child process and frames of the same size, served by the least a
// Go program can do, one goroutine that goes round the sockets and writes
// each what came since its last turn in one non-blocking write(2). What
// that costs on a machine is the floor under the agent's own row: when
// the floor misses a latency target, no fan-out design that writes each
// subscriber's socket does better there.

// floorRecordSize is the size of each record line, about that of a
// label-change patch record as the agent frames it.
const floorRecordSize = 300

// floorServer accepts websocket handshakes and writes the published
// frames to every connection.
type floorServer struct {
	ln net.Listener

	mu    sync.Mutex
	data  []byte // every frame published, one after the other
	conns []*floorConn
	wake  chan struct{}

	stop chan struct{}
	wg   sync.WaitGroup
}

// floorConn is one subscriber: its socket and how much of data it got.
type floorConn struct {
	c    net.Conn
	fd   int
	sent int
	dead bool
}

// floorTarget serves the floor case on a loopback port.
func floorTarget() (*fanoutTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &floorServer{ln: ln, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	s.wg.Go(s.accept)
	s.wg.Go(s.write)
	return &fanoutTarget{
		url:     "ws://" + ln.Addr().String() + "/v1/events",
		publish: s.publish,
		close: func() {
			close(s.stop)
			_ = ln.Close()
			s.wg.Wait()
			for _, c := range s.conns {
				_ = c.c.Close()
			}
		},
	}, nil
}

// accept takes each connection through the websocket handshake and gives
// it to the writer.
func (s *floorServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		fc, err := floorHandshake(c)
		if err != nil {
			_ = c.Close()
			continue
		}
		s.mu.Lock()
		fc.sent = len(s.data) // from the next record on, as a follower
		s.conns = append(s.conns, fc)
		s.mu.Unlock()
	}
}

// floorHandshake answers the subscriber's upgrade request.
func floorHandshake(c net.Conn) (*floorConn, error) {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return nil, err
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		return nil, errors.New("no Sec-WebSocket-Key")
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC11B85"))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"
	if _, err := c.Write([]byte(resp)); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	fc := &floorConn{c: c, fd: -1}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return nil, err
	}
	if err := rc.Control(func(fd uintptr) { fc.fd = int(fd) }); err != nil {
		return nil, err
	}
	return fc, nil
}

// publish appends record i's frame (one websocket text message).
func (s *floorServer) publish(i int) {
	line := fmt.Sprintf(`{"seq":%d,"time":"%s","kind":"patch","node":"n1","data":[{"op":"replace","path":"/monitor/nodes/n1/labels/bench","value":"%d"}],"pad":"`,
		i+1, time.Now().UTC().Format(events.TimeFormat), i)
	line += strings.Repeat("x", max(0, floorRecordSize-len(line)-2)) + `"}`
	var hdr []byte
	if len(line) < 126 {
		hdr = []byte{0x81, byte(len(line))}
	} else {
		hdr = []byte{0x81, 126, byte(len(line) >> 8), byte(len(line))}
	}
	s.mu.Lock()
	s.data = append(s.data, hdr...)
	s.data = append(s.data, line...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// write goes round the connections while any is behind, each turn one
// non-blocking write of what it lacks up to the newest record, and
// otherwise waits for a record.
func (s *floorServer) write() {
	for {
		s.mu.Lock()
		conns := s.conns
		s.mu.Unlock()
		behind := false
		for _, c := range conns {
			s.mu.Lock()
			data := s.data
			s.mu.Unlock()
			if c.dead || c.sent >= len(data) {
				continue
			}
			n, err := syscall.Write(c.fd, data[c.sent:])
			if n > 0 {
				c.sent += n
			}
			if err != nil && !errors.Is(err, syscall.EAGAIN) {
				c.dead = true
				continue
			}
			behind = behind || c.sent < len(data)
		}
		s.mu.Lock()
		for _, c := range s.conns {
			behind = behind || (!c.dead && c.sent < len(s.data))
		}
		s.mu.Unlock()
		if behind {
			continue
		}
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
	}
}
