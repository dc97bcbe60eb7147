package web_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Environment of the browser tests.
const (
	// envChromium names the browser binary; default: chromium,
	// chromium-browser, google-chrome or headless-shell on PATH.
	envChromium = "AGENT_CHROMIUM"
	// envRequire=1 turns a missing browser into a failure.
	envRequire = "AGENT_REQUIRE_FAULT_TESTS"
	// envArtifacts is where screenshots go; default t.TempDir().
	envArtifacts = "AGENT_ARTIFACTS"
	// envWebURL points TestBrowserRealAgent at a running agent's page.
	envWebURL = "AGENT_WEB_URL"
)

// browserWait bounds each wait for the page.
const browserWait = 20 * time.Second

// chromiumPath finds the browser or skips the test (fails it with
// AGENT_REQUIRE_FAULT_TESTS=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "BROWSER TEST NOT RUN: no chromium on PATH (apt-get install -y chromium, or set " + envChromium + ")"
	if os.Getenv(envRequire) == "1" {
		t.Fatal(msg + "; " + envRequire + "=1 requires it")
	}
	t.Skip(msg)
	return ""
}

// browser is one headless chromium tab and what its console said.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab; no deadline (it would end the browser)

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

// openPage starts chromium for the test (newBrowser) and opens url in it.
func openPage(t *testing.T, url string) *browser {
	t.Helper()
	b := newBrowser(t)
	if err := b.do(chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	return b
}

// newBrowser starts chromium for the test; cleanup stops it and waits for
// the console reader.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in containers
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx}
	// Console allocates the browser (the first action on ctx) and subscribes
	// before the page loads, so that no message is missed.
	msgs := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		<-done
	})
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return b
}

// do runs actions with a deadline.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until a JavaScript expression is truthy.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(browserWait))); err != nil {
		b.screenshot("failed")
		b.t.Fatalf("waiting for %s (%s): %v\nconsole:\n%s", what, expr, err, b.console())
	}
}

// console returns what the page logged.
func (b *browser) console() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	for _, m := range b.messages {
		fmt.Fprintf(&sb, "  %s (%s:%d)\n", m, m.URL, m.Line+1)
	}
	return sb.String()
}

// checkConsole fails on exceptions, console errors and CSP violations, but
// for messages containing one of allowed.
func (b *browser) checkConsole(allowed ...string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
next:
	for _, m := range b.messages {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException && !strings.Contains(m.Text, "Content Security Policy") {
			continue
		}
		for _, a := range allowed {
			if strings.Contains(m.Text, a) {
				continue next
			}
		}
		b.t.Errorf("page console: %s (%s:%d)", m, m.URL, m.Line+1)
	}
}

// screenshot saves the page as AGENT_ARTIFACTS/web-TEST-NAME.png (or in a
// temporary directory) and returns the path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	dir := os.Getenv(envArtifacts)
	if dir == "" {
		dir = b.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Errorf("artifacts: %v", err)
		return ""
	}
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			b.t.Errorf("screenshot: %v", err)
		}
		return ""
	}
	safe := strings.NewReplacer("/", "_", " ", "_").Replace(b.t.Name())
	path := filepath.Join(dir, "web-"+safe+"-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot: %v", err)
		return ""
	}
	b.t.Logf("screenshot: %s", path)
	return path
}
