// Package events is the agent's record bus: it numbers the records of the
// stream (SPEC section 4), keeps the newest in memory and all retained ones
// in a durable journal, and serves subscriptions that resume after a seq or
// start at a time.
//
// # Numbering
//
// The records of kinds patch and event share one sequence number that
// increases within an epoch: a short random hex id that changes only when
// history was lost. Publish assigns the seq under the bus lock, so the
// order of seqs is the order of Publish calls; a caller that publishes under
// its own lock (the cluster-data store) gets its own order.
//
// A seq names one record, even across a crash or a power loss. The journal
// keeps a high-water mark on disk (DIR/seqmark, fsynced): no seq above it
// has been given. It is raised a block at a time (defaultReserveBlock), by
// the fsync goroutine when half the block is used, in line only if that
// goroutine fell behind. A clean Close lowers it to the newest seq, so a
// clean restart continues at the next seq. After an unclean stop (a kill,
// a power loss that took the journal's unsynced tail, a torn last line),
// numbering continues after the mark, in the same epoch: the seqs between
// the newest record on disk and the mark are skipped. They are declared
// empty by the name of the next segment (a segment named N whose first
// record is M > N declares N..M-1 empty), so a later start knows them too.
//
// An empty range is passed over: a subscription that reads across it gets
// the next record after it, with no reset and no skip counted. A
// non-durable resume from a seq inside the range resets: the client saw a
// record that the journal no longer has (the lost tail). A resume from the
// last record on disk, or before it, passes over the range; the records a
// power loss took that such a client had not seen are gone without a
// trace, as they are for the agent. A durable subscription passes over the
// range whatever its cursor.
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
//   - Durable subscriptions (hooks, sinks, triggers) have no lag limit and
//     read the journal at their own pace: delivery is at least once across
//     restarts when the consumer resumes from the last seq it handled.
//     They never reset within their epoch: records dropped by retention, or
//     never written (write errors), are skipped to the next record there is
//     and counted in Skipped() (and Stats.Skipped), never silently; seqs
//     declared empty are passed over and not counted.
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
// Subscriptions pull from one shared ring of the newest records, bounded
// by RingSize records and RingBytes bytes (the newest record always
// stays): a subscription is a position, not a queue, so Publish costs the
// same with any number of subscribers. Publish closes a broadcast channel
// when someone waits on it; waiting subscribers then read the ring in
// batches. A subscription behind the ring reads the journal files itself.
// A record's data shares its encoding's bytes.
//
// # Journal
//
// The journal lives in Config.Dir: JSON-lines segments named by the first
// seq they cover (00000000000000000001.jsonl), each line one record's
// JSON(), written with one write per record as it is published (no fsync per
// record: a killed process loses nothing the OS has; a goroutine of the Bus
// fsyncs every second and Close fsyncs). Segments rotate past SegmentBytes;
// on rotation the oldest segments are deleted while the journal exceeds
// MaxBytes or their newest record is older than MaxAge. The fsyncs of a
// rotated segment and of the directory are left to the fsync goroutine:
// Publish runs under the callers' locks and never waits for the disk.
//
// Open continues the numbering and the epoch after the seq mark, after
// truncating a torn last line. It starts a new epoch at seq 1 when there
// is no journal, or when its history is unreadable: an undecodable record
// before the last line of the newest segment, a segment whose ends do not
// match its name or epoch, overlapping segments, a missing or unreadable
// seq mark, or a mark of another epoch or below the records on disk. The
// unreadable segments are moved to Dir/lost (replacing the previous ones
// there) and a warning is logged: the bus never renumbers within an epoch.
//
// # Write errors
//
// A failed journal write (disk full, read-only folder) is logged once per
// outage and counted in Stats.JournalWriteErrors. The record stays in the
// ring and is delivered; it and the records after it wait in memory
// (Stats.JournalWaiting), and the journal tries again once a second, not
// once per record, in the same segment file: no file is created per
// failure. When the disk takes writes again the waiting records are
// written in order and the journal is whole. Records that leave the ring
// before that are lost for good (Stats.JournalLost): the next record
// starts a new segment, and the hole between two segments is what a
// resume across it resets on, a durable subscription skips and counts,
// and a SinceTime subscription starting before it notes in Reset().
//
// While records wait, the seq mark names them (rewritten in place, which a
// full disk still takes): if the agent stops before they are written, the
// next start knows them lost, not empty, and reports them the same way.
// If the mark itself cannot be written at Open, the run numbers its
// records under a new epoch and keeps them in memory only; if it cannot be
// raised later, the error is logged: a crash then could give a seq twice.
//
// # Goroutines and locks
//
// The Bus owns one goroutine, the fsync loop (fsyncs, seq reservations,
// retries of failed writes), which Close stops and waits for. Subscriptions own none: Next runs on the caller's goroutine and
// returns promptly when ctx is done, the subscription is closed, or the bus
// is closed. Lock order: Subscription.mu, then Bus.mu, then journal.mu,
// then seqMark.mu.
// Publish takes journal.mu before releasing Bus.mu, so journal writes follow
// seq order while subscribers read the ring concurrently; the fsync runs
// without any lock.
package events
