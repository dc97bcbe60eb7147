package config

import (
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
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is the quiet time the Watcher waits after the last file
// event before it reads the files.
const DefaultDebounce = 200 * time.Millisecond

// Log attribute keys.
const (
	logKeyComponent = "component"
	logKeyPath      = "path"
	logKeyService   = "service"
	logKeyErr       = "err"
)

// Change is one config file whose content changed.
type Change struct {
	// Path is the file.
	Path string
	// Service is the service name, or empty when Path is node.conf.
	Service string
	// Removed reports that the file is gone. For node.conf, Node then
	// holds DefaultNode: the config of an agent without node.conf.
	Removed bool
	// Node is the new node config, when Service is empty and Err is nil.
	Node Node
	// Svc is the new service config, when Service is set, Err is nil and
	// Removed is false.
	Svc Service
	// Err is why the new content was refused (a *Error for a parse error):
	// the running config should stay.
	Err error
}

// Snapshot is the configuration the Watcher started from; changes are
// relative to it.
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
// Change for every file whose content changed. It watches directories,
// not files, so that editors that write a new file and rename it over the
// old one are seen, and it watches the nearest existing parent of a
// directory that does not exist yet.
type Watcher struct {
	paths    Paths
	hostname string
	debounce time.Duration
	logger   *slog.Logger
	fsw      *fsnotify.Watcher
	changes  chan Change
	initial  Snapshot
	cancel   context.CancelFunc
	done     chan struct{}
	close    sync.Once
	closeErr error

	// seen maps each known file to the hash of the content last reported;
	// owned by the run goroutine after NewWatcher returns.
	seen map[string]string
}

// NewWatcher starts watching paths.NodeConf and paths.SvcDir. hostname
// gives node.conf defaults; debounce <= 0 means DefaultDebounce; a nil
// logger discards. Call Close to stop it.
func NewWatcher(paths Paths, hostname string, debounce time.Duration, logger *slog.Logger) (*Watcher, error) {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("config watcher: %w", err)
	}
	w := &Watcher{
		paths:    paths,
		hostname: hostname,
		debounce: debounce,
		logger:   logger.With(logKeyComponent, "config"),
		fsw:      fsw,
		changes:  make(chan Change, 16),
		done:     make(chan struct{}),
		seen:     map[string]string{},
	}
	// Watch first, then read: an edit made in between is seen twice at
	// worst, never missed.
	if err := w.syncWatches(); err != nil {
		_ = fsw.Close()
		return nil, err
	}
	w.initial = w.snapshot()
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx)
	return w, nil
}

// Initial returns the configuration read when the watcher started.
func (w *Watcher) Initial() Snapshot { return w.initial }

// Changes returns the channel of changes. It is closed by Close.
func (w *Watcher) Changes() <-chan Change { return w.changes }

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
	for {
		select {
		case <-ctx.Done():
			return
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
			if err := w.syncWatches(); err != nil {
				w.logger.Warn("watch", logKeyErr, err)
			}
			for _, c := range w.scan() {
				select {
				case w.changes <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// targets are the directories whose content matters.
func (w *Watcher) targets() []string {
	return []string{filepath.Dir(w.paths.NodeConf), w.paths.SvcDir}
}

// syncWatches watches each target, or its nearest existing ancestor.
// fsnotify's Add is idempotent, and it drops the watch of a removed
// directory by itself.
func (w *Watcher) syncWatches() error {
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
	}
	return nil
}

// relevant reports whether an event on name may change what we read:
// node.conf, a service file, or a target directory or one of its
// ancestors appearing or vanishing.
func (w *Watcher) relevant(name string) bool {
	name = filepath.Clean(name)
	if name == filepath.Clean(w.paths.NodeConf) {
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

// hashState returns the hash of a read result: "" for a missing file.
func hashState(data []byte, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ""
	case err != nil:
		return "error: " + err.Error()
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
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
// each whose content differs from w.seen, node.conf first, then services
// by name; it updates w.seen.
func (w *Watcher) scan() []Change {
	var out []Change
	path := w.paths.NodeConf
	data, err := os.ReadFile(path)
	if h := hashState(data, err); h != w.seen[path] {
		out = append(out, w.nodeChange(path, data, err))
		w.record(path, h)
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
		h := hashState(data, err)
		if h == w.seen[p] {
			continue
		}
		w.record(p, h)
		c := Change{Path: p, Service: name}
		switch {
		case h == "":
			c.Removed = true
			w.logger.Info("service config removed", logKeyService, name)
		case err != nil:
			c.Err = fmt.Errorf("read service config: %w", err)
		default:
			c.Svc, c.Err = ParseService(p, data)
		}
		if c.Err != nil {
			w.logger.Warn("service config refused", logKeyService, name, logKeyErr, c.Err)
		} else if !c.Removed {
			w.logger.Info("service config read", logKeyService, name)
		}
		out = append(out, c)
	}
	return out
}

func (w *Watcher) nodeChange(path string, data []byte, err error) Change {
	c := Change{Path: path}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Removed = true
		c.Node = DefaultNode(w.hostname)
		w.logger.Info("node config removed: defaults apply", logKeyPath, path)
		return c
	case err != nil:
		c.Err = fmt.Errorf("read node config: %w", err)
	default:
		c.Node, c.Err = ParseNode(path, data, w.hostname)
	}
	if c.Err != nil {
		w.logger.Warn("node config refused", logKeyPath, path, logKeyErr, c.Err)
	} else {
		w.logger.Info("node config read", logKeyPath, path)
	}
	return c
}

func (w *Watcher) record(path, hash string) {
	if hash == "" {
		delete(w.seen, path)
		return
	}
	w.seen[path] = hash
}
