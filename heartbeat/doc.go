// Package heartbeat keeps the monitor store of this agent in sync with its
// peers over memberlist, and keeps the cluster whole: it finds dead peers
// again when the network heals.
//
// Protocol (user messages on memberlist, one type byte then JSON, decoded
// in one place, decodeMessage):
//
//   - delta: node, boot, base gen, gen, RFC 6902 operations taking the
//     node's data from base to gen. Sent to every alive peer as soon as the
//     local data changes; changes arriving within Coalesce of the previous
//     send are merged into one delta (a lone change is never delayed). Small
//     deltas go by UDP, large ones by TCP through the peer's queue.
//   - fullreq: "send me the whole data of node Of". Sent to the owner when a
//     delta does not apply on what is held (gap, restart, unknown node,
//     failed operations) or a digest shows the copy held behind or
//     different; when the owner does not answer, the retry also goes to a
//     third node known to hold a newer copy (a relay: a bridge partition).
//     At most one request per node is outstanding at a time.
//   - full: the whole data of a node (always by TCP): the sender's own, or
//     the copy it holds of another's (relayed). Sent on join, on request,
//     and carried by memberlist's push/pull.
//   - digest: a node's (boot, gen, hash of its data). Sent to every peer
//     DigestDelay and 5 DigestDelay after its last change, so that a lost
//     last delta is found; carried on every probe ack too, with the
//     digests of two other nodes' data as the sender holds them.
//   - order: an order for another node (freeze, thaw), since only that node
//     changes its own data.
//   - leave: sent before memberlist's own leave, so that peers tell a
//     graceful leave from a death.
//
// A copy found behind by a digest or a push/pull gets DigestGrace before
// anything is done: a delta may be on its way. Push/pull data is taken
// only when the copy is still behind then; only such repairs count as
// resyncs.
//
// Reliable sends go through one bounded queue per alive peer, drained by a
// goroutine of its own while it holds anything, so a peer that does not
// answer delays nobody else; a full copy replaces the older copy and the
// deltas queued before it; the queue dies with the peer.
//
// Membership comes from memberlist's failure detection: join, dead and
// left are recorded in the store's cluster.nodes; a peer dead or left for
// longer than ForgetAfter has its data forgotten. The reconnect set keeps
// every peer seen alive (persisted in PeersFile) and the seeds: the dead
// ones are tried with a jittered backoff up to 10 s for ReconnectTimeout,
// so a partition of any length heals. Left and forgotten (Forget) peers
// are not tried.
//
// Goroutines: Run owns the main loop (local changes, membership,
// digests, divergence checks, forgetting, reconnection, saving the
// reconnect set): flush runs only there. Each peer queue's sender and each
// reconnect attempt run in goroutines of their own, started by the main
// loop and waited for by Close, which first ends their dials. memberlist's
// delegate callbacks never block: they apply to the store or enqueue
// work.
//
// Heartbeat.mu guards the maps of peers, queues and the reconnect set; it
// is never held while sending or while calling into the store.
//
// Files by concern: heartbeat.go (the type, Run, the main loop), config.go
// (memberlist timings), transport.go (dials that end on Close), send.go
// (deltas, digests, peer queues), receive.go (and messages.go, the wire
// format; divergence checks), delegates.go, membership.go (joins,
// deaths, leaves, Forget) and reconnect.go (the reconnect set).
package heartbeat
