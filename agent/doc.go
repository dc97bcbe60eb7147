// Package agent assembles one node agent: it loads the node config, opens
// the record bus and its journal, keeps the monitor store, runs the
// heartbeat, samples host stats, applies config edits live, and serves the
// local API (SPEC section 7) on a unix socket and an optional TCP listener.
//
// Data flows one way: heartbeat and local changes feed the monitor store,
// the store publishes patch and event records on the bus, and the bus
// feeds streams, hooks and waits.
package agent
