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
//     node status is idle, the node and the instance are not frozen, and
//     the instance is not "start failed" nor "stop failed".
//   - Failover: the leader is the first eligible candidate running the
//     service, else the first eligible candidate. There is no automatic
//     failback: a service that failed over stays where it runs
//     (monitor.services.NAME.placement is then non-optimal) until it stops
//     running there.
//     The leader moves to the status "ready" when the service runs on no
//     present (alive or suspect) node, no other present instance is
//     unchecked, starting, stopping or "stop failed", and no candidate
//     before it is ready; after ReadyPeriod with those conditions still
//     holding, it starts the instance ("starting"). Two failover instances
//     can thus only both start if a change takes longer than ReadyPeriod
//     to replicate. Two instances up (after a split without quorum) are
//     not stopped automatically: data just after a partition heals is
//     stale, and the summary's overall shows warn until an operator acts.
//   - Flex: the eligible candidates running it are kept first, then the
//     other eligible candidates fill up to flex_target; instances up on
//     present ineligible nodes count as placed. A kept instance that is
//     down starts, an eligible running instance not kept stops (reason
//     flex_threshold). A flex start goes through the ready period too, so
//     that a node that has not yet seen its peers' instances does not start
//     one too many; only the failover start checks the other instances.
//   - Start reasons: restart when the service last ran here, failover when
//     it last ran on another node, target otherwise. A start is followed by
//     a check: a start that fails or leaves the instance not up sets
//     "start failed" (instance_start_failed): the node is no longer
//     eligible and the next candidate takes over. A stop is followed by a
//     check too ("stop failed", instance_stop_failed).
//   - A frozen node, a frozen instance or a service whose latest order is
//     freeze is left alone. A node whose status is not idle does nothing
//     but checks.
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
// With Quorum, a node whose status is idle counts the present nodes (alive
// or suspect) among the cluster nodes (ClusterNodes, or the membership
// minus the nodes that left, plus itself). Without a strict majority it
// emits quorum_lost and applies the split action (stop: stop its
// orchestrate = ha instances, reason split; freeze: freeze the node; none:
// nothing) and orchestrates nothing else until quorum_regained.
//
// # Events
//
// service_add, service_remove, service_config_change (reason config, or
// invalid), instance_status_change (check), instance_start and
// instance_stop (target, failover, restart, flex_threshold, split),
// instance_start_failed and instance_stop_failed (the reason of the
// attempt), global_expect_change, instance_freeze and instance_thaw (cli
// on the node given the order, peer elsewhere), placement_change
// (placement; leader and previous), quorum_lost and quorum_regained
// (membership). Instance events carry svcname, node, and the snapshots
// instance (this node's), service (the summary) and monitor (this node's
// status and frozen).
//
// # Concurrency
//
// One goroutine (Run) owns the decisions and the per-instance memory; the
// commands run in goroutines Run owns and waits for. SetService,
// RemoveService, InvalidService, Order, Done, Stats and Notify are safe
// for concurrent use. Lock order: Orchestrator.mu is never held while
// calling the store.
package orchestrator
