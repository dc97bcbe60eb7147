package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherChmod: a loose node.conf is refused, fixing its mode applies
// it again without an edit, and a loose directory above is seen on Rescan.
func TestWatcherChmod(t *testing.T) {
	p, w := startWatcher(t, 20*time.Millisecond, true)
	writeFile(t, p.NodeConf, "[node]\nname = a\n")
	if c := next(t, w); c.Err != nil || c.Node.Node.Name != "a" {
		t.Fatalf("write: %+v", c)
	}

	chmod(t, p.NodeConf, 0o664)
	c := next(t, w)
	if !errors.Is(c.Err, ErrInsecure) || !strings.Contains(c.Err.Error(), "writable by group (mode 0664)") {
		t.Fatalf("chmod 664: %+v", c)
	}
	// Edits while it is loose are refused too.
	writeFile(t, p.NodeConf, "[node]\nname = b\n")
	if c := next(t, w); !errors.Is(c.Err, ErrInsecure) {
		t.Fatalf("edit while loose: %+v", c)
	}
	chmod(t, p.NodeConf, 0o600)
	if c := next(t, w); c.Err != nil || c.Node.Node.Name != "b" {
		t.Fatalf("chmod 600: %+v", c)
	}

	// A secret makes a readable file loose.
	writeFile(t, p.NodeConf, "[node]\nname = b\n[cluster]\nsecret = "+strings.Repeat("A", 22)+"==\n")
	chmod(t, p.NodeConf, 0o644)
	if c := next(t, w); !errors.Is(c.Err, ErrInsecure) || !strings.Contains(c.Err.Error(), "readable by group or others") {
		t.Fatalf("secret in a 0644 file: %+v", c)
	}
	chmod(t, p.NodeConf, 0o600)
	if c := next(t, w); c.Err != nil || len(c.Node.Cluster.Secret) != 16 {
		t.Fatalf("secret in a 0600 file: %+v", c)
	}

	// The etc directory is watched: its chmod is seen at once.
	etc := filepath.Dir(p.NodeConf)
	chmod(t, etc, 0o777)
	if c := next(t, w); !errors.Is(c.Err, ErrInsecure) || !strings.Contains(c.Err.Error(), "directory "+etc) {
		t.Fatalf("etc 0777: %+v", c)
	}
	chmod(t, etc, 0o755)
	if c := next(t, w); c.Err != nil {
		t.Fatalf("etc 0755: %+v", c)
	}

	// The root above is not watched: Rescan sees it.
	chmod(t, p.Root, 0o777)
	defer chmod(t, p.Root, 0o755)
	n, err := w.Rescan(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Rescan = %d, %v; want 1 change", n, err)
	}
	if c := next(t, w); !errors.Is(c.Err, ErrInsecure) || !strings.Contains(c.Err.Error(), "directory "+p.Root) {
		t.Fatalf("root 0777: %+v", c)
	}
	chmod(t, p.Root, 0o755)
	if n, err := w.Rescan(context.Background()); err != nil || n != 1 {
		t.Fatalf("Rescan = %d, %v; want 1 change", n, err)
	}
	if c := next(t, w); c.Err != nil {
		t.Fatalf("root 0755: %+v", c)
	}
	// Nothing changed: nothing reported.
	if n, err := w.Rescan(context.Background()); err != nil || n != 0 {
		t.Fatalf("idle Rescan = %d, %v; want 0", n, err)
	}
}

