//go:build !unix

package history

import "io/fs"

// fileUID is not known off unix.
func fileUID(fs.FileInfo) (int, bool) { return 0, false }
