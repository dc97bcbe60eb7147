package orchestrator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"agent/config"
)

// ConfigHash identifies a service config: the same file content gives the
// same hash on every node, wherever the file lives. Nodes agree on a
// leader only with the same config.
func ConfigHash(s *config.Service) string {
	c := *s
	c.Source = ""
	raw, err := json.Marshal(c)
	if err != nil {
		// A config.Service is plain data; this cannot fail.
		return ""
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

// takesPart reports whether node takes part in decisions: present, its
// status idle (its first checks are published, it has seen its peers) and
// not cut off from the majority.
func (v *view) takesPart(node string) bool {
	if !v.present(node) {
		return false
	}
	d, ok := v.nodes[node]
	return ok && d.Status == "idle" && !d.Quorum.Lost
}

// agreed reports whether every present candidate of s that takes part and
// holds the same config publishes leader as the leader: the condition for
// leader to start a failover instance.
func (v *view) agreed(s *config.Service, hash, leader string) bool {
	for _, c := range v.candidates(s) {
		if c == v.self || !v.takesPart(c) {
			continue
		}
		i, _ := v.instance(c, s.Name)
		if i.ConfigHash == hash && i.Monitor.Leader != leader {
			return false
		}
	}
	return true
}

// disagreement is a service whose candidates publish different leaders or
// hold different configs. Run goroutine only.
type disagreement struct {
	since    time.Time
	reported bool
}

// views returns, when the present candidates of s taking part do not all
// publish leader and hold hash, the leader and config hash each of them
// publishes (this node included); nil when they agree.
func (v *view) views(s *config.Service, hash, leader string) (leaders, hashes map[string]string) {
	differ := false
	leaders, hashes = map[string]string{v.self: leader}, map[string]string{v.self: hash}
	failover := s.Topology != config.Flex
	for _, c := range v.candidates(s) {
		if c == v.self || !v.takesPart(c) {
			continue
		}
		i, _ := v.instance(c, s.Name)
		leaders[c], hashes[c] = i.Monitor.Leader, i.ConfigHash
		if i.ConfigHash != hash || (failover && i.Monitor.Leader != leader) {
			differ = true
		}
	}
	if !differ {
		return nil, nil
	}
	if !failover {
		leaders = nil
	}
	return leaders, hashes
}

// watchAgreement reports a disagreement on s that lasts DisagreeAfter:
// placement_change reason disagreement, once per episode, and the
// disagreements gauge. Run goroutine only.
func (o *Orchestrator) watchAgreement(v *view, s *config.Service, hash, leader string, now time.Time) {
	leaders, hashes := v.views(s, hash, leader)
	d := o.disagree[s.Name]
	if hashes == nil || !v.takesPart(v.self) {
		if d != nil && d.reported {
			o.log.Info("candidates agree again", logKeyService, s.Name)
		}
		delete(o.disagree, s.Name)
		return
	}
	if d == nil {
		d = &disagreement{since: now}
		o.disagree[s.Name] = d
	}
	if d.reported || now.Sub(d.since) < o.cfg.DisagreeAfter {
		return
	}
	d.reported = true
	o.stats.disagreements.Add(1)
	extra := map[string]any{"leader": leader, "config_hashes": hashes, "since": d.since.UTC()}
	if leaders != nil {
		extra["leaders"] = leaders
	}
	o.emit(EventPlacementChange, ReasonDisagreement, s.Name, extra)
	o.log.Warn("candidates disagree", logKeyService, s.Name, "leaders", leaders, "config_hashes", hashes,
		"since", d.since.UTC())
}

// disagreeNext is how long until a pending disagreement of s is due for
// reporting, or DefaultTick when none is.
func (o *Orchestrator) disagreeNext(svc string, now time.Time) time.Duration {
	if d := o.disagree[svc]; d != nil && !d.reported {
		return d.since.Add(o.cfg.DisagreeAfter).Sub(now)
	}
	return DefaultTick
}
