package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is the quiet time the Watcher waits after the last file
// event before it reads the files.
const DefaultDebounce = 200 * time.Millisecond

// DefaultRecheck is how often the Watcher reads every file again, whatever
// the events: a directory above a config file may have changed owner or
// mode where no watch sees it, and a program a command names is not
// watched at all.
const DefaultRecheck = time.Minute

// Sentinel errors of the Watcher, matched with errors.Is; the *Error that
// wraps them names the file and matches ErrInvalid too.
var (
	// ErrRemoved: node.conf vanished while the agent runs.
	ErrRemoved = errors.New("node.conf was removed; the running config stays (restore it, or restart the agent to run on defaults)")
	// ErrEmpty: a config file holds nothing but whitespace while the agent
	// runs.
	ErrEmpty = errors.New("the file is empty; the running config stays")
)

// Log attribute keys.
const (
	logKeyComponent = "component"
	logKeyPath      = "path"
	logKeyService   = "service"
	logKeyErr       = "err"
)

// Change is one config file whose content, or whose verdict under the
// permission rules, changed.
type Change struct {
	// Path is the file.
	Path string
	// Service is the service name, or empty when Path is node.conf.
	Service string
	// Removed reports that a service file is gone: the service goes with
	// it. A vanished node.conf is not a removal but an error (ErrRemoved):
	// the running config stays.
	Removed bool
	// Node is the new node config, when Service is empty and Err is nil.
	Node Node
	// Svc is the new service config, when Service is set, Err is nil and
	// Removed is false.
	Svc Service
	// Err is why the file was refused: a *Error for a parse error, an
	// empty file (ErrEmpty) or a vanished node.conf (ErrRemoved), a
	// *PermError (or a *Error wrapping one, for a program) when the file
	// or a program it names fails the permission rules. The running
	// config should stay.
	Err error
}

// WatchConfig configures a Watcher.
type WatchConfig struct {
	// Paths locate node.conf and the service directory.
	Paths Paths
	// Hostname gives node.conf defaults.
	Hostname string
	// Debounce is the quiet time after the last event before the files
	// are read; <= 0 means DefaultDebounce.
	Debounce time.Duration
	// Recheck is the period of a full re-read, permission checks
	// included; 0 means DefaultRecheck, < 0 none.
	Recheck time.Duration
	// Logger receives one line per change; nil discards.
	Logger *slog.Logger
}

// Snapshot is the configuration the Watcher started from; changes are
// relative to it. A missing node.conf gives DefaultNode; an empty one
// parses as defaults too: only while the agent runs is it refused.
type Snapshot struct {
	// Node is node.conf, or DefaultNode when missing or invalid.
	Node Node
	// NodeErr is why node.conf was refused, if it was.
	NodeErr error
	// Services are the valid services by name.
	Services map[string]Service
	// ServiceErrs are the refused service files, by path.
	ServiceErrs map[string]error
}

// Watcher watches node.conf and the service directory and delivers a
// Change for every file whose content, or verdict under the permission
// rules, changed. It watches directories, not files, so that editors that
// write a new file and rename it over the old one are seen, and a chmod
// or chown of a file or of its directory is seen too; it watches the
// nearest existing parent of a directory that does not exist yet, and the
// directory of the target of a symlinked config file. Every Recheck, and
// on Rescan, it reads everything again.
type Watcher struct {
	paths    Paths
	hostname string
	debounce time.Duration
	recheck  time.Duration
	logger   *slog.Logger
	fsw      *fsnotify.Watcher
	changes  chan Change
	rescan   chan chan int
	initial  Snapshot
	cancel   context.CancelFunc
	done     chan struct{}
	close    sync.Once
	closeErr error

	// Owned by the run goroutine after NewWatcher returns:
	// seen maps each known file to the state last reported (content hash
	// and verdict); running says the initial snapshot is taken; links maps
	// the target of each symlinked config file to the link; extra are the
	// directories watched for those targets.
	seen    map[string]string
	running bool
	links   map[string]string
	extra   map[string]bool

	// delivered counts the changes sent on the channel.
	delivered atomic.Uint64
}

