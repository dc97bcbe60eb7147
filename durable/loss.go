package durable

// LossReason says why records were lost to a consumer.
type LossReason string

// Loss reasons. Their strings are the "reason" of the events consumers
// publish for a loss (hook_skipped, sink_skipped, ...).
const (
	// LossRetention: the journal dropped records before the consumer read
	// them (it was stopped, or too slow, for longer than the journal
	// keeps records). Count says how many.
	LossRetention LossReason = "retention"
	// LossEpoch: the stream was renumbered (the journal itself was lost);
	// how many records were lost is unknown. The consumer goes on with
	// every retained record of the new epoch.
	LossEpoch LossReason = "epoch"
	// LossCursorAhead: the cursor names a seq the journal never reached;
	// the consumer starts at the head.
	LossCursorAhead LossReason = "cursor_ahead"
	// LossCursorUnreadable: the cursor file could not be read; the
	// consumer starts as a new one (at the head, or the oldest record with
	// NewFromOldest).
	LossCursorUnreadable LossReason = "cursor_unreadable"
)

// Loss describes records a consumer will never get. Only what the bus
// reports as lost is a loss: a range of seqs that the journal skipped
// without records in it (after an unclean stop) is passed over silently.
type Loss struct {
	// Reason says why.
	Reason LossReason
	// Count is the number of records lost, when CountKnown (retention
	// only).
	Count      uint64
	CountKnown bool
	// Cursor is where the consumer was: the records after it are the ones
	// lost. With LossEpoch and LossCursorAhead it is the cursor that could
	// not be resumed (its Epoch is the old epoch); with LossRetention, the
	// last record read before the gap; zero with LossCursorUnreadable.
	Cursor Cursor
	// Detail says why in words: the bus's reset reason, the error.
	Detail string
}
