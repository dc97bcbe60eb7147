package hooks

import "path/filepath"

// cursorSuffix names a hook's cursor file: Dir/NAME.cursor (the durable
// package keeps its other files beside it).
const cursorSuffix = ".cursor"

func (r *Runner) cursorPath(name string) string {
	return filepath.Join(r.cfg.Dir, name+cursorSuffix)
}
