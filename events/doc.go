// Package events is the agent's record bus: it numbers the records of the
// stream (SPEC section 4), keeps the newest in memory and all retained ones
// in a durable journal, and serves subscriptions that resume after a seq or
// start at a time.
//
// # Numbering
//
// The records of kinds patch and event share one sequence number that
// increases by one, within an epoch: a short random hex id that changes only
// when history was lost. Publish assigns the seq under the bus lock, so the
// order of seqs is the order of Publish calls; a caller that publishes under
// its own lock (the cluster-data store) gets its own order.
//
// # Guarantees to subscribers
//
//   - Order: a subscription gets records in seq order, each at most once.
//   - No silent gap: a subscription gets every record after its start, or it
//     ends with an error (ErrSlow, ErrClosed, a journal read error). A resume
//     that cannot be honoured (another epoch, or records no longer retained)
//     starts at the head with Reset() saying why; the caller turns that into
//     the reset record of the SPEC.
//   - A subscription without Resume starts atomically at the head: Start() is
//     the Position() at Subscribe, so a caller that takes its snapshot and
//     subscribes under the lock it publishes under gets a gapless snapshot
//     plus patches.
//   - Durable subscriptions (hooks) have no lag limit and read the journal at
//     their own pace: delivery is at least once across restarts when the
//     consumer resumes from the last seq it handled. Records dropped by
//     retention before a durable subscription read them are skipped and
//     counted in Skipped() (and Stats.Skipped), never silently.
//   - A non-durable subscription more than MaxLag records behind the newest
//     ends with an error wrapping ErrSlow that says how far behind it was.
//     Records it asked for when resuming or starting from a time are not lag:
//     it is measured from the later of its position and the head at
//     Subscribe. The check happens in Next: nothing the bus does waits for a
//     subscriber.
//   - SinceTime starts at the first retained record at or after the time;
//     when the time is older than what is retained it starts at the oldest
//     retained record (no reset: nothing was promised).
//
// # Memory and cost
//
// Subscriptions pull from one shared ring of RingSize records: a
// subscription is a position, not a queue, so Publish costs the same with any
// number of subscribers. Publish closes a broadcast channel when someone
// waits on it; waiting subscribers then read the ring in batches. A
// subscription behind the ring reads the journal files itself.
//
// # Journal
//
// The journal lives in Config.Dir: JSON-lines segments named by the seq of
// their first record (00000000000000000001.jsonl), each line one record's
// JSON(), written with one write per record as it is published (no fsync per
// record: a killed process loses nothing the OS has; a goroutine of the Bus
// fsyncs every second and Close fsyncs). Segments rotate past SegmentBytes;
// on rotation the oldest segments are deleted while the journal exceeds
// MaxBytes or their newest record is older than MaxAge. The file "epoch"
// beside them holds the epoch while the journal holds every record
// published.
//
// Open continues the numbering and the epoch where the journal ends, after
// truncating a torn last line (a write cut by a crash). It starts a new
// epoch at seq 1 when the journal is missing or empty, or when its history
// is unreadable: an undecodable record before the last line of the newest
// segment, a segment whose ends do not match its name or epoch, overlapping
// segments, or a missing epoch file. The unreadable segments are moved to
// Dir/lost (replacing the previous ones there) and a warning is logged: the
// bus never renumbers within an epoch.
//
// # Write errors
//
// A failed journal write (disk full, read-only folder) is logged once per
// burst and counted in Stats.JournalWriteErrors; the record is still in the
// ring and delivered. Each following record is tried again, in a new segment
// so that every segment stays gapless; records already written are never
// rewritten. While writes fail, the epoch file is removed, and it is written
// back once a record reaches the journal again. Hence after a restart:
//
//   - if the journal got the newest records again before the stop, the epoch
//     and numbering continue; the records missing in the middle are never
//     served from disk: Oldest() is past the hole, so a resume before it gets
//     a reset, and a durable subscription skips and counts them;
//   - if the newest records never reached the journal, Open starts a new
//     epoch at seq 1 rather than reuse their seqs for other records.
//
// If even the epoch file cannot be removed (a read-only file system) and
// the process dies before writes recover, the next start reuses the seqs
// that were never written; this is logged as an error when it happens.
//
// # Goroutines and locks
//
// The Bus owns one goroutine, the fsync loop, which Close stops and waits
// for. Subscriptions own none: Next runs on the caller's goroutine and
// returns promptly when ctx is done, the subscription is closed, or the bus
// is closed. Lock order: Subscription.mu, then Bus.mu, then journal.mu.
// Publish takes journal.mu before releasing Bus.mu, so journal writes follow
// seq order while subscribers read the ring concurrently; the fsync runs
// without any lock.
package events
