package durable

import (
	"testing"

	"agent/internal/testutil"
)

// TestImports: the consumer sits on the floor of events' consumers: it
// knows the bus (and the file helpers: in-place sectors, whole files
// renamed), never the consumers built on it.
func TestImports(t *testing.T) {
	testutil.ImportsOnly(t, "agent/durable", "agent/events", "agent/internal/sectorfile", "agent/internal/atomicfile")
}
