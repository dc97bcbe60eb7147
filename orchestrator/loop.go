package orchestrator

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"agent/config"
	"agent/monitor"
)

// availNotChecked is the avail of an instance whose first check has not
// finished. A failover start waits until every present instance is checked.
const availNotChecked = AvailNA

// evaluate looks at the cluster data once: it makes the local instances,
// checks the quorum, adopts orders, decides and launches commands, and
// publishes the service summaries. It returns how long the loop may sleep.
// Run goroutine only.
func (o *Orchestrator) evaluate(ctx context.Context) time.Duration {
	now := o.cfg.Now()
	next := o.cfg.Tick
	o.mu.Lock()
	services := make(map[string]*config.Service, len(o.services))
	for n, s := range o.services {
		services[n] = s
	}
	removing := make(map[string]*config.Service, len(o.removing))
	for n, s := range o.removing {
		removing[n] = s
	}
	o.mu.Unlock()
	o.stats.services.Store(int64(len(services)))

	v := o.readView()
	for name := range services {
		if _, ok := v.instance(o.cfg.Nodename, name); !ok {
			_ = o.ensureInstance(v, name) // logged; tried again at the next evaluation
			v = o.readView()
		}
	}
	o.trackMembers(v)
	v = o.readView()
	if o.cfg.Quorum && v.nodes[o.cfg.Nodename].Status == monitor.StatusIdle {
		o.checkQuorum(v)
		v = o.readView()
	}
	names := slices.Sorted(maps.Keys(services))
	for _, name := range names {
		if d := o.service(ctx, v, services[name], now); d < next {
			next = d
		}
		v = o.readView()
	}
	for name, s := range removing {
		o.removeStep(ctx, v, s)
		v = o.readView()
		_ = name
	}
	o.publishSummaries(v, services)
	o.stats.dupsActive.Store(int64(len(o.dups)))
	n := 0
	for _, d := range o.disagree {
		if d.reported {
			n++
		}
	}
	o.stats.disagreeing.Store(int64(n))
	if next < time.Millisecond {
		next = time.Millisecond
	}
	return next
}

// ensureInstance adds this node's instance of svc to its data, not yet
// checked.
func (o *Orchestrator) ensureInstance(_ *view, svc string) error {
	_, _, err := o.store.UpdateLocal("orchestrator", func(d *monitor.NodeData) {
		if d.Services == nil {
			d.Services = map[string]monitor.Instance{}
		}
		if _, ok := d.Services[svc]; !ok {
			d.Services[svc] = monitor.Instance{Avail: availNotChecked, Monitor: monitor.InstanceMonitor{Status: StatusIdle}}
		}
	})
	if err != nil {
		o.log.Error("add instance", logKeyService, svc, logKeyErr, err)
	}
	return err
}

// updateInstance changes this node's instance of svc with fn, if it
// exists, and reports whether anything changed.
func (o *Orchestrator) updateInstance(svc string, fn func(i *monitor.Instance)) bool {
	changed, err := o.tryUpdateInstance(svc, fn)
	if err != nil {
		o.log.Error("update instance", logKeyService, svc, logKeyErr, err)
	}
	return changed
}

// tryUpdateInstance is updateInstance returning the error: a change the
// store refuses (over max_data, state not saved) is not made.
func (o *Orchestrator) tryUpdateInstance(svc string, fn func(i *monitor.Instance)) (bool, error) {
	_, changed, err := o.store.UpdateLocal("orchestrator", func(d *monitor.NodeData) {
		i, ok := d.Services[svc]
		if !ok {
			return
		}
		fn(&i)
		d.Services[svc] = i
	})
	return changed, err
}

// adopt makes (ge, at) the global expect of this node's instance of s if
// it is later than the one it holds, applying what it means to the
// instance: frozen freezes it; thawed, started and stopped thaw it; any
// order clears a failed status. Called from Order and from the Run loop:
// the check of "later" happens inside UpdateLocal, so the two never undo
// each other.
func (o *Orchestrator) adopt(_ *view, s *config.Service, ge string, at time.Time, reason string) error {
	var froze, thawed, adopted bool
	now := o.cfg.Now()
	_, err := o.tryUpdateInstance(s.Name, func(i *monitor.Instance) {
		if !at.After(i.Monitor.GlobalExpectUpdated) {
			return
		}
		adopted = true
		i.Monitor.GlobalExpect, i.Monitor.GlobalExpectUpdated = ge, at
		if i.Monitor.Status == StatusStartFailed || i.Monitor.Status == StatusStopFailed {
			i.Monitor.Status = StatusIdle
		}
		switch {
		case ge == ExpectFrozen && i.Frozen == 0:
			i.Frozen = now.Unix()
			froze = true
		case ge != ExpectFrozen && i.Frozen != 0:
			i.Frozen = 0
			thawed = true
		}
	})
	if err != nil {
		o.log.Error("order not adopted", logKeyService, s.Name, "global_expect", ge, logKeyErr, err)
		return err
	}
	if !adopted {
		return nil
	}
	o.emit(EventGlobalExpectChange, reason, s.Name, map[string]any{"global_expect": ge})
	if froze {
		o.emit(EventInstanceFreeze, reason, s.Name, nil)
	}
	if thawed {
		o.emit(EventInstanceThaw, reason, s.Name, nil)
	}
	return nil
}

