package ratelog

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestAllowOnePerKeyPerInterval(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(time.Second, 0, c.now)
	if ok, held := l.Allow("a"); !ok || held != 0 {
		t.Fatalf("first: %v %d", ok, held)
	}
	for range 99 {
		if ok, _ := l.Allow("a"); ok {
			t.Fatal("a second line within the interval was allowed")
		}
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key was held back")
	}
	c.t = c.t.Add(999 * time.Millisecond)
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("allowed before the interval")
	}
	c.t = c.t.Add(time.Millisecond)
	if ok, held := l.Allow("a"); !ok || held != 100 {
		t.Fatalf("after the interval: %v, held %d, want 100", ok, held)
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("allowed twice in the new interval")
	}
}

func TestKeysBounded(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(time.Second, 10, c.now)
	allowed := 0
	for i := range 1000 {
		if ok, _ := l.Allow(fmt.Sprint("src", i)); ok {
			allowed++
		}
	}
	if len(l.keys) > 10 {
		t.Fatalf("%d keys kept, max 10", len(l.keys))
	}
	// 10 keys, the last one the shared entry: 10 lines at most.
	if allowed > 10 {
		t.Fatalf("%d lines allowed from 1000 new sources in one interval, want at most 10", allowed)
	}
	// Idle entries make room again.
	c.t = c.t.Add(2 * time.Second)
	if ok, _ := l.Allow("new"); !ok {
		t.Fatal("a new key was refused after the others went idle")
	}
}
