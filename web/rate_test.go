package web_test

import (
	"fmt"
	"testing"
	"time"
)

// TestBrowserEventRate measures how the page keeps up with a busy stream:
// a burst (as many records as the fake can send) and a paced 1000
// events/s with a patch every 10 events. It logs figures and asserts only
// that the page ends at the last seq with a bounded log; wall-clock figures
// are not asserted (they depend on the machine).
func TestBrowserEventRate(t *testing.T) {
	f := newFakeAgent(t, threeNodes(), "")
	b := openPage(t, f.srv.URL+"/")
	b.waitFor("connected", jsLive)
	// Longest gap between animation frames, a measure of responsiveness.
	eval[bool](b, `(() => { window.maxFrame = 0; let last = performance.now();
		const tick = (now) => { window.maxFrame = Math.max(window.maxFrame, now - last); last = now; requestAnimationFrame(tick); };
		requestAnimationFrame(tick); return true; })()`)

	const burst = 20000
	start := time.Now()
	for i := range burst {
		if i%10 == 0 {
			f.patch("n1", fmt.Sprintf(`[{"op":"replace","path":"/monitor/nodes/n1/gen","value":%d}]`, 100+i))
			continue
		}
		f.event("n1", map[string]any{"id": "instance_status_change", "reason": "check", "svcname": "web", "i": i})
	}
	want := 10 + burst
	b.waitFor("burst applied", fmt.Sprintf(`agentUI.seq === %d`, want))
	burstTime := time.Since(start)
	maxFrame := eval[float64](b, `window.maxFrame`)
	t.Logf("burst: %d records applied in %v (%.0f records/s), longest frame %.0f ms", burst, burstTime.Round(time.Millisecond), float64(burst)/burstTime.Seconds(), maxFrame)

	eval[bool](b, `(window.maxFrame = 0, true)`)
	const rate, secs = 1000, 3
	start = time.Now()
	var maxLag int
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	for sent < rate*secs {
		<-tick.C
		due := int(time.Since(start).Seconds() * rate)
		for ; sent < due && sent < rate*secs; sent++ {
			if sent%10 == 0 {
				f.patch("n2", fmt.Sprintf(`[{"op":"replace","path":"/monitor/nodes/n2/gen","value":%d}]`, 100+sent))
				continue
			}
			f.event("n2", map[string]any{"id": "instance_status_change", "reason": "check", "i": sent})
		}
		if sent%500 < 10 {
			if lag := want + sent - eval[int](b, jsSeq); lag > maxLag {
				maxLag = lag
			}
		}
	}
	want += rate * secs
	b.waitFor("paced records applied", fmt.Sprintf(`agentUI.seq === %d`, want))
	t.Logf("paced %d records/s for %d s: done %v after the last was sent, max lag seen %d records, longest frame %.0f ms",
		rate, secs, time.Since(start)-secs*time.Second, maxLag, eval[float64](b, `window.maxFrame`))
	if n := eval[int](b, `document.querySelectorAll('#log tbody tr').length`); n > 500 {
		t.Errorf("%d log rows, want at most 500", n)
	}
	if n := eval[int](b, `agentUI.log.length`); n > 4000 {
		t.Errorf("%d records kept, want at most 4000", n)
	}
	b.screenshot("rate")
	b.checkConsole()
}
