// Package monitor owns the cluster data document of one agent (SPEC section
// 3): its own node's monitor data, the copies of every peer's, its view of
// membership and the derived service summaries.
//
// Guarantees:
//
//   - Only node N changes monitor.nodes.N. The local node's data changes
//     through Store.UpdateLocal, which increments gen once per change that
//     alters the data. A peer's data changes only through ApplyDelta (an RFC
//     6902 operation list taking gen B to gen G, applied only when the store
//     holds exactly B) or ApplyFull (the whole data, taken when newer or from
//     a new boot of the peer). Nothing is ever half-applied: a delta that
//     fails leaves the held copy untouched and asks for the whole data.
//   - Every change of the document is published on the event bus as one
//     patch record whose operations, applied to the previous document, give
//     the new one. The store publishes while holding its lock, so the order
//     of records is the order of changes, and SnapshotSubscribe gives a
//     document and a subscription that starts exactly after it.
//   - Node data is kept in canonical JSON (keys sorted, numbers as written),
//     so two agents holding the same data hold the same bytes.
//   - One node's data is at most Config.MaxData bytes of canonical JSON: a
//     local change past it is refused (ErrDataTooLarge), so nothing over
//     it is published or replicated; a peer's data over it is refused on
//     receipt, counted (RefusedTooLarge) and logged at most once a minute
//     per peer, and that peer's deltas are ignored for a while rather than
//     answered with requests for its whole data.
//   - The persistent state (freeze, reserved generations) is saved before
//     a change that needs it is published, without the store lock.
//
// Lock order: Store.localMu (UpdateLocal only), Store.mu, then the bus's
// own lock (inside Publish/Subscribe). Observers are called with Store.mu
// held and must not call back into the store.
package monitor
