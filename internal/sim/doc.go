// Package sim runs a cluster of hundreds or thousands of nodes in one
// process and measures how the agent's replication behaves at that size.
//
// Each node is the agent's replication core, unchanged: a monitor store
// and a heartbeat over real memberlist. The nodes talk over the in-memory
// network of package faultnet (no socket, no goroutine per transport), so
// that what is left per node is memberlist's own goroutines and the
// heartbeat's.
//
// Timings are the `local` profile's (the heartbeat's defaults on top),
// every one multiplied by a scale factor k (Config.Scale). With k = 1 the
// simulation runs in real time. When the process cannot keep up with
// that (a thousand memberlists on two cores), a larger k slows every
// timer down by the same factor: the protocol takes the same steps, in k
// times the wall time, and results are reported both as wall time divided
// by k and in probe intervals.
//
// What it measures (Cluster.Spread, Cluster.Traffic):
//   - how long one change takes to reach 99 % and 100 % of the other
//     nodes, from the owner's UpdateLocal to the store observer of each
//     receiver seeing the new generation;
//   - the bytes each node sends per second, idle and under a rate of
//     changes spread over random nodes (faultnet's counters: packets and
//     streams);
//   - the size of memberlist's push/pull messages (faultnet's exchanges);
//   - full copies: resyncs, full requests and full sends of the
//     heartbeats.
//
// A Cluster is used by one goroutine; Close stops every node.
package sim
