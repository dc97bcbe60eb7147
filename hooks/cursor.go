package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Cursor file names: Dir/NAME.cursor, written through Dir/NAME.cursor.tmp.
const (
	cursorSuffix = ".cursor"
	tmpSuffix    = ".tmp"
)

// cursorBatch bounds how many non-matching records may pass before the
// cursor is written; it is also written whenever the hook has caught up.
const cursorBatch = 1024

// cursor is where a hook is in the stream: it is done with every record up
// to Seq of Epoch.
type cursor struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

func (r *Runner) cursorPath(name string) string {
	return filepath.Join(r.cfg.Dir, name+cursorSuffix)
}

// readCursor reads a hook's cursor file. The error wraps os.ErrNotExist
// when there is none.
func readCursor(path string) (cursor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return cursor{}, err
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return cursor{}, fmt.Errorf("hook cursor %s: %w", path, err)
	}
	if c.Epoch == "" {
		return cursor{}, fmt.Errorf("hook cursor %s: no epoch", path)
	}
	return c, nil
}

// writeCursor replaces the cursor file atomically: a reader (the next
// start) sees the old cursor or the new one, never a mix. It is not
// fsynced: see the package documentation.
func writeCursor(path string, c cursor) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	tmp := path + tmpSuffix
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write hook cursor: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write hook cursor: %w", err)
	}
	return nil
}

// removeCursor deletes a hook's cursor file; a missing one is not an error.
func removeCursor(path string) error {
	err := os.Remove(path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	_ = os.Remove(path + tmpSuffix)
	return err
}