// NewWatcher starts watching cfg.Paths.NodeConf and cfg.Paths.SvcDir and
// reads them once (Initial). Call Close to stop it.
func NewWatcher(cfg WatchConfig) (*Watcher, error) {
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Recheck == 0 {
		cfg.Recheck = DefaultRecheck
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("config watcher: %w", err)
	}
	w := &Watcher{
		paths:    cfg.Paths,
		hostname: cfg.Hostname,
		debounce: cfg.Debounce,
		recheck:  cfg.Recheck,
		logger:   cfg.Logger.With(logKeyComponent, "config"),
		fsw:      fsw,
		changes:  make(chan Change, 16),
		rescan:   make(chan chan int),
		done:     make(chan struct{}),
		seen:     map[string]string{},
		links:    map[string]string{},
		extra:    map[string]bool{},
	}
	// Watch first, then read: an edit made in between is seen twice at
	// worst, never missed.
	if err := w.syncWatches(); err != nil {
		_ = fsw.Close()
		return nil, err
	}
	w.initial = w.snapshot()
	w.running = true
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx)
	return w, nil
}

// Initial returns the configuration read when the watcher started.
func (w *Watcher) Initial() Snapshot { return w.initial }

// Changes returns the channel of changes. It is closed by Close.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Delivered counts the changes sent on the Changes channel so far: a
// reader that counts those it took knows when it has caught up.
func (w *Watcher) Delivered() uint64 { return w.delivered.Load() }

// Rescan reads every file again now, permission checks of the
// directories above and of the programs included (SIGHUP), and returns
// once the changes it found are on the Changes channel, with their number.
// It fails when ctx ends or the watcher is closed first. It must not be
// called by the goroutine that reads Changes.
func (w *Watcher) Rescan(ctx context.Context) (int, error) {
	reply := make(chan int, 1)
	select {
	case w.rescan <- reply:
	case <-w.done:
		return 0, errors.New("config watcher closed")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case n := <-reply:
		return n, nil
	case <-w.done:
		return 0, errors.New("config watcher closed")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Close stops the watcher, waits for its goroutine and closes Changes.
// It is safe to call more than once.
func (w *Watcher) Close() error {
	w.close.Do(func() {
		w.cancel()
		<-w.done
		w.closeErr = w.fsw.Close()
		close(w.changes)
	})
	return w.closeErr
}

// run owns the debounce timer and w.seen.
func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	timer := time.NewTimer(w.debounce)
	timer.Stop()
	defer timer.Stop()
	var tick <-chan time.Time
	if w.recheck > 0 {
		t := time.NewTicker(w.recheck)
		defer t.Stop()
		tick = t.C
	}
	// deliver scans and sends the changes; false when ctx ended.
	deliver := func() (int, bool) {
		if err := w.syncWatches(); err != nil {
			w.logger.Warn("watch", logKeyErr, err)
		}
		changes := w.scan()
		for _, c := range changes {
			select {
			case w.changes <- c:
				w.delivered.Add(1)
			case <-ctx.Done():
				return 0, false
			}
		}
		return len(changes), true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case reply := <-w.rescan:
			n, ok := deliver()
			if !ok {
				return
			}
			reply <- n
		case <-tick:
			if _, ok := deliver(); !ok {
				return
			}
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if w.relevant(ev.Name) {
				timer.Reset(w.debounce)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.logger.Warn("watch error", logKeyErr, err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				timer.Reset(w.debounce) // events were lost: read everything
			}
		case <-timer.C:
			if _, ok := deliver(); !ok {
				return
			}
		}
	}
}

// targets are the directories whose content matters.
func (w *Watcher) targets() []string {
	return []string{filepath.Dir(w.paths.NodeConf), w.paths.SvcDir}
}

// syncWatches watches each target, or its nearest existing ancestor, and
// the directory of the target of each symlinked config file. fsnotify's
// Add is idempotent, and it drops the watch of a removed directory by
// itself.
func (w *Watcher) syncWatches() error {
	base := map[string]bool{}
	for _, dir := range w.targets() {
		d := filepath.Clean(dir)
		for {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				break
			}
			parent := filepath.Dir(d)
			if parent == d {
				return fmt.Errorf("config watcher: no existing parent of %s", dir)
			}
			d = parent
		}
		if err := w.fsw.Add(d); err != nil {
			return fmt.Errorf("config watcher: watch %s: %w", d, err)
		}
		base[d] = true
	}
	return w.syncLinks(base)
}

