package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const waitFor = 10 * time.Second

// startWatcher runs a watcher on a fresh root; root/etc exists only when
// mkEtc is set.
func startWatcher(t *testing.T, debounce time.Duration, mkEtc bool) (Paths, *Watcher) {
	t.Helper()
	p := ResolvePaths(t.TempDir(), 1000, "")
	if mkEtc {
		if err := os.MkdirAll(filepath.Dir(p.NodeConf), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w, err := NewWatcher(WatchConfig{Paths: p, Hostname: "host1", Debounce: debounce})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return p, w
}

func next(t *testing.T, w *Watcher) Change {
	t.Helper()
	select {
	case c, ok := <-w.Changes():
		if !ok {
			t.Fatal("changes closed")
		}
		return c
	case <-time.After(waitFor):
		t.Fatal("no change within deadline")
	}
	return Change{}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// renameOver writes content the way editors do: a temp file renamed over.
func renameOver(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherNodeConf(t *testing.T) {
	p, w := startWatcher(t, 20*time.Millisecond, true)
	if init := w.Initial(); init.Node.Source != "" || init.Node.HB.Addr != "127.0.0.1" || init.NodeErr != nil {
		t.Fatalf("initial = %+v", init)
	}

	writeFile(t, p.NodeConf, "[node]\nname = a\n")
	c := next(t, w)
	if c.Path != p.NodeConf || c.Service != "" || c.Err != nil || c.Removed || c.Node.Node.Name != "a" {
		t.Fatalf("write: %+v", c)
	}

	renameOver(t, p.NodeConf, "[node]\nname = b\n")
	if c := next(t, w); c.Err != nil || c.Node.Node.Name != "b" {
		t.Fatalf("rename over: %+v", c)
	}

	// An invalid edit is delivered as an error with file and line.
	renameOver(t, p.NodeConf, "[node]\nname = b\n[hb]\nport = abc\n")
	c = next(t, w)
	var ce *Error
	if !errors.As(c.Err, &ce) || ce.Line != 4 || ce.File != p.NodeConf {
		t.Fatalf("invalid edit: %+v", c)
	}

	// Touching, or rewriting the same content, delivers nothing: the next
	// change is the next real edit.
	now := time.Now().Add(time.Minute)
	if err := os.Chtimes(p.NodeConf, now, now); err != nil {
		t.Fatal(err)
	}
	renameOver(t, p.NodeConf, "[node]\nname = b\n[hb]\nport = abc\n")
	renameOver(t, p.NodeConf, "[node]\nname = c\n")
	if c := next(t, w); c.Err != nil || c.Node.Node.Name != "c" {
		t.Fatalf("after touch: %+v", c)
	}

	// A vanished node.conf is not a config: an error, the running one
	// stays. So is an emptied one.
	if err := os.Remove(p.NodeConf); err != nil {
		t.Fatal(err)
	}
	c = next(t, w)
	if c.Removed || !errors.Is(c.Err, ErrRemoved) || !errors.Is(c.Err, ErrInvalid) || !strings.Contains(c.Err.Error(), p.NodeConf) {
		t.Fatalf("remove: %+v", c)
	}
	renameOver(t, p.NodeConf, "[node]\nname = c\n")
	if c := next(t, w); c.Err != nil || c.Node.Node.Name != "c" {
		t.Fatalf("restored: %+v", c)
	}
	for _, empty := range []string{"", "\n \n"} {
		writeFile(t, p.NodeConf, empty)
		if c := next(t, w); !errors.Is(c.Err, ErrEmpty) || !strings.HasPrefix(c.Err.Error(), p.NodeConf+": ") {
			t.Fatalf("emptied (%q): %+v", empty, c)
		}
	}
}

func TestWatcherServices(t *testing.T) {
	// Neither etc nor etc/svc exist: the watcher watches the root and
	// picks the directories up when they appear.
	p, w := startWatcher(t, 20*time.Millisecond, false)
	if err := os.MkdirAll(p.SvcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	web := p.ServiceFile("web")
	writeFile(t, web, minimalSvc)
	c := next(t, w)
	if c.Path != web || c.Service != "web" || c.Err != nil || c.Svc.Name != "web" {
		t.Fatalf("add: %+v", c)
	}

	// Editor noise is ignored; an invalid edit is an error change.
	writeFile(t, filepath.Join(p.SvcDir, ".web.conf.swp"), "junk")
	writeFile(t, filepath.Join(p.SvcDir, "web.conf~"), "junk")
	renameOver(t, web, minimalSvc+"topology = ring\n")
	c = next(t, w)
	if c.Service != "web" || c.Err == nil || c.Err.Error() != web+`:5: [service] topology: "ring" is not one of failover, flex` {
		t.Fatalf("invalid: %+v", c)
	}

	renameOver(t, web, minimalSvc+"topology = flex\n")
	if c := next(t, w); c.Err != nil || c.Svc.Topology != Flex {
		t.Fatalf("fix: %+v", c)
	}

	if err := os.Remove(web); err != nil {
		t.Fatal(err)
	}
	if c := next(t, w); !c.Removed || c.Service != "web" || c.Err != nil {
		t.Fatalf("remove: %+v", c)
	}

	// The whole directory goes and comes back.
	writeFile(t, p.ServiceFile("db"), minimalSvc)
	if c := next(t, w); c.Service != "db" || c.Err != nil {
		t.Fatalf("db: %+v", c)
	}
	if err := os.RemoveAll(p.SvcDir); err != nil {
		t.Fatal(err)
	}
	if c := next(t, w); !c.Removed || c.Service != "db" {
		t.Fatalf("dir removed: %+v", c)
	}
	if err := os.MkdirAll(p.SvcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.ServiceFile("db"), minimalSvc)
	if c := next(t, w); c.Service != "db" || c.Err != nil || c.Removed {
		t.Fatalf("dir back: %+v", c)
	}
}

func TestWatcherInitial(t *testing.T) {
	p := ResolvePaths(t.TempDir(), 0, "")
	if err := os.MkdirAll(p.SvcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.NodeConf, "[node]\nname = n9\n")
	writeFile(t, p.ServiceFile("web"), minimalSvc)
	writeFile(t, p.ServiceFile("bad"), "[service]\n")
	w, err := NewWatcher(WatchConfig{Paths: p, Hostname: "h", Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	init := w.Initial()
	if init.Node.Node.Name != "n9" || init.NodeErr != nil || len(init.Services) != 1 || len(init.ServiceErrs) != 1 || init.ServiceErrs[p.ServiceFile("bad")] == nil {
		t.Fatalf("initial = %+v", init)
	}
	// Unchanged files are not reported again: the first change is the edit.
	renameOver(t, p.ServiceFile("bad"), minimalSvc)
	if c := next(t, w); c.Service != "bad" || c.Err != nil {
		t.Fatalf("got %+v", c)
	}
}

func TestWatcherDebounce(t *testing.T) {
	// The burst below takes microseconds; a long debounce makes it one.
	p, w := startWatcher(t, 500*time.Millisecond, true)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		renameOver(t, p.NodeConf, "[node]\nname = "+name+"\n")
	}
	if c := next(t, w); c.Err != nil || c.Node.Node.Name != "e" {
		t.Fatalf("burst: %+v", c)
	}
	// No intermediate state follows: the next change is the next edit.
	renameOver(t, p.NodeConf, "[node]\nname = f\n")
	if c := next(t, w); c.Node.Node.Name != "f" {
		t.Fatalf("after burst: %+v", c)
	}
}

func TestWatcherCloseStopsGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	p := ResolvePaths(t.TempDir(), 0, "")
	w, err := NewWatcher(WatchConfig{Paths: p, Hostname: "h", Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := <-w.Changes(); ok {
		t.Fatal("changes not closed")
	}
	deadline := time.Now().Add(waitFor)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d, baseline %d", runtime.NumGoroutine(), base)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}
