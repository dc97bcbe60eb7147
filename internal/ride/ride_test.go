package ride

import (
	"runtime"
	"testing"
	"time"
)

// received reports whether a time is on c within wait.
func received(c <-chan time.Time, wait time.Duration) bool {
	select {
	case <-c:
		return true
	case <-time.After(wait):
		return false
	}
}

func TestDeadlineWithoutRing(t *testing.T) {
	b := New()
	tm := b.NewTimer()
	tm.Reset(5*time.Millisecond, 3*time.Millisecond)
	firedOnce(t, b, tm, 0, 1)
}

// firedOnce checks that tm fires, that b counted the fire as wanted, and
// that the fire disarmed the timer.
func firedOnce(t *testing.T, b *Bell, tm *Timer, wantRides, wantDeadlines uint64) {
	t.Helper()
	if !received(tm.C, 5*time.Second) {
		t.Fatal("the timer did not fire")
	}
	if rides, deadlines := b.Stats(); rides != wantRides || deadlines != wantDeadlines {
		t.Fatalf("stats = %d rides, %d deadlines, want %d, %d", rides, deadlines, wantRides, wantDeadlines)
	}
	b.Ring()
	if received(tm.C, 20*time.Millisecond) {
		t.Fatal("a second fire from one Reset")
	}
}

func TestRingBeforeWindowDoesNotFire(t *testing.T) {
	b := New()
	tm := b.NewTimer()
	defer tm.Stop()
	tm.Reset(time.Hour, time.Minute)
	b.Ring()
	if received(tm.C, 10*time.Millisecond) {
		t.Fatal("a ring before the window fired the timer")
	}
}

func TestRingInWindowFires(t *testing.T) {
	b := New()
	tm := b.NewTimer()
	tm.Reset(time.Hour, time.Hour) // the window is open at once
	b.Ring()
	firedOnce(t, b, tm, 1, 0)
}

func TestRingWaitsForTheWindow(t *testing.T) {
	b := New()
	tm := b.NewTimer()
	defer tm.Stop()
	// The window opens 20 ms from now; ring until it fires, bounded.
	tm.Reset(time.Hour, time.Hour-20*time.Millisecond)
	start := time.Now()
	for i := 0; i < 5000; i++ {
		b.Ring()
		select {
		case <-tm.C:
			if time.Since(start) < 20*time.Millisecond {
				t.Fatalf("fired %v after Reset, before its window", time.Since(start))
			}
			return
		default:
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("never fired")
}

func TestResetDropsStaleFire(t *testing.T) {
	b := New()
	tm := b.NewTimer()
	defer tm.Stop()
	tm.Reset(time.Hour, time.Hour)
	b.Ring() // a time is now waiting on C
	tm.Reset(time.Hour, 0)
	if received(tm.C, 10*time.Millisecond) {
		t.Fatal("a time from before Reset was delivered")
	}
	b.Ring() // no slack: rings do not fire it
	if received(tm.C, 10*time.Millisecond) {
		t.Fatal("a timer with no slack fired on a ring")
	}
}

func TestStop(t *testing.T) {
	b := New()
	tm := b.NewTimer()
	tm.Reset(5*time.Millisecond, 5*time.Millisecond)
	tm.Stop()
	b.Ring()
	if received(tm.C, 30*time.Millisecond) {
		t.Fatal("a stopped timer fired")
	}
	if b.open.Load() != New().open.Load() {
		t.Fatal("a stopped timer keeps the bell's window open")
	}
}

func TestNilBell(t *testing.T) {
	var b *Bell
	b.Ring()
	tm := b.NewTimer()
	tm.Reset(2*time.Millisecond, time.Millisecond)
	if !received(tm.C, 5*time.Second) {
		t.Fatal("a timer of a nil bell did not fire at its deadline")
	}
	tm.Reset(time.Hour, time.Hour)
	tm.Stop()
}

func TestEarliestWindow(t *testing.T) {
	b := New()
	late, early := b.NewTimer(), b.NewTimer()
	defer late.Stop()
	defer early.Stop()
	late.Reset(time.Hour, time.Minute)
	early.Reset(time.Hour, time.Hour)
	b.Ring()
	if !received(early.C, 5*time.Second) {
		t.Fatal("the timer whose window is open did not fire")
	}
	if received(late.C, 10*time.Millisecond) {
		t.Fatal("the timer whose window is closed fired")
	}
}

// TestChurnLeavesNoGoroutine resets and rings many timers from several
// goroutines: nothing stays behind once they are stopped.
func TestChurnLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	b := New()
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			tm := b.NewTimer()
			for i := 0; i < 500; i++ {
				tm.Reset(time.Duration(i%3)*time.Millisecond, time.Millisecond)
				b.Ring()
			}
			tm.Stop()
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	for i := 0; i < 200 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after the churn, %d before", n, before)
	}
}

// TestNextKeepsThePeriod: rings that fire a timer early do not make it
// run more often on average.
func TestNextKeepsThePeriod(t *testing.T) {
	b := New()
	tm := b.NewTimer()
	defer tm.Stop()
	const period, slack = 20 * time.Millisecond, 10 * time.Millisecond
	start := time.Now()
	tm.Reset(period, slack)
	fires := 0
	for fires < 10 {
		b.Ring() // as often as a busy process would
		select {
		case <-tm.C:
			fires++
			tm.Next(period, slack)
		default:
			time.Sleep(time.Millisecond)
		}
	}
	// Ten fires at the earliest moment of each window would take 10×20
	// ms less the first window's slack.
	if el := time.Since(start); el < 10*period-slack {
		t.Fatalf("10 fires in %v: the period shrank to the window's opening", el)
	}
}
