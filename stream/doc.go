// Package stream serves the agent's records to websocket subscribers
// (GET /v1/events, SPEC sections 4 and 7), dials such a stream with
// resumption (Dial), and rebuilds the cluster data from it (Mirror).
//
// # Server: what a subscriber receives
//
// Each websocket text message holds one record's JSON (events.Record.JSON).
// With the opt-in batch=1 extension a message may hold several records
// separated by "\n"; the order and the guarantees are the same. A batch
// message gathers what came in one batch window (20 ms by default) after a
// first record.
//
// Subscribers without limit= share the encoding: a framer goroutine per
// mode (running while such a subscriber is connected) reads the bus once
// for all of them and cuts the stream into a chain of windows, each
// encoding its records' messages once per selection (kinds and filter
// text: subscribers with the same filters share them too). The batch
// framer waits for the batch window; the default one publishes what it
// read at once. A subscriber that stands where a window starts writes the
// window's messages as they are, several windows in one write when they
// came while it wrote; one that starts elsewhere (after a snapshot or a
// resume) or falls too far behind reads what it lacks from its own
// subscription, which holds its lag limit, then follows the chain again.
//
// Default-mode subscribers that are caught up are written by one fan-out
// goroutine rather than their own: at each turn it writes to a subscriber
// everything that came since its last turn, in one write(2) that never
// blocks. Nothing is held back for a window: a record goes at the
// subscriber's next turn, and when the agent is busy the records of that
// time share the write, which is what bounds the fan-out's CPU to a core.
// A subscriber whose socket does not take the whole write goes back to its
// own goroutine, which finishes the write blocking, catches up, and gives
// itself back. (TLS connections cannot be written without blocking: their
// own goroutine follows the chain.)
//
//   - snapshot=1 without a resume point: a full record at seq S (the
//     document exact at S), then every selected record after S.
//   - since=SEQ&epoch=E: every selected record after SEQ, none twice. When
//     the bus cannot resume there (other epoch, records gone, a point in
//     the future), first a reset record at the head with data.reason, then,
//     if snapshot=1, a full record, then the records after it. Never a
//     silent gap. A since without epoch means the current epoch.
//   - neither: a progress record at the start position, then the records
//     after it (since_time=RFC3339 starts at the first record at or after
//     that time).
//   - a progress record (data null) whenever nothing was sent for the
//     progress interval. Its seq is the newest seq the subscriber has been
//     given or passed over, so resuming from it misses nothing it selected.
//
// kind= and filter= (OR'ed) select patch and event records only; full,
// reset and progress records always go through. limit=N closes the stream
// with status 1000 after N patch and event records.
//
// Close codes: 1008 (policy violation) with "could not keep up: ..." when
// the subscriber fell behind the bus's lag limit (counted from the end of
// the last write to it, in progress or not, when it next catches up);
// 1001 when the handler closes (agent shutdown) or the bus ends; 1009 for
// a client frame over the read limit; 1002 for a malformed client frame;
// 1011 when the subscription fails otherwise. A subscriber whose socket stays full longer than the
// write timeout is dropped without a close frame. None of this slows the
// bus or the other subscribers: the framers never wait for a subscriber,
// the fan-out goroutine never blocks on one, and a subscriber that would
// block is served by its own goroutine.
//
// Every session has two goroutines (the request's, which writes or waits
// while the fan-out goroutine writes, and a reader); both end when the
// client goes, the request context ends, or Handler.Close, which waits for
// them and for the framers and the fan-out goroutine.
//
// # Client
//
// Stream.Next delivers records in order. With Reconnect, a dropped
// connection is redialled with bounded backoff and resumed after the last
// record delivered; records repeated by the agent are dropped, so the
// caller sees neither gap nor duplicate (a loss the agent cannot repair
// shows as a reset record, followed by a full one when Snapshot was asked).
//
// # Mirror
//
// Mirror applies a full record and the patches after it (RFC 6902, in seq
// order) to hold the document exact at Mirror.Seq. Seqs need not be
// consecutive: a kind=patch stream has holes where the events were, and
// after an unclean stop the agent's numbering jumps past a range that holds
// no record. The agent announces such an empty range by nothing but the
// jump (the next record, or a progress record past it) and a loss by a
// reset record, so a Mirror takes any record after its seq in its epoch
// and asks for a new snapshot (ErrNeedFull, ErrGap) only after a reset, a
// patch that does not apply, a seq that goes back or another epoch.
package stream
