// Package heartbeat keeps the monitor store of this agent in sync with its
// peers over memberlist.
//
// Protocol (user messages on memberlist, one type byte then JSON):
//
//   - delta: node, boot, base gen, gen, RFC 6902 operations taking the
//     node's data from base to gen. Sent to every alive peer as soon as the
//     local data changes; changes arriving within Coalesce of the previous
//     send are merged into one delta (a lone change is never delayed). Small
//     deltas go by UDP, large ones by memberlist's reliable (TCP) path.
//   - fullreq: "send me your whole data". A receiver sends it when a delta
//     does not apply on what it holds (gap, restart, unknown node, failed
//     operations); at most one request per peer is outstanding at a time.
//   - full: the whole data of the sender (always by TCP). Sent on join, on
//     request, and carried by memberlist push/pull as anti-entropy, which
//     repairs any loss nobody noticed.
//   - order: an order for another node (freeze, thaw), since only that node
//     changes its own data.
//
// Membership comes from memberlist's failure detection: join, suspect, dead
// and left are recorded in the store's cluster.nodes; a peer dead or left
// for longer than ForgetAfter is forgotten.
//
// Goroutines: Run owns the main loop (local changes, membership, forgetting)
// and the reliable sender; Close stops them and shuts memberlist down.
// memberlist's delegate callbacks never block: they apply to the store or
// enqueue work.
//
// Files by concern: heartbeat.go (the type, Run, the main loop), config.go
// (memberlist timings), send.go, receive.go (and messages.go, the wire
// format), membership.go (joins, deaths, leaves, forgetting) and
// reconnect.go (finding peers again).
package heartbeat
