package monitor

import (
	"maps"
	"time"
)

// Node status values (SPEC section 3).
const (
	StatusInit         = "init"
	StatusIdle         = "idle"
	StatusRejoin       = "rejoin"
	StatusShuttingDown = "shutting down"
)

// Membership states of cluster.nodes.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// NodeData is monitor.nodes.N: the data node N owns and every agent copies.
type NodeData struct {
	// Gen counts the node's changes; a receiver applies a delta only on top
	// of the generation it holds.
	Gen uint64 `json:"gen"`
	// Status is the node's daemon status: init, idle, rejoin, shutting down.
	Status string `json:"status"`
	// StatusUpdated is when Status last changed.
	StatusUpdated time.Time `json:"status_updated"`
	// Frozen is 0 when thawed, else the unix time the node was frozen.
	Frozen int64 `json:"frozen"`
	// Labels are the free key=value pairs of node.conf.
	Labels map[string]string `json:"labels"`
	// Stats are rounded so that noise does not become patches.
	Stats Stats `json:"stats"`
	// Services holds this node's instance of each service.
	Services map[string]Instance `json:"services"`
	// Quorum is what this node knows of the cluster's quorum: the size
	// high-water mark, whether it sees a majority, and the departures it
	// has seen (SPEC section 9, "Quorum cannot be regained by forgetting").
	Quorum Quorum `json:"quorum"`
}

// Quorum is monitor.nodes.N.quorum.
type Quorum struct {
	// HWM is the largest cluster size this node has seen: itself plus
	// every node it has seen alive, less those that left gracefully or
	// were removed by `agent node forget`. Without [cluster] nodes it is
	// the quorum base, and every node uses the largest HWM among itself
	// and its present peers.
	HWM int `json:"hwm"`
	// Lost is true while this node, with quorum = true, sees no majority:
	// it orchestrates nothing, and no peer counts on it.
	Lost bool `json:"lost"`
	// Departed are the nodes this node saw leave gracefully or was told
	// to forget, with when and why ("left" or "cli"). Every node applies
	// the departures it reads in any node's data, so that one that missed
	// a leave or a forget order lowers its HWM too.
	Departed map[string]Departure `json:"departed,omitempty"`
}

// Departure is one entry of Quorum.Departed.
type Departure struct {
	// At is when this node saw the departure.
	At time.Time `json:"at"`
	// Reason is "left" (a graceful leave) or "cli" (agent node forget).
	Reason string `json:"reason"`
}

// Stats are the periodic measures of a node, rounded to meaningful steps.
type Stats struct {
	// Load15m is the 15-minute load average, rounded to 0.1.
	Load15m float64 `json:"load_15m"`
	// MemAvailPct is the available memory in percent, rounded to 1.
	MemAvailPct int `json:"mem_avail_pct"`
}

// Instance is a node's instance of a service: monitor.nodes.N.services.S.
type Instance struct {
	// Avail is the result of the last check: up, down, warn, unknown, n/a.
	Avail string `json:"avail"`
	// ConfigHash identifies the service config this node runs: nodes that
	// agree on placement must hold the same config.
	ConfigHash string `json:"config_hash,omitempty"`
	// Frozen is 0 when thawed, else the unix time the instance was frozen.
	Frozen int64 `json:"frozen"`
	// Monitor is the orchestration state of the instance.
	Monitor InstanceMonitor `json:"monitor"`
	// Updated is when Avail last changed.
	Updated time.Time `json:"updated"`
}

// InstanceMonitor is the orchestration state of one instance.
type InstanceMonitor struct {
	// Status: idle, starting, stopping, start failed, stop failed, ready,
	// wait leader.
	Status string `json:"status"`
	// GlobalExpect is the service-wide order this node last adopted:
	// started, stopped, frozen, thawed, or "" for none.
	GlobalExpect string `json:"global_expect"`
	// GlobalExpectUpdated is when that order was given; the latest order
	// wins everywhere.
	GlobalExpectUpdated time.Time `json:"global_expect_updated"`
	// Placement is leader or "" (non-leader) for the instance.
	Placement string `json:"placement"`
	// Leader is the failover leader this node computes for the service
	// ("" for flex, or when no node is eligible). A node starts a
	// failover instance only when every alive candidate publishes it.
	Leader string `json:"leader,omitempty"`
	// Recheck is a token this node publishes when it sees its instance up
	// beside another (a duplicate): the node that keeps the service
	// answers it, after a fresh check, in Rechecked.
	Recheck string `json:"recheck,omitempty"`
	// Rechecked maps a node that asked for a recheck to the token this
	// node answered, after a check that started once it saw the request.
	Rechecked map[string]string `json:"rechecked,omitempty"`
	// LeftRunning are the nodes seen leaving gracefully while their
	// instance was up, starting or stopping, with when they left: their
	// instance may still run (stopping an agent leaves its services
	// running), so no failover starts until they return, are forgotten,
	// or a later order is given.
	LeftRunning map[string]time.Time `json:"left_running,omitempty"`
}

// Member is one entry of cluster.nodes: this agent's view of a node's
// membership.
type Member struct {
	// State: alive, suspect, dead, left.
	State string `json:"state"`
	// Addr is the node's heartbeat address host:port.
	Addr string `json:"addr"`
	// Since is when State last changed.
	Since time.Time `json:"since"`
}

// Clone returns a deep copy, so that a caller's changes never reach data
// the store has published.
func (d NodeData) Clone() NodeData {
	c := d
	if d.Labels != nil {
		c.Labels = make(map[string]string, len(d.Labels))
		for k, v := range d.Labels {
			c.Labels[k] = v
		}
	}
	if d.Services != nil {
		c.Services = make(map[string]Instance, len(d.Services))
		for k, v := range d.Services {
			if v.Monitor.Rechecked != nil {
				v.Monitor.Rechecked = maps.Clone(v.Monitor.Rechecked)
			}
			if v.Monitor.LeftRunning != nil {
				v.Monitor.LeftRunning = maps.Clone(v.Monitor.LeftRunning)
			}
			c.Services[k] = v
		}
	}
	if d.Quorum.Departed != nil {
		c.Quorum.Departed = maps.Clone(d.Quorum.Departed)
	}
	return c
}
