package orchestrator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"agent/config"
	"agent/monitor"
)

// dupEpisode is a duplicate of a failover service as this node sees it,
// from the moment two present instances are up until one is left. Run
// goroutine only.
type dupEpisode struct {
	since    time.Time
	reported bool // instance_duplicate emitted
}

// duplicate is what the data says of the instances of a failover service
// that are up.
type duplicate struct {
	// up are the present nodes whose instance is up or warn, in
	// candidate order (then the other holders by name).
	up []string
	// keep is the node that keeps the service: the first eligible node
	// of up (the placement leader), else the first of up.
	keep string
	// settled: every node of up takes part in decisions (idle, first
	// checks published, in quorum). Until then a duplicate is not acted
	// on: a node still rejoining is not eligible, and keep would change
	// under the feet of the others as soon as it is.
	settled bool
}

// duplicateOf reads the instances of failover service s.
func (v *view) duplicateOf(s *config.Service) duplicate {
	order := v.candidates(s)
	seen := map[string]bool{}
	for _, n := range order {
		seen[n] = true
	}
	for _, n := range v.holders(s.Name) {
		if !seen[n] {
			order = append(order, n)
		}
	}
	d := duplicate{settled: true}
	for _, n := range order {
		if v.running(n, s.Name) {
			d.up = append(d.up, n)
			if !v.takesPart(n) {
				d.settled = false
			}
		}
	}
	for _, n := range d.up {
		if v.eligible(n, s.Name) {
			d.keep = n
			break
		}
	}
	if d.keep == "" && len(d.up) > 0 {
		d.keep = d.up[0]
	}
	return d
}

// confirmed reports whether the duplicate is confirmed by fresh data: a
// node of d.up other than keep published a recheck token (after a check
// of its own that found it up) and keep answered it (after a check that
// started once it saw the token), both still up.
func (v *view) confirmed(s *config.Service, d duplicate) bool {
	k, _ := v.instance(d.keep, s.Name)
	for _, n := range d.up {
		if n == d.keep {
			continue
		}
		i, _ := v.instance(n, s.Name)
		if tok := i.Monitor.Recheck; tok != "" && k.Monitor.Rechecked[n] == tok {
			return true
		}
	}
	return false
}

// duplicates handles a failover service running on several present
// nodes: instance_duplicate once per episode (once fresh data confirms
// it), the recheck handshake, and, on a node that is not keep, the stop of
// its own instance (reason duplicate). It reports whether it launched a
// command. Run goroutine only.
//
// The handshake: a node up beside keep checks its own instance, and if it
// is still up publishes a recheck token; every other node up answers the
// token after a check that started once it saw it. When keep's answer
// arrives both nodes have sent data newer than the moment the duplicate
// was seen, and that data says both are up: only then is one stopped. Data
// just after a partition heals is stale, and stopping on it could stop
// the only instance left.
func (o *Orchestrator) duplicates(ctx context.Context, v *view, s *config.Service, st *local, inst monitor.Instance, now time.Time) bool {
	self := o.cfg.Nodename
	var d duplicate
	if s.Topology != config.Flex {
		d = v.duplicateOf(s)
	}
	o.tidyRechecked(v, s, inst)
	ep := o.dups[s.Name]
	if s.Topology != config.Flex {
		o.reportStopped(v, s, ep)
	}
	if len(d.up) < 2 || !d.settled {
		if ep != nil {
			delete(o.dups, s.Name)
			if ep.reported {
				o.log.Info("duplicate resolved", logKeyService, s.Name, "up", d.up)
			}
		}
		o.endRecheck(v, s, inst)
		st.checkOwn = false
		return false
	}
	if ep == nil {
		ep = &dupEpisode{since: now}
		o.dups[s.Name] = ep
	}
	mine := slices.Contains(d.up, self)
	if mine {
		// Answer the others' tokens, whoever keep is here: an answer is
		// only a fresh check, and each asker trusts keep's alone.
		for _, n := range d.up {
			if n == self {
				continue
			}
			i, _ := v.instance(n, s.Name)
			if tok := i.Monitor.Recheck; tok != "" && !isKept(tok) && inst.Monitor.Rechecked[n] != tok && st.checkFor[n] != tok {
				if st.checkFor == nil {
					st.checkFor = map[string]string{}
				}
				st.checkFor[n] = tok
				st.checkNow = true
			}
		}
	}
	if v.confirmed(s, d) && !ep.reported {
		ep.reported = true
		for _, a := range v.answered(s) {
			o.dupSeen[s.Name].seen[a.id] = true
		}
		o.reportDuplicate(s, d.up, d.keep)
	}
	if !mine || d.keep == self {
		o.endRecheck(v, s, inst)
		st.checkOwn = false
		return false
	}
	tok := inst.Monitor.Recheck
	if isKept(tok) {
		// A token kept from an earlier duplicate is never asked again:
		// this one needs a fresh check and a fresh answer.
		o.setRecheck(s.Name, inst, "")
		tok = ""
	}
	if tok == "" {
		if !st.checkOwn {
			st.checkOwn, st.checkNow = true, true
		}
		return false
	}
	k, _ := v.instance(d.keep, s.Name)
	if k.Monitor.Rechecked[self] != tok || st.busy || !o.mayStopDuplicate(v, s, inst) {
		return false
	}
	o.stats.duplicateStops.Add(1)
	o.act(ctx, s, st, ActionStop, ReasonDuplicate)
	return true
}