func TestWatcherRecheck(t *testing.T) {
	p := ResolvePaths(t.TempDir(), 0, "")
	if err := os.MkdirAll(p.SvcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.NodeConf, "[node]\nname = a\n")
	w, err := NewWatcher(WatchConfig{Paths: p, Hostname: "h", Debounce: time.Millisecond, Recheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	chmod(t, p.Root, 0o777)
	defer chmod(t, p.Root, 0o755)
	if c := next(t, w); !errors.Is(c.Err, ErrInsecure) {
		t.Fatalf("recheck: %+v", c)
	}
}

func TestWatcherServicePerms(t *testing.T) {
	p, w := startWatcher(t, 20*time.Millisecond, true)
	if err := os.MkdirAll(p.SvcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	web := p.ServiceFile("web")
	writeFile(t, web, minimalSvc)
	if c := next(t, w); c.Err != nil {
		t.Fatalf("add: %+v", c)
	}
	chmod(t, web, 0o666)
	if c := next(t, w); c.Service != "web" || c.Removed || !errors.Is(c.Err, ErrInsecure) {
		t.Fatalf("0666: %+v", c)
	}
	chmod(t, web, 0o644)
	if c := next(t, w); c.Err != nil || c.Svc.Name != "web" {
		t.Fatalf("0644: %+v", c)
	}

	// A program named by absolute path is checked like the file.
	prog := filepath.Join(p.Root, "check.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	chmod(t, prog, 0o777)
	renameOver(t, web, "[service]\ncheck = "+prog+" --quick\nstart = true\nstop = true\n")
	c := next(t, w)
	var ce *Error
	if !errors.Is(c.Err, ErrInsecure) || !errors.As(c.Err, &ce) || ce.Key != "check" || ce.Line != 2 || !strings.Contains(c.Err.Error(), prog) {
		t.Fatalf("loose program: %+v", c)
	}
	// Its mode is not watched: the next Rescan (SIGHUP, or every minute)
	// sees the fix.
	chmod(t, prog, 0o755)
	if _, err := w.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := next(t, w); c.Err != nil || c.Svc.Check[0] != prog {
		t.Fatalf("program fixed: %+v", c)
	}

	// Emptied: refused, the service stays; deleted: removed.
	writeFile(t, web, "")
	if c := next(t, w); !errors.Is(c.Err, ErrEmpty) || c.Removed {
		t.Fatalf("emptied: %+v", c)
	}
	if err := os.Remove(web); err != nil {
		t.Fatal(err)
	}
	if c := next(t, w); !c.Removed || c.Err != nil {
		t.Fatalf("deleted: %+v", c)
	}
}

// TestWatcherSymlink: edits of the target of a symlinked config file are
// seen, as are changes of the link itself.
func TestWatcherSymlink(t *testing.T) {
	p, w := startWatcher(t, 20*time.Millisecond, true)
	if err := os.MkdirAll(p.SvcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(shared, "node.conf")
	writeFile(t, target, "[node]\nname = a\n")
	if err := os.Symlink(target, p.NodeConf); err != nil {
		t.Fatal(err)
	}
	if c := next(t, w); c.Err != nil || c.Node.Node.Name != "a" {
		t.Fatalf("link: %+v", c)
	}
	writeFile(t, target, "[node]\nname = b\n")
	if c := next(t, w); c.Err != nil || c.Node.Node.Name != "b" {
		t.Fatalf("target written: %+v", c)
	}
	renameOver(t, target, "[node]\nname = c\n")
	if c := next(t, w); c.Err != nil || c.Node.Node.Name != "c" {
		t.Fatalf("target renamed over: %+v", c)
	}
	chmod(t, target, 0o666)
	if c := next(t, w); !errors.Is(c.Err, ErrInsecure) || !strings.Contains(c.Err.Error(), "its target "+target) {
		t.Fatalf("target loose: %+v", c)
	}
	chmod(t, target, 0o600)
	if c := next(t, w); c.Err != nil {
		t.Fatalf("target fixed: %+v", c)
	}

	svcTarget := filepath.Join(shared, "web.conf")
	writeFile(t, svcTarget, minimalSvc)
	if err := os.Symlink(svcTarget, p.ServiceFile("web")); err != nil {
		t.Fatal(err)
	}
	if c := next(t, w); c.Service != "web" || c.Err != nil {
		t.Fatalf("svc link: %+v", c)
	}
	renameOver(t, svcTarget, minimalSvc+"topology = flex\n")
	if c := next(t, w); c.Service != "web" || c.Err != nil || c.Svc.Topology != Flex {
		t.Fatalf("svc target edited: %+v", c)
	}
}