// service evaluates one declared service. It returns how long until it
// needs another look.
func (o *Orchestrator) service(ctx context.Context, v *view, s *config.Service, now time.Time) time.Duration {
	self := o.cfg.Nodename
	st := o.local[s.Name]
	if st == nil {
		st = &local{}
		o.local[s.Name] = st
	}
	inst, ok := v.instance(self, s.Name)
	if !ok {
		return o.cfg.Tick
	}
	if ge, at := v.latestExpect(s.Name); at.After(inst.Monitor.GlobalExpectUpdated) {
		_ = o.adopt(v, s, ge, at, ReasonPeer) // logged; tried again at the next evaluation
		v = o.readView()
		inst, _ = v.instance(self, s.Name)
	}
	p := v.place(s)
	if s.Topology != config.Flex && p.leader != o.leaders[s.Name] {
		prev := o.leaders[s.Name]
		o.leaders[s.Name] = p.leader
		o.emit(EventPlacementChange, ReasonPlacement, s.Name, map[string]any{"leader": p.leader, "previous": prev})
	}
	if v.running(self, s.Name) {
		o.lastUp[s.Name] = self
	} else {
		for _, n := range v.holders(s.Name) {
			if v.running(n, s.Name) {
				o.lastUp[s.Name] = n
				break
			}
		}
	}
	want := ""
	if p.targets[self] {
		want = PlacementLeader
	}
	leader := ""
	if s.Topology != config.Flex {
		leader = p.leader
	}
	hash := o.hashOf(s)
	if inst.Monitor.Placement != want || inst.Monitor.Leader != leader || inst.ConfigHash != hash {
		o.updateInstance(s.Name, func(i *monitor.Instance) {
			i.Monitor.Placement, i.Monitor.Leader, i.ConfigHash = want, leader, hash
		})
		v = o.readView()
		inst, _ = v.instance(self, s.Name)
	}
	o.watchAgreement(v, s, hash, leader, now)
	st.leftRunning = o.publishLeftRunning(v, s, inst)
	acted := o.duplicates(ctx, v, s, st, inst, now)
	if acted {
		v = o.readView()
		inst, _ = v.instance(self, s.Name)
	}
	if !st.busy && (st.checkNow || !now.Before(st.nextCheck)) {
		st.nextCheck = now.Add(s.CheckInterval)
		o.launch(ctx, s, st, ActionCheck, "")
	}
	if !st.busy {
		o.decide(ctx, v, s, p, hash, st, inst, now)
	}
	next := o.cfg.Tick
	if d := o.disagreeNext(s.Name, now); d < next {
		next = d
	}
	if !st.surplusSince.IsZero() {
		if d := st.surplusSince.Add(o.cfg.ReadyPeriod).Sub(now); d < next {
			next = d
		}
	}
	if !st.busy {
		if d := st.nextCheck.Sub(now); d < next {
			next = d
		}
	}
	if !st.readySince.IsZero() {
		if d := st.readySince.Add(o.cfg.ReadyPeriod).Sub(now); d < next {
			next = d
		}
	}
	return next
}

