// Package hooks runs the [hook#NAME] commands of node.conf (SPEC section 2)
// for the event records of the agent's stream, without ever losing one
// silently.
//
// # Delivery
//
// Each hook is a durable consumer of the events.Bus (package durable): it
// reads the stream at its own pace (from the journal when it is behind), in
// seq order, and runs its command once per matching record, one run at a
// time. Hooks run in parallel with each other; a slow hook delays only
// itself.
//
// A record matches when its kind is "event", its data.id is one of the
// hook's Events (or Events is "all"), and the hook's Filter, if any, holds
// on the record JSON (SPEC section 6).
//
// The hook's cursor, the epoch and the seq of the last record it is done
// with, is kept in Dir/NAME.cursor (and the files package durable keeps
// beside it). It is written after every run, never before the run ended
// (in place, before the next record is read: a killed agent loses
// nothing), and fsynced in batches (within 50 ms); records that do not
// match advance it too, but their writes are batched (every 1024 records, and whenever the hook has
// caught up with the stream or stops). After a restart the hook resumes
// after its cursor, so delivery is at least once: the only record that can
// run twice is the one that was running when the agent stopped, or, after
// a power loss, those of the last 50 ms. None is ever skipped silently.
//
// A hook that has no cursor, a new hook, starts at the head of the stream
// as it was when Update named it: it does not replay history.
//
// # Losses are loud
//
// Records can still be lost to journal retention (the hook was stopped, or
// too slow, for longer than the journal keeps records), or to an epoch
// change (the journal itself was lost). Either way the runner logs at Error
// level, counts the loss in Stats, and publishes an event record:
//
//	{"id": "hook_skipped", "reason": "retention", "hook": NAME, "skipped": N}
//
// where reason is "retention" (N records dropped before the hook read
// them), "epoch" (the stream was renumbered: the number lost is unknown,
// so there is no "skipped"; "old_epoch" and "after_seq" say where the hook
// was), "cursor_ahead" (the cursor names a seq the journal never reached)
// or "cursor_unreadable" (the cursor file could not be read). After an
// epoch change the hook runs for every retained record of the new epoch;
// after the other two it starts at the head.
//
// # Commands
//
// A command runs with package proc: without a shell (Command[0] is the
// program, the rest its arguments), in its own process group. Its stdin is
// the record JSON line, byte for byte what `agent events -o json` prints,
// with a trailing newline. Its environment is clean: PATH, HOME, LANG and
// TZ from the agent's, plus AGENT_EVENT_ID (data.id), AGENT_NODENAME (the
// record's nodename: the node that published the event), AGENT_SEQ and
// AGENT_HOOK; nothing else of the agent's (never AGENT_TOKEN,
// NOTIFY_SOCKET or LISTEN_*). At its timeout the group gets SIGTERM, then
// SIGKILL after Config.KillGrace. The exit status, the duration and the
// first Config.OutputLimit bytes of stdout and stderr are logged with the
// hook name and the seq. A run that exits non-zero, does not start, or is
// killed at its timeout is a failure; the record still counts as done:
// hooks are not retried.
//
// # Live changes
//
// Update applies a new hook set: new hooks start at the head, removed ones
// stop reading (a running command is let finish, or killed at its timeout)
// and lose their cursor file, changed ones restart with the new settings
// after their running command ended, from their cursor. The first Update
// also removes the cursor files of hooks it does not name: they were
// removed from node.conf while the agent was not running.
//
// Close stops every hook: a running command gets SIGTERM at once and
// SIGKILL after KillGrace; its record is not marked done, so it runs again
// after a restart. Close returns when every goroutine of the runner ended.
//
// # Goroutines
//
// The Runner owns one goroutine per hook (and, while a command runs, the
// goroutines of package proc; each hook's consumer may own its fsync
// timer). Close
// stops and waits for all of them, including those of hooks that Update
// removed and that are still finishing a run.
package hooks
