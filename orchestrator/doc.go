// Package orchestrator runs the services of the node configs (svc/NAME.conf)
// over the replicated cluster data: it checks every declared instance,
// places failover and flex services on nodes, starts, stops, restarts and
// fails them over, applies service orders, protects against splits with a
// quorum, and derives monitor.services.NAME.
//
// # Wiring
//
// The agent builds one Orchestrator with New, calls Run in a goroutine and
// Close at shutdown, and calls:
//
//   - Notify on every change of the cluster data and of the membership
//     (from its store observer and after SetMember); Notify never blocks;
//   - Forget for `agent node forget`, HasQuorum, and Checked before it
//     sets the node idle at start;
//   - SetService for each service of the initial config snapshot and for
//     each config change of a service file, RemoveService when the file
//     vanished, InvalidService when a file was refused;
//   - Order for POST /v1/services/NAME/ACTION (and forwarded orders);
//   - Done, or monitor.services.NAME.done in the data, for --wait;
//   - Stats for the metrics.
//
// # Decisions
//
// Every agent derives the same decisions from the same data: a node acts
// only on its own instance, by rules that read the replicated data of all
// instances and the membership view.
//
//   - An instance is checked every check_interval (exit 0 up, 1 down, 2
//     warn, else or a timeout unknown); "n/a" means not checked yet.
//   - Candidates are the service's nodes in order ("*": every node holding
//     an instance, by name). A candidate is eligible when it is alive, its
//     node status is idle, it has quorum (quorum.lost false in its data),
//     the node and the instance are not frozen, and the instance is not
//     "start failed" nor "stop failed". A node takes part in decisions when
//     it is present, idle and has quorum.
//   - Each node publishes, in its instance, the hash of its copy of the
//     service config (config_hash) and the failover leader it computes
//     (monitor.leader).
//   - Failover: the leader is the first eligible candidate running the
//     service, else the first eligible candidate. There is no automatic
//     failback: a service that failed over stays where it runs
//     (monitor.services.NAME.placement is then non-optimal) until it stops
//     running there.
//     The leader moves to the status "ready" when the service runs on no
//     present (alive or suspect) node, no other present instance is
//     unchecked, starting, stopping or "stop failed", no candidate before
//     it is ready, every present candidate taking part with the same
//     config hash publishes it as leader (agreement: one node's view of
//     the membership never starts an instance on its own), and, with a
//     Prober, every other present holder answered a probe within half a
//     lease and every absent holder, whatever its last data says, has not
//     answered one for two leases; after ReadyPeriod with those
//     conditions still holding, it starts the instance ("starting").
//   - A node seen leaving gracefully while its instance was up, starting
//     or stopping may still run it (stopping an agent leaves its services
//     running): until it is back, forgotten, or the service is ordered
//     after it left, no failover starts, and a flex service counts that
//     instance towards flex_target (see view.leftRunning;
//     failover_blocked reason left).
//   - Candidates that keep publishing different leaders, or holding
//     different configs, for DisagreeAfter are reported once per episode:
//     placement_change reason disagreement, and Stats.Disagreeing.
//   - Duplicates: a failover service up on two present nodes that take
//     part is confirmed by fresh data before anyone acts (data just after a
//     partition heals is stale): each node up that is not keep (the first
//     eligible node running it) checks again and, still up, publishes a
//     recheck token; every other node up answers it after a check that
//     started once it saw it. When keep's answer is in, every node emits
//     instance_duplicate {nodes, keep} once per episode, and the node that
//     is not keep stops its instance (reason duplicate). It keeps its
//     answered token, marked "/stopped", until its instance runs again: a
//     node that never saw both up (cut off, or its evaluations merged the
//     answer and the stop) reports the duplicate from that record, once.
//   - Flex: the eligible candidates running it are kept first, then the
//     other eligible candidates fill up to flex_target; instances up on
//     present ineligible nodes, or left running, count as placed. A kept instance that is
//     down starts. A running instance not kept stops (reason
//     flex_threshold) one at a time: only the last such node in candidate
//     order, only while no other instance is stopping and the others up
//     still meet the target, and after ReadyPeriod of that. A flex start
//     goes through the ready period too, so that a node that has not yet
//     seen its peers' instances does not start one too many, and waits
//     until every present peer's instance has a check result (an agent
//     back from a restart may be running one).
//   - Start reasons: restart when the service last ran here, failover when
//     it last ran on another node, target otherwise. A start is followed by
//     a check: a start that fails or leaves the instance not up sets
//     "start failed" (instance_start_failed): the node is no longer
//     eligible and the next candidate takes over. A stop is followed by a
//     check too ("stop failed", instance_stop_failed).
//   - A frozen node, a frozen instance or a service whose latest order is
//     freeze is left alone. A node whose status is not idle does nothing
//     but checks; Checked tells the agent when the first check of every
//     service is in the data, before which it keeps the node out of idle.
//
// # Orders
//
// Order sets the global expect of the local instance with the time of the
// order; every node adopts the latest order it sees on any instance (ties
// break on the value), so the latest order wins everywhere. started: the
// placement rules apply (for orchestrate = no: until the service is seen up
// once); stopped: every instance stops and stays stopped until a later
// start or thaw order; frozen: every instance freezes; thawed: every
// instance thaws and the rules apply. start, stop and thaw thaw the
// instances; any order clears the failed statuses.
//
// # Quorum
//
// With Quorum, a node whose status is idle counts the nodes it is in
// contact with (itself, and the present peers that, with a Prober, have
// not left their probes unanswered for a whole Lease) against the quorum
// base: ClusterNodes when set, else the largest high-water mark among this
// node and its present peers. The high-water mark is the number of nodes
// this node has seen alive (itself included), kept in the store's
// persistent state and published as quorum.hwm; it is lowered only by a
// graceful leave or by Forget, and every node applies the departures it
// reads in any node's quorum.departed. Without a strict majority a node
// emits quorum_lost, publishes quorum.lost, applies the split action
// (stop: stop its orchestrate = ha instances, reason split; freeze: freeze
// the node; none: nothing) and orchestrates nothing else until
// quorum_regained.
//
// # Events
//
// service_add, service_remove, service_config_change (reason config, or
// invalid), instance_status_change (check), instance_start and
// instance_stop (target, failover, restart, flex_threshold, split; stop
// also duplicate), instance_start_failed and instance_stop_failed (the
// reason of the attempt), instance_duplicate (check; nodes and keep),
// failover_blocked (left: left, since), global_expect_change,
// instance_freeze and instance_thaw (cli on the node given the order,
// peer elsewhere), placement_change (placement:
// leader and previous; disagreement: leader, leaders, config_hashes,
// since), quorum_lost and quorum_regained (membership), forget_peer (cli,
// emitted by the store). Instance events carry svcname, node, and the
// snapshots instance (this node's), service (the summary) and monitor
// (this node's status and frozen).
//
// # Concurrency
//
// One goroutine (Run) owns the decisions and the per-instance memory; the
// commands and the probes run in goroutines Run owns and waits for.
// SetService, RemoveService, InvalidService, Order, Forget, Done, Checked,
// HasQuorum, Stats and Notify are safe for concurrent use. Lock order:
// Orchestrator.mu and Orchestrator.qmu are never held together nor while
// calling the store.
package orchestrator
