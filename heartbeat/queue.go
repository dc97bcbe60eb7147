package heartbeat

import "sync"

// queue is an unbounded FIFO that never blocks its producers (memberlist
// callbacks must not block); one consumer waits on ready and drains.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	sig    chan struct{}
	closed bool
}

func newQueue[T any]() *queue[T] { return &queue[T]{sig: make(chan struct{}, 1)} }

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.sig <- struct{}{}:
	default:
	}
}

func (q *queue[T]) ready() <-chan struct{} { return q.sig }

func (q *queue[T]) drain() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.items = nil
	q.mu.Unlock()
}
