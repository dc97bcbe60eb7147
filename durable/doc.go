// Package durable is the one durable consumer of the record bus
// (events.Bus): hooks, history sinks and triggers each open a Consumer and
// say only what they do with a record.
//
// A Consumer reads the stream at its own pace (from the journal when it is
// behind the in-memory ring), keeps a cursor file (the epoch and the seq of
// the last record it is done with), resumes after it when opened again, and
// reports every loss.
//
// # Use
//
//	c, err := durable.Open(durable.Config{Name: "hook notify", CursorPath: p, Bus: bus, OnLoss: report})
//	defer c.Close()
//	for {
//		rec, err := c.Next(ctx)
//		if err != nil {
//			return err // ctx done, ErrClosed, or the bus closed
//		}
//		if !interesting(rec) {
//			c.Pass(rec.Seq) // nothing done: the cursor write is batched
//			continue
//		}
//		handle(rec)
//		c.Done(rec.Seq) // done: the cursor is written before Done returns
//	}
//
// Read several, commit later: Next returns the record after the last one it
// returned, whether or not that one is done, so a consumer can read ahead
// while a batch is pending, and call Done with the last seq of the batch
// once it is committed. Done and Pass mark every record up to their seq
// done, so call them only with the seq below which nothing is pending: a
// sink that passes over a record while an older batch is not committed
// calls neither until the commit, then Done on the newest seq it has seen.
//
// # Ordering and delivery
//
//   - Next returns records in seq order, each once per Open.
//   - At least once across restarts: Open resumes after the cursor, so the
//     records read but not marked done when the consumer was closed or the
//     process died are read again; nothing else is.
//   - A consumer without a cursor (a new one) starts at the head of the
//     stream: it does not replay history, unless Config.NewFromOldest says
//     so. Config.StartAtHead starts at the head whatever the cursor says;
//     Config.From resumes after a cursor held in memory (a consumer taking
//     over from a previous one of the same name).
//
// # Losses are loud
//
// Records can be lost to journal retention (the consumer was stopped, or too
// slow, for longer than the journal keeps records), or to an epoch change
// (the journal was lost), and a cursor can be unreadable or ahead of the
// journal. Each is reported once through Config.OnLoss as a Loss, before the
// first record after it; the consumer turns it into its own event
// (hook_skipped, sink_skipped, ...). Only what the bus says is lost is a
// loss: the consumer never infers a loss from a jump in seqs, so a range the
// journal reserved and never filled (after an unclean stop) is passed over
// silently. After an epoch change the consumer reads every retained record
// of the new epoch; after the other reasons it starts as a new consumer.
//
// # Cursor durability
//
// Two files keep a cursor at PATH. Done writes the cursor before it
// returns, in place, into PATH.next (one pwrite into a file the consumer
// keeps open: no new inode, no rename), so a killed process (kill -9)
// resumes exactly after it. The fsyncs are batched: within
// Config.SyncInterval (50 ms) of a write, a timer writes the cursor to a
// temporary file, fsyncs it, renames it over PATH and fsyncs the directory;
// Close does the same at once. So PATH only ever holds fsynced content,
// and PATH.next holds the newest cursor, which a power loss may leave older,
// empty or torn (each file carries a CRC of its cursor). Every cursor
// written to either file was done when it was written, so a reader takes
// the newer of the two that read well: a power loss may make the consumer
// read again the records of the last SyncInterval,
// never skip one. Before it fsyncs a cursor, the timer fsyncs the journal
// (events.Bus.Sync): a durable cursor never names records a power loss can
// still take from the journal, so records lost after it are reported, not
// passed over. While the journal cannot be fsynced (a full disk), the older
// durable cursor stays. Pass does not write: its cursor is written every
// Config.PassBatch records, when Next catches up, at the next Done, and at
// Close. A write error is logged once until a write works again; the
// consumer goes on (a restart would repeat, never skip).
//
// # Goroutines
//
// Next, Done and Pass run on the caller's goroutine. Next is for one
// goroutine at a time, the consumer's owner; Done, Pass, Cursor and Close
// may be called from any goroutine (a sink may commit its batches, and
// mark them done, on another goroutine than the one reading ahead); Close
// interrupts a Next blocked on another. A Consumer
// owns at most one goroutine, the fsync timer, armed by a write; Close stops
// it and waits for it. Next never holds a lock while it waits for the
// stream; OnLoss is called with no lock held.
package durable