// syncLinks finds the config files that are symlinks, resolves them, and
// watches the directories of their targets (and stops watching those no
// longer needed), so that an edit of a target is seen like an edit of the
// file.
// base are the directories watched anyway.
func (w *Watcher) syncLinks(base map[string]bool) error {
	files := []string{w.paths.NodeConf}
	if ents, err := os.ReadDir(w.paths.SvcDir); err == nil {
		for _, ent := range ents {
			if _, ok := ServiceName(ent.Name()); ok && ent.Type()&fs.ModeSymlink != 0 {
				files = append(files, filepath.Join(w.paths.SvcDir, ent.Name()))
			}
		}
	}
	links := map[string]string{}
	dirs := map[string]bool{}
	for _, f := range files {
		if fi, err := os.Lstat(f); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		target, err := filepath.EvalSymlinks(f)
		if err != nil {
			continue // dangling: reads as missing until it resolves
		}
		target, _ = filepath.Abs(target)
		links[target] = f
		dirs[filepath.Dir(target)] = true
	}
	for d := range dirs {
		if !w.extra[d] {
			if err := w.fsw.Add(d); err != nil {
				return fmt.Errorf("config watcher: watch %s: %w", d, err)
			}
		}
	}
	for d := range w.extra {
		if !dirs[d] && !base[d] {
			_ = w.fsw.Remove(d)
		}
	}
	w.links, w.extra = links, dirs
	return nil
}