// mayStopDuplicate reports whether this node may stop its duplicate
// instance of s now: orchestrate = ha, this node takes part in decisions,
// nothing is frozen, no stop is under way or failed.
func (o *Orchestrator) mayStopDuplicate(v *view, s *config.Service, inst monitor.Instance) bool {
	node := v.nodes[o.cfg.Nodename]
	switch {
	case s.Orchestrate != config.OrchestrateHA, !o.quorum, !v.takesPart(o.cfg.Nodename):
		return false
	case node.Frozen != 0, inst.Frozen != 0, v.frozen(s.Name):
		return false
	case inst.Monitor.GlobalExpect == ExpectStopped:
		return false // the order stops it anyway
	case inst.Monitor.Status == StatusStopping, inst.Monitor.Status == StatusStopFailed:
		return false
	}
	return true
}

// setRecheck sets this node's recheck token of svc (clears it with "").
func (o *Orchestrator) setRecheck(svc string, inst monitor.Instance, tok string) {
	if inst.Monitor.Recheck == tok {
		return
	}
	o.updateInstance(svc, func(i *monitor.Instance) { i.Monitor.Recheck = tok })
}

// tidyRechecked drops the answers to tokens their asker no longer shows.
func (o *Orchestrator) tidyRechecked(v *view, s *config.Service, inst monitor.Instance) {
	stale := false
	for n, tok := range inst.Monitor.Rechecked {
		if i, _ := v.instance(n, s.Name); tokenID(i.Monitor.Recheck) != tok || !v.present(n) {
			stale = true
			break
		}
	}
	if !stale {
		return
	}
	o.updateInstance(s.Name, func(i *monitor.Instance) {
		for n, tok := range i.Monitor.Rechecked {
			if p, _ := v.instance(n, s.Name); tokenID(p.Monitor.Recheck) != tok || !v.present(n) {
				delete(i.Monitor.Rechecked, n)
			}
		}
		if len(i.Monitor.Rechecked) == 0 {
			i.Monitor.Rechecked = nil
		}
	})
}

// recheckAnswers applies what a check made for a duplicate means to the
// instance: the answers to other nodes' tokens, and this node's own token
// when its own recheck found it up. Called inside updateInstance.
func recheckAnswers(i *monitor.Instance, r result, avail string, now time.Time) {
	if len(r.answers) > 0 {
		if i.Monitor.Rechecked == nil {
			i.Monitor.Rechecked = map[string]string{}
		}
		maps.Copy(i.Monitor.Rechecked, r.answers)
	}
	if r.own && isUp(avail) && (i.Monitor.Recheck == "" || isKept(i.Monitor.Recheck)) {
		i.Monitor.Recheck = fmt.Sprintf("%x", now.UnixNano())
	}
}

// keptSuffix marks a recheck token a node keeps after it stopped its
// instance for the duplicate that token confirmed: with the answer of the
// node that kept the service, it is the record that the duplicate was
// real, for a node that did not see both instances up (its evaluations
// merged the confirmation and the stop). A kept token is never answered
// nor used to stop anything; a node up again clears it.
const keptSuffix = "/stopped"

