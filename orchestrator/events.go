package orchestrator

// Event ids this package emits (SPEC section 4).
const (
	EventServiceAdd           = "service_add"
	EventServiceRemove        = "service_remove"
	EventServiceConfigChange  = "service_config_change"
	EventInstanceStatusChange = "instance_status_change"
	EventInstanceStart        = "instance_start"
	EventInstanceStop         = "instance_stop"
	EventInstanceStartFailed  = "instance_start_failed"
	EventInstanceStopFailed   = "instance_stop_failed"
	EventInstanceFreeze       = "instance_freeze"
	EventInstanceThaw         = "instance_thaw"
	EventGlobalExpectChange   = "global_expect_change"
	EventPlacementChange      = "placement_change"
	EventQuorumLost           = "quorum_lost"
	EventQuorumRegained       = "quorum_regained"
	EventInstanceDuplicate    = "instance_duplicate"
	EventForgetPeer           = "forget_peer"
)

// Event reasons.
const (
	// ReasonTarget: an order (global expect), or the first placement of a
	// service that never ran.
	ReasonTarget = "target"
	// ReasonFailover: the service ran on another node that is gone or no
	// longer eligible.
	ReasonFailover = "failover"
	// ReasonRestart: the service ran here and its check found it down.
	ReasonRestart = "restart"
	// ReasonFlexThreshold: a flex service has too few or too many
	// instances up.
	ReasonFlexThreshold = "flex_threshold"
	// ReasonSplit: this node lost the quorum.
	ReasonSplit = "split"
	// ReasonConfig: a service config file appeared, changed or vanished.
	ReasonConfig = "config"
	// ReasonInvalid: a service config file was refused.
	ReasonInvalid = "invalid"
	// ReasonCheck: a check changed an instance's avail.
	ReasonCheck = "check"
	// ReasonCLI: an order given on this node.
	ReasonCLI = "cli"
	// ReasonPeer: an order given on another node, adopted here.
	ReasonPeer = "peer"
	// ReasonPlacement: the placement rules chose another leader.
	ReasonPlacement = "placement"
	// ReasonMembership: the membership view changed the quorum.
	ReasonMembership = "membership"
	// ReasonDuplicate: a failover instance was up beside the one kept.
	ReasonDuplicate = "duplicate"
	// ReasonDisagreement: the candidates of a service publish different
	// leaders (or hold different configs) for longer than DisagreeAfter.
	ReasonDisagreement = "disagreement"
)

// emit publishes an instance or service event with the snapshots of this
// node's instance of svc, the service summary and this node's monitor
// status, plus extra fields.
func (o *Orchestrator) emit(id, reason, svc string, extra map[string]any) {
	v := o.readView()
	o.mu.Lock()
	s := o.services[svc]
	if s == nil {
		s = o.removing[svc]
	}
	o.mu.Unlock()
	d := v.nodes[o.cfg.Nodename]
	ev := map[string]any{
		"id":      id,
		"reason":  reason,
		"svcname": svc,
		"node":    o.cfg.Nodename,
		"service": v.summarize(svc, s),
		"monitor": nodeMonitor{Status: d.Status, Frozen: d.Frozen},
	}
	if i, ok := v.instance(o.cfg.Nodename, svc); ok {
		ev["instance"] = i
	}
	for k, x := range extra {
		ev[k] = x
	}
	o.store.Event(ev)
}

// nodeMonitor is the node part of an event's snapshots.
type nodeMonitor struct {
	Status string `json:"status"`
	Frozen int64  `json:"frozen"`
}