// relevant reports whether an event on name may change what we read:
// node.conf, a service file, the target of either, or a target directory
// or one of its ancestors appearing, vanishing or changing mode.
func (w *Watcher) relevant(name string) bool {
	name = filepath.Clean(name)
	if name == filepath.Clean(w.paths.NodeConf) {
		return true
	}
	if _, ok := w.links[name]; ok {
		return true
	}
	if filepath.Dir(name) == filepath.Clean(w.paths.SvcDir) {
		_, ok := ServiceName(name)
		return ok
	}
	for _, t := range w.targets() {
		t = filepath.Clean(t)
		if name == t || strings.HasPrefix(t, name+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// state is what the watcher compares between two reads of a file: the
// hash of its content and the verdict on it. "" is a missing file.
func state(data []byte, readErr, verdict error) string {
	switch {
	case errors.Is(readErr, fs.ErrNotExist):
		return ""
	case readErr != nil:
		return "error: " + readErr.Error()
	}
	sum := sha256.Sum256(data)
	st := hex.EncodeToString(sum[:])
	if verdict != nil {
		st += " refused: " + verdict.Error()
	}
	return st
}

// snapshot reads everything and records it in w.seen.
func (w *Watcher) snapshot() Snapshot {
	s := Snapshot{Node: DefaultNode(w.hostname), Services: map[string]Service{}, ServiceErrs: map[string]error{}}
	for _, c := range w.scan() {
		switch {
		case c.Service == "" && c.Err != nil:
			s.NodeErr = c.Err
		case c.Service == "":
			s.Node = c.Node
		case c.Err != nil:
			s.ServiceErrs[c.Path] = c.Err
		default:
			s.Services[c.Service] = c.Svc
		}
	}
	return s
}

// scan reads node.conf and the service files and returns a Change for
// each whose state differs from w.seen, node.conf first, then services by
// name; it updates w.seen.
func (w *Watcher) scan() []Change {
	var out []Change
	path := w.paths.NodeConf
	data, err := os.ReadFile(path)
	c := w.nodeChange(path, data, err)
	if st := state(data, err, c.Err); st != w.seen[path] {
		w.logNode(c)
		out = append(out, c)
		w.record(path, st)
	}

	ents, err := os.ReadDir(w.paths.SvcDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Without a listing nothing can be said to be removed.
		w.logger.Warn("read service dir", logKeyPath, w.paths.SvcDir, logKeyErr, err)
		return out
	}
	var names []string
	for _, ent := range ents {
		if name, ok := ServiceName(ent.Name()); ok && !ent.IsDir() {
			names = append(names, name)
		}
	}
	for p := range w.seen {
		if p == w.paths.NodeConf {
			continue
		}
		if name, _ := ServiceName(p); !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		p := w.paths.ServiceFile(name)
		data, err := os.ReadFile(p)
		c := w.serviceChange(p, name, data, err)
		st := state(data, err, c.Err)
		if st == w.seen[p] {
			continue
		}
		w.record(p, st)
		switch {
		case c.Removed:
			w.logger.Info("service config removed", logKeyService, name)
		case c.Err != nil:
			w.logger.Warn("service config refused", logKeyService, name, logKeyErr, c.Err)
		default:
			w.logger.Info("service config read", logKeyService, name)
		}
		out = append(out, c)
	}
	return out
}

// nodeChange reads node.conf's content (or read error) into a Change. A
// missing file gives the defaults at start and ErrRemoved while running;
// an empty one gives ErrEmpty while running.
func (w *Watcher) nodeChange(path string, data []byte, err error) Change {
	c := Change{Path: path}
	switch {
	case errors.Is(err, fs.ErrNotExist) && !w.running:
		c.Node = DefaultNode(w.hostname)
	case errors.Is(err, fs.ErrNotExist):
		c.Err = withFile(ErrRemoved, path)
	case err != nil:
		c.Err = fmt.Errorf("read node config: %w", err)
	case w.running && len(bytes.TrimSpace(data)) == 0:
		c.Err = withFile(ErrEmpty, path)
	default:
		c.Node, c.Err = ParseNode(path, data, w.hostname)
		if c.Err == nil {
			c.Err = c.Node.checkFiles()
		}
	}
	return c
}

func (w *Watcher) logNode(c Change) {
	switch {
	case c.Err != nil:
		w.logger.Warn("node config refused", logKeyPath, c.Path, logKeyErr, c.Err)
	case c.Node.Source == "":
		w.logger.Info("no node config: defaults apply", logKeyPath, c.Path)
	default:
		w.logger.Info("node config read", logKeyPath, c.Path)
	}
}

// serviceChange reads a service file's content (or read error) into a
// Change: a missing file is a removal.
func (w *Watcher) serviceChange(path, name string, data []byte, err error) Change {
	c := Change{Path: path, Service: name}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Removed = true
	case err != nil:
		c.Err = fmt.Errorf("read service config: %w", err)
	case len(bytes.TrimSpace(data)) == 0:
		c.Err = withFile(ErrEmpty, path)
	default:
		c.Svc, c.Err = ParseService(path, data)
		if c.Err == nil {
			c.Err = c.Svc.checkFiles()
		}
	}
	return c
}

// withFile wraps a sentinel error into a *Error naming path.
func withFile(sentinel error, path string) error {
	return &Error{File: path, Msg: sentinel.Error(), Err: sentinel}
}

func (w *Watcher) record(path, st string) {
	if st == "" {
		delete(w.seen, path)
		return
	}
	w.seen[path] = st
}
