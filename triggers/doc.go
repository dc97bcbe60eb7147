// Package triggers runs the [trigger#NAME] sections of node.conf: patterns
// of events over time (SPEC section 12, after winchester's triggers).
//
// # Streams
//
// A trigger's match filter selects records; the values of its distinct
// paths (a missing path is the empty string) split them into streams. The
// first matching record of a value set opens a stream, the following ones
// join it, and the stream closes when it fires or expires; the next
// matching record opens a new one.
//
//   - It fires when it holds count events and, with fire_when, when the
//     record that arrives also satisfies fire_when (until then it keeps
//     collecting).
//   - It expires when window has passed since its first event. A record
//     that arrives at or after that time expires the stream first and opens
//     a new one (the window is judged on record times, so a backlog read
//     after a restart is grouped as it happened).
//   - trigger_* events never enter a stream: no feedback loop.
//   - A stream keeps at most MaxEvents records for its command; past that
//     the oldest are dropped and counted (AGENT_TRIGGER_DROPPED).
//
// A closed stream runs the trigger's fire_command or expire_command (when
// it has one) with the stream's records on stdin, one per line, oldest
// first, byte for byte as the journal holds them, and the AGENT_TRIGGER*
// variables, through package proc (no shell, own process group, timeout,
// clean environment). A failing run is retried after RetryBase, doubling up
// to RetryMax, Retries times; then trigger_failed is published. Each
// trigger runs its commands one at a time, in the order its streams
// closed; triggers run theirs concurrently.
//
// # Events
//
// trigger_fire and trigger_expire {reason, trigger, key, count, first_seq,
// last_seq, command} are published when a stream closes (before its
// command runs); trigger_failed {trigger, key, outcome, error, attempts}
// when a command is given up; trigger_skipped {reason, skipped} when
// records were lost before the triggers read them.
//
// # Reload
//
// Update applies a new set at once. A new trigger sees the records
// published after the call. A trigger whose match or distinct changed
// expires its streams (reason reload: its expire_command runs) and starts
// again. A trigger whose count, fire_when or window changed re-evaluates
// its open streams: one that holds count events fires (reason reload) when
// it has no fire_when or its newest event satisfies it; one whose new
// window has passed expires. A removed trigger's streams close with reason
// removed, and no command runs.
//
// # Durability
//
// The open streams, their records, the closed streams whose command has not
// finished and the cursor (the last record applied) live in one state file,
// Config.Dir/streams.log: an append-only log of changes in batches, each
// ended by a commit line holding the cursor, fsynced at most every
// SyncInterval (CursorInterval when only the cursor moved), and rewritten
// as a snapshot when it has grown four times past the last one. The
// records are read with the one durable consumer (package durable),
// resumed after the state file's cursor, so the state and the cursor always
// agree: a batch cut by a crash is dropped whole and its records are read
// again. The journal is fsynced before each commit, so the cursor is never
// ahead of what a power loss leaves of the journal.
//
//   - A command runs only once the close of its stream is committed: a
//     crash before that re-reads the records and closes the stream again;
//     after it, the pending command runs at the next start. No fire or
//     expiry is lost.
//   - A command is marked done after it finished: only a command in flight
//     at a crash (or at Close, which terminates it) runs again.
//   - The trigger_fire or trigger_expire event of a stream is published
//     once, unless the agent dies between publishing it and committing that
//     it did (within SyncInterval): then again at start.
//   - Windows of the streams restored at start are judged once the records
//     after the cursor are read: an expiry that fell due while the agent was
//     stopped runs then.
//   - The records of an open stream are in the state file, not only in the
//     journal: journal retention shorter than window does not shorten a
//     stream. Records lost before the triggers read them (the agent was
//     stopped longer than the journal keeps records, or the journal was
//     lost) are reported by trigger_skipped, and every stream open at that
//     time is marked lost (AGENT_TRIGGER_LOST=1, "lost": true in its
//     events and in `agent trigger ls`): never silently shortened.
//   - When the state file cannot be written (disk full), commands run
//     anyway (a page delayed by a full disk is worse than one sent twice
//     after a crash), the error is logged once, and the next commit that
//     works writes a whole snapshot.
//
// # Goroutines
//
// A Runner owns one loop goroutine, which owns the Engine and the state
// file; a reader goroutine, which owns the durable consumer; and one
// executor goroutine per trigger that ran a command. Close stops them all
// and waits. The Engine has no goroutine, clock or I/O: it is given records,
// times and specs, and says which streams closed.
package triggers