// decide starts or stops the local instance of s, or moves it through the
// ready status, by the rules of the package doc. Run goroutine only.
func (o *Orchestrator) decide(ctx context.Context, v *view, s *config.Service, p placement, hash string, st *local, inst monitor.Instance, now time.Time) {
	self := o.cfg.Nodename
	node := v.nodes[self]
	up := isUp(inst.Avail)
	if !o.quorum {
		o.unready(s.Name, st, inst)
		if o.cfg.SplitAction == config.SplitStop && s.Orchestrate == config.OrchestrateHA && up {
			o.act(ctx, s, st, ActionStop, ReasonSplit)
		}
		return
	}
	if node.Status != monitor.StatusIdle || node.Frozen != 0 || inst.Frozen != 0 || v.frozen(s.Name) || inst.Avail == availNotChecked {
		o.unready(s.Name, st, inst)
		return
	}
	ge, at := inst.Monitor.GlobalExpect, inst.Monitor.GlobalExpectUpdated
	if ge == ExpectStopped {
		o.unready(s.Name, st, inst)
		if up && inst.Monitor.Status != StatusStopFailed {
			o.act(ctx, s, st, ActionStop, ReasonTarget)
		}
		return
	}
	if s.Orchestrate != config.OrchestrateHA {
		// Only an order acts, until the service is seen up once after it.
		if ge != ExpectStarted || st.handled.Equal(at) {
			o.unready(s.Name, st, inst)
			return
		}
		if sum := v.summarize(s.Name, s); sum.Avail == AvailUp {
			st.handled = at
			o.unready(s.Name, st, inst)
			return
		}
	}
	flex := s.Topology == config.Flex
	if !p.targets[self] {
		o.unready(s.Name, st, inst)
		// A failover instance running besides the leader's is a
		// duplicate: see duplicates.
		if flex && up && v.eligible(self, s.Name) && o.surplusTurn(v, s, p, st, now) {
			o.act(ctx, s, st, ActionStop, ReasonFlexThreshold)
			return
		}
		if !flex || !up {
			st.surplusSince = time.Time{}
		}
		return
	}
	st.surplusSince = time.Time{}
	if up || (!flex && !o.mayStartFailover(v, s, hash, p)) || (flex && v.unchecked(s.Name) != "") {
		o.unready(s.Name, st, inst)
		return
	}
	if inst.Monitor.Status != StatusReady {
		st.readySince = now
		o.updateInstance(s.Name, func(i *monitor.Instance) { i.Monitor.Status = StatusReady })
		return
	}
	if st.readySince.IsZero() {
		st.readySince = now
	}
	if now.Sub(st.readySince) < o.cfg.ReadyPeriod {
		return
	}
	reason := ReasonTarget
	switch last := o.lastUp[s.Name]; {
	case flex:
		reason = ReasonFlexThreshold
	case last == self:
		reason = ReasonRestart
	case last != "":
		reason = ReasonFailover
	}
	o.act(ctx, s, st, ActionStart, reason)
}

// mayStartFailover reports whether this node, the leader it computes for
// failover service s, may start it now (SPEC section 9, "One failover
// instance"): no present instance is up, unchecked, starting, stopping,
// failed to stop or ready before it (startBlocker); every present
// candidate taking part with the same config publishes this node as the
// leader; and no node left gracefully with the service running
// (leftRunning). With probes (quorum = true), also:
//   - every other present holder of s answered a probe within half a
//     lease: the agreement is only as fresh as their data, and a node cut
//     off since must not start on it;
//   - every absent holder has not answered a probe of this node for two
//     leases, whatever its last data says: it has had time to see itself
//     cut off (a lease) and stop. Its last data here may be older than its
//     state: ready, about to start, with the delta that said so lost in
//     the cut.
func (o *Orchestrator) mayStartFailover(v *view, s *config.Service, hash string, p placement) bool {
	if p.leader != o.cfg.Nodename || v.startBlocker(s, hash) != "" || !v.agreed(s, hash, p.leader) || len(o.local[s.Name].leftRunning) > 0 {
		return false
	}
	if o.contact == nil {
		return true
	}
	now := o.cfg.Now()
	for _, n := range v.holders(s.Name) {
		switch {
		case n == o.cfg.Nodename:
		case v.present(n):
			if !o.contact.answeredWithin(n, o.cfg.Lease/2, now) {
				return false
			}
		case o.contact.answeredWithin(n, 2*o.cfg.Lease, now):
			return false
		}
	}
	return true
}

// surplusTurn reports whether this node's running flex instance of s,
// beyond the target, is the one to stop now: the instances up on present
// nodes (not stopping, not on a node cut off from the majority) exceed
// flex_target, no other instance is stopping, this node is the last, in
// candidate order, of the eligible nodes running it that the placement
// does not keep, and all that has held for ReadyPeriod. One stop at a
// time, so that nodes with different views never stop together below the
// target.
func (o *Orchestrator) surplusTurn(v *view, s *config.Service, p placement, st *local, now time.Time) bool {
	up, last := 0, ""
	for _, n := range v.holders(s.Name) {
		if !v.present(n) {
			continue
		}
		i, _ := v.instance(n, s.Name)
		if i.Monitor.Status == StatusStopping && n != v.self {
			st.surplusSince = time.Time{}
			return false
		}
		if isUp(i.Avail) && i.Monitor.Status != StatusStopping && !v.nodes[n].Quorum.Lost {
			up++
		}
	}
	for _, n := range v.candidates(s) {
		if !p.targets[n] && v.eligible(n, s.Name) && v.running(n, s.Name) {
			last = n
		}
	}
	if up-1 < s.FlexTarget || last != v.self {
		st.surplusSince = time.Time{}
		return false
	}
	if st.surplusSince.IsZero() {
		st.surplusSince = now
	}
	return now.Sub(st.surplusSince) >= o.cfg.ReadyPeriod
}

