// Package faultnet is an in-memory network for memberlist, with faults:
// partitions, one-way loss, delay, reordering and duplication, decided by a
// seeded random source so that a failing schedule can be replayed, in the
// manner of etcd raft's rafttest network.
//
// A Network hands out memberlist transports (NewTransport, or Install on a
// memberlist config), each with an address of its own (10.x.y.z:7946). No
// socket is opened. Packets are delivered into the receiver's buffered
// channel (a full channel drops the packet, as a full UDP socket buffer
// would); streams are in-memory pipes.
//
// Faults are rules on directed links between nodes, named by name or by
// address (Set, Cut, Partition, Isolate, SetDefault), removed by Heal. A
// packet on a link is lost with the link's Loss probability, duplicated
// with its Duplicate probability, and delivered after Delay plus a
// uniform random part of Jitter (which reorders packets). A stream dial on
// a link is refused at once when the target is down; on a cut link (Loss
// 1, either way, since TCP needs both) or with the Loss probability it
// hangs until its timeout, as a dial into a black hole does; otherwise it
// connects after the link's delay. Faults apply when a packet is sent or
// a stream is dialled: an established stream is not cut (memberlist's
// streams last one exchange).
//
// Goroutines: a Network runs one goroutine, which delivers delayed
// packets; transports run none. This keeps a thousand in-process nodes
// cheap: the goroutines left are memberlist's own. Close stops it.
//
// Counters (Stats, Total) give packets and bytes sent, received and
// dropped per node, and stream dials and bytes.
//
// All methods are safe for concurrent use.
package faultnet
