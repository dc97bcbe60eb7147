// Package integration holds the real-process tests of the agent: they build
// the agent binary once, start several `agent daemon run` processes, each
// with its own --root and heartbeat address on 127.0.0.N, and drive them
// only as a user would, through the command line and the websocket stream.
//
// Every wait is on a condition with a deadline; no test asserts a
// wall-clock time. The fault tests (netns_test.go) need root, iproute2 and
// nftables: they create a network namespace of their own and drop traffic
// with nft rules inside it. Without those they skip, unless
// AGENT_REQUIRE_FAULT_TESTS=1 makes the absence a failure. The soak test
// runs only when AGENT_SOAK names a duration (AGENT_SOAK=10m).
package integration