// hashOf returns the config hash of the declared service s.
func (o *Orchestrator) hashOf(s *config.Service) string {
	o.mu.Lock()
	h, ok := o.hashes[s.Name]
	o.mu.Unlock()
	if !ok {
		h = ConfigHash(s)
	}
	return h
}

// unready takes the local instance out of the ready status.
func (o *Orchestrator) unready(svc string, st *local, inst monitor.Instance) {
	st.readySince = time.Time{}
	if inst.Monitor.Status == StatusReady {
		o.updateInstance(svc, func(i *monitor.Instance) {
			if i.Monitor.Status == StatusReady {
				i.Monitor.Status = StatusIdle
			}
		})
	}
}

// act sets the transition status, emits instance_start or instance_stop
// and launches the command.
func (o *Orchestrator) act(ctx context.Context, s *config.Service, st *local, action, reason string) {
	status, id := StatusStarting, EventInstanceStart
	if action == ActionStop {
		status, id = StatusStopping, EventInstanceStop
	}
	st.readySince = time.Time{}
	// Counted before the record goes out, so whoever sees the record
	// also sees the count.
	switch {
	case action == ActionStop:
		o.stats.stops.Add(1)
	default:
		o.stats.starts.Add(1)
		switch reason {
		case ReasonFailover:
			o.stats.failovers.Add(1)
		case ReasonRestart:
			o.stats.restarts.Add(1)
		}
	}
	o.updateInstance(s.Name, func(i *monitor.Instance) { i.Monitor.Status = status })
	o.emit(id, reason, s.Name, nil)
	o.log.Info("instance "+action, logKeyService, s.Name, logKeyReason, reason)
	o.launch(ctx, s, st, action, reason)
}

// launch runs one command in a goroutine owned by the orchestrator (Run
// waits for it); a start or a stop is followed by a check, so the avail
// the data shows after it is measured, not assumed.
func (o *Orchestrator) launch(ctx context.Context, s *config.Service, st *local, action, reason string) {
	argv := s.Check
	switch action {
	case ActionStart:
		argv = s.Start
	case ActionStop:
		argv = s.Stop
	}
	st.busy = true
	var answers map[string]string
	own := false
	if action == ActionCheck {
		answers, own = st.checkFor, st.checkOwn
		st.checkFor, st.checkNow = nil, false
	}
	name, check, env, timeout := s.Name, s.Check, s.Env, s.Timeout
	o.cmds.Add(1)
	go func() {
		defer o.cmds.Done()
		r := result{svc: name, action: action, reason: reason, answers: answers, own: own}
		r.code, r.err = o.cfg.Runner.Run(ctx, Command{Service: name, Action: action, Argv: argv,
			Env: commandEnv(env, o.cfg.Nodename, name, action), Timeout: timeout})
		if action != ActionCheck && ctx.Err() == nil {
			o.stats.checks.Add(1)
			r.checkCode, r.checkErr = o.cfg.Runner.Run(ctx, Command{Service: name, Action: ActionCheck, Argv: check,
				Env: commandEnv(env, o.cfg.Nodename, name, ActionCheck), Timeout: timeout})
		}
		if action == ActionCheck {
			o.stats.checks.Add(1)
		}
		if ctx.Err() != nil {
			// Cut short by this agent's own stop: the outcome says
			// nothing about the service, which keeps running (a graceful
			// leave must publish the last real check, not "down").
			return
		}
		select {
		case o.results <- r:
		case <-ctx.Done():
		}
	}()
}

// availOf maps a check's outcome to an avail.
func availOf(code int, err error) string {
	if err != nil {
		return AvailUnknown
	}
	switch code {
	case 0:
		return AvailUp
	case 1:
		return AvailDown
	case 2:
		return AvailWarn
	}
	return AvailUnknown
}

