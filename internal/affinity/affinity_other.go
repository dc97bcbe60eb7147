//go:build !linux

package affinity

import "errors"

var errUnsupported = errors.New("CPU affinity is supported on Linux only")

// Supported reports whether the process may be pinned: never here.
func Supported() bool { return false }

// Current returns the CPU the calling thread runs on: unknown here.
func Current() (int, error) { return -1, errUnsupported }

// Pin is not supported here.
func Pin(cpu int) error { return errUnsupported }

// Unpin has nothing to undo here.
func Unpin() error { return nil }

func unpinThread() error { return nil }

func repin() error { return nil }

// RunDelay is not known here.
func RunDelay() (int64, error) { return 0, errUnsupported }
