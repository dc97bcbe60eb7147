// Package metrics exposes the agent's figures in the Prometheus text format
// (SPEC section 8, GET /metrics on the listener).
//
// Nothing runs in the background: the agent fills Sources with functions
// that return its subsystems' current counters, and every scrape calls them
// (each at most once per scrape, from the scraping goroutine). A nil source
// is skipped, so the agent can wire subsystems as they exist. The registry is
// private to a Metrics: it holds the agent_* collectors plus the Go runtime
// (go_*) and process (process_*) collectors, and nothing registered
// elsewhere in the binary leaks into it.
//
// Event records are counted by id through CountEvent, which the agent calls
// where it publishes an event record (the bus counts records by kind only).
// CountEvent is safe for concurrent use and does not allocate for an id it
// has seen; the number of distinct ids is bounded (MaxEventIDs), the rest
// are counted under the id "other".
//
// A scrape that meets an inconsistent metric (an orchestrator counter whose
// name clashes with another) still answers with everything else.
package metrics