// handle applies a command's result to the local instance. Run goroutine
// only.
func (o *Orchestrator) handle(r result) {
	now := o.cfg.Now()
	st := o.local[r.svc]
	if st != nil {
		st.busy = false
	}
	if r.action == ActionCheck {
		avail := availOf(r.code, r.err)
		if avail == AvailUnknown {
			o.stats.checkErrors.Add(1)
		}
		if st != nil && r.own {
			st.checkOwn = false
		}
		o.setAvail(r, avail, now)
		return
	}
	if st != nil {
		st.nextCheck = now.Add(o.checkInterval(r.svc))
	}
	avail := availOf(r.checkCode, r.checkErr)
	if avail == AvailUnknown {
		o.stats.checkErrors.Add(1)
	}
	ok := r.err == nil && r.code == 0
	status, failID := StatusIdle, ""
	if r.action == ActionStart {
		ok = ok && isUp(avail)
		if !ok {
			status, failID = StatusStartFailed, EventInstanceStartFailed
			o.stats.startFailures.Add(1)
		}
	} else {
		ok = ok && !isUp(avail)
		if !ok {
			status, failID = StatusStopFailed, EventInstanceStopFailed
			o.stats.stopFailures.Add(1)
		}
	}
	prev := ""
	o.updateInstance(r.svc, func(i *monitor.Instance) {
		prev = i.Avail
		i.Monitor.Status = status
		if i.Avail != avail {
			i.Avail, i.Updated = avail, now.UTC()
		}
	})
	if prev != avail {
		o.emit(EventInstanceStatusChange, ReasonCheck, r.svc, map[string]any{"previous": prev})
	}
	if failID != "" {
		extra := map[string]any{"exit": r.code}
		if r.err != nil {
			extra["error"] = r.err.Error()
		}
		o.emit(failID, r.reason, r.svc, extra)
		o.log.Warn("instance "+r.action+" failed", logKeyService, r.svc, logKeyReason, r.reason, logKeyExit, r.code, "avail", avail, logKeyErr, r.err)
	}
}

// setAvail records a check's avail on the local instance, with the
// recheck answers the check makes, emitting instance_status_change when
// the avail changed.
func (o *Orchestrator) setAvail(r result, avail string, now time.Time) {
	prev, found := "", false
	o.updateInstance(r.svc, func(i *monitor.Instance) {
		prev, found = i.Avail, true
		if i.Avail != avail {
			i.Avail, i.Updated = avail, now.UTC()
		}
		recheckAnswers(i, r, avail, now)
	})
	if found && prev != avail {
		o.emit(EventInstanceStatusChange, ReasonCheck, r.svc, map[string]any{"previous": prev})
	}
}

func (o *Orchestrator) checkInterval(svc string) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.services[svc]; ok {
		return s.CheckInterval
	}
	return config.DefaultCheckInterval
}

// removeStep moves a removed service towards its end: stop the local
// instance if it runs (once), then drop it from the data.
func (o *Orchestrator) removeStep(ctx context.Context, v *view, s *config.Service) {
	st := o.local[s.Name]
	if st == nil {
		st = &local{}
		o.local[s.Name] = st
	}
	if st.busy {
		return
	}
	inst, ok := v.instance(o.cfg.Nodename, s.Name)
	node := v.nodes[o.cfg.Nodename]
	if ok && !st.stopTried && isUp(inst.Avail) && s.Orchestrate == config.OrchestrateHA && node.Frozen == 0 && inst.Frozen == 0 {
		st.stopTried = true
		o.act(ctx, s, st, ActionStop, ReasonTarget)
		return
	}
	o.mu.Lock()
	still := o.removing[s.Name] == s
	if still {
		delete(o.removing, s.Name)
	}
	o.mu.Unlock()
	if !still {
		return
	}
	delete(o.local, s.Name)
	delete(o.leaders, s.Name)
	delete(o.lastUp, s.Name)
	if _, _, err := o.store.UpdateLocal("orchestrator", func(d *monitor.NodeData) { delete(d.Services, s.Name) }); err != nil {
		o.log.Error("drop instance", logKeyService, s.Name, logKeyErr, err)
	}
}

// publishSummaries sets monitor.services.NAME for every service any node
// holds an instance of, and removes the summaries of the others.
func (o *Orchestrator) publishSummaries(v *view, services map[string]*config.Service) {
	names := map[string]bool{}
	for _, d := range v.nodes {
		for n := range d.Services {
			names[n] = true
		}
	}
	if o.published == nil {
		o.published = map[string]bool{}
	}
	for n := range names {
		raw, err := json.Marshal(v.summarize(n, services[n]))
		if err == nil {
			err = o.store.SetService(n, raw)
		}
		if err != nil {
			o.log.Error("publish service summary", logKeyService, n, logKeyErr, err)
			continue
		}
		o.published[n] = true
	}
	for n := range o.published {
		if !names[n] {
			_ = o.store.SetService(n, nil)
			delete(o.published, n)
		}
	}
}
