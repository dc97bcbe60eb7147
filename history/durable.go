package history

import (
	"agent/durable"
)

// durableSource is a Source over a durable consumer of the journal.
type durableSource struct {
	*durable.Consumer
}

// DurableSource makes a durable consumer the Source of a sink. The sink
// calls Done only after a commit and Pass only while nothing is pending,
// as the consumer asks of a reader that reads ahead.
func DurableSource(c *durable.Consumer) Source { return durableSource{c} }

// Position is the seq of the consumer's cursor.
func (s durableSource) Position() uint64 { return s.Cursor().Seq }