func isKept(tok string) bool { return strings.HasSuffix(tok, keptSuffix) }

// tokenID is the token as it was asked and answered.
func tokenID(tok string) string { return strings.TrimSuffix(tok, keptSuffix) }

// answer is a recheck token of node asker answered by node by.
type answer struct {
	asker, by, id string
	// stopped: the asker's instance is no longer up.
	stopped bool
}

// answered returns the recheck tokens of s answered by another present
// node, kept tokens included.
func (v *view) answered(s *config.Service) []answer {
	var out []answer
	holders := v.holders(s.Name)
	for _, n := range holders {
		if !v.present(n) {
			continue
		}
		i, _ := v.instance(n, s.Name)
		if i.Monitor.Recheck == "" {
			continue
		}
		id := tokenID(i.Monitor.Recheck)
		for _, k := range holders {
			if k == n || !v.present(k) {
				continue
			}
			if ki, _ := v.instance(k, s.Name); ki.Monitor.Rechecked[n] == id {
				out = append(out, answer{asker: n, by: k, id: id, stopped: !v.running(n, s.Name)})
				break
			}
		}
	}
	return out
}

// endRecheck clears this node's recheck token of s when it is not, or no
// longer, asking; it keeps it, marked, when this node stopped its
// instance after the token was answered (see keptSuffix).
func (o *Orchestrator) endRecheck(v *view, s *config.Service, inst monitor.Instance) {
	tok := inst.Monitor.Recheck
	if tok == "" {
		return
	}
	self := o.cfg.Nodename
	if !v.running(self, s.Name) {
		for _, a := range v.answered(s) {
			if a.asker == self {
				o.setRecheck(s.Name, inst, a.id+keptSuffix)
				return
			}
		}
	}
	o.setRecheck(s.Name, inst, "")
}

// dupKnown is what this node knows of the answered recheck tokens of one
// failover service. Run goroutine only.
type dupKnown struct {
	// seen are the token ids of duplicates reported, or known before
	// this node took part.
	seen map[string]bool
	// live: this node has evaluated the service while taking part in
	// decisions; what it finds from then on is news.
	live bool
}

// reportStopped emits instance_duplicate for a duplicate this node learns
// of only once it is over: an instance stopped after its recheck token was
// answered, which this node did not report yet. What a node finds until
// and at its first evaluation taking part (a restarted agent, a service
// just declared) it takes as known, without a report: it was not there.
func (o *Orchestrator) reportStopped(v *view, s *config.Service, ep *dupEpisode) {
	k := o.dupSeen[s.Name]
	if k == nil {
		k = &dupKnown{seen: map[string]bool{}}
		o.dupSeen[s.Name] = k
	}
	// A token stays known while any node's data shows it, present or
	// not: the answer may vanish and come back with its node.
	shown := map[string]bool{}
	for _, n := range v.holders(s.Name) {
		if i, _ := v.instance(n, s.Name); i.Monitor.Recheck != "" {
			shown[tokenID(i.Monitor.Recheck)] = true
		}
	}
	all := v.answered(s)
	for id := range k.seen {
		if !shown[id] {
			delete(k.seen, id)
		}
	}
	var fresh []answer
	for _, a := range all {
		if a.stopped && !k.seen[a.id] {
			fresh = append(fresh, a)
			k.seen[a.id] = true
		}
	}
	if !k.live {
		k.live = v.takesPart(o.cfg.Nodename)
		return
	}
	if len(fresh) == 0 || (ep != nil && ep.reported) {
		return
	}
	if ep != nil {
		ep.reported = true
	}
	in := map[string]bool{}
	for _, a := range fresh {
		in[a.asker], in[a.by] = true, true
	}
	var nodes []string
	for _, n := range append(v.candidates(s), v.holders(s.Name)...) {
		if in[n] && !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	o.reportDuplicate(s, nodes, fresh[0].by)
}

// reportDuplicate emits instance_duplicate and counts it.
func (o *Orchestrator) reportDuplicate(s *config.Service, nodes []string, keep string) {
	o.stats.duplicates.Add(1)
	o.emit(EventInstanceDuplicate, ReasonCheck, s.Name, map[string]any{"nodes": nodes, "keep": keep})
	o.log.Warn("failover service up on several nodes", logKeyService, s.Name, "nodes", nodes, "keep", keep)
}
