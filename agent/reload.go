package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"agent/config"
	"agent/monitor"
)

// configLoop applies config file changes as the watcher reports them.
func (a *Agent) configLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ch, ok := <-a.watcher.Changes():
			if !ok {
				return
			}
			if ch.Service != "" {
				a.serviceChange(ch)
			} else {
				a.nodeConfigChange(ch)
			}
			a.cfgApplied.Add(1)
			select {
			case a.cfgTick <- struct{}{}:
			default:
			}
		}
	}
}

// waitConfigApplied waits until configLoop has applied every change the
// watcher has delivered so far.
func (a *Agent) waitConfigApplied(ctx context.Context) error {
	target := a.watcher.Delivered()
	for a.cfgApplied.Load() < target {
		select {
		case <-a.cfgTick:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// nodeConfigChange applies a new node.conf: labels and hooks take effect
// at once; settings that need a restart are named in the event and the
// log. A refused file (unparsable, empty, removed, or failing the
// permission rules) keeps the running config, all of it: its hooks keep
// running from their cursors. "applied" lists what differs from the
// config in force, so a file accepted again after a refusal, unchanged,
// applies nothing.
func (a *Agent) nodeConfigChange(ch config.Change) {
	if ch.Err != nil {
		a.log.Error("node.conf refused, running config kept", "err", ch.Err)
		a.store.Event(map[string]any{"id": "node_config_change", "reason": "invalid", "node": a.Name(),
			"path": ch.Path, "error": ch.Err.Error()})
		return
	}
	old := a.Config()
	var changed, restart []string
	if !maps.Equal(old.Node.Labels, ch.Node.Node.Labels) {
		// Applied first: labels that would make this node's data too big
		// refuse the whole edit, and the running config stays.
		labels := maps.Clone(ch.Node.Node.Labels)
		_, _, err := a.store.UpdateLocal("config", func(d *monitor.NodeData) { d.Labels = labels })
		switch {
		case errors.Is(err, monitor.ErrDataTooLarge):
			err = fmt.Errorf("%s: [node] labels: %w", ch.Path, err)
			a.log.Error("node.conf edit refused, running config kept", "err", err)
			a.store.Event(map[string]any{"id": "node_config_change", "reason": "invalid", "node": a.Name(),
				"path": ch.Path, "error": err.Error()})
			return
		case err != nil:
			a.log.Error("apply labels", "err", err)
		default:
			changed = append(changed, "labels")
		}
	}
	a.cfgMu.Lock()
	a.cfg.Node.Labels = ch.Node.Node.Labels
	a.cfg.Hooks = ch.Node.Hooks
	a.cfg.Sinks = ch.Node.Sinks
	a.cfg.Triggers = ch.Node.Triggers
	a.cfg.Source = ch.Node.Source
	a.cfgMu.Unlock()

	var hookErr error
	if !reflect.DeepEqual(old.Hooks, ch.Node.Hooks) {
		changed = append(changed, "hooks")
		hookErr = a.reloadHooks(ch.Node.Hooks)
	}
	if !reflect.DeepEqual(old.Triggers, ch.Node.Triggers) {
		changed = append(changed, "triggers")
		a.reloadTriggers(ch.Node.Triggers)
	}
	if !reflect.DeepEqual(old.Sinks, ch.Node.Sinks) {
		changed = append(changed, "sinks")
		a.reloadSinks(ch.Node.Sinks)
	}
	for _, c := range []struct {
		name     string
		old, new any
	}{
		{"node.name", old.Node.Name, ch.Node.Node.Name},
		{"node.max_data", old.Node.MaxData, ch.Node.Node.MaxData},
		{"cluster", old.Cluster, ch.Node.Cluster},
		{"hb", old.HB, ch.Node.HB},
		{"listener", old.Listener, ch.Node.Listener},
		{"journal", old.Journal, ch.Node.Journal},
	} {
		if !reflect.DeepEqual(c.old, c.new) {
			restart = append(restart, c.name)
		}
	}
	if len(restart) > 0 {
		a.log.Warn("node.conf changes that take effect at the next restart", "sections", restart)
	}
	slices.Sort(changed)
	a.log.Info("node.conf reloaded", "applied", changed, "restart_required", restart)
	ev := map[string]any{"id": "node_config_change", "reason": "reload", "node": a.Name(),
		"applied": nonNil(changed), "restart_required": nonNil(restart)}
	if hookErr != nil {
		ev["error"] = hookErr.Error() // the hooks it names keep their running version
	}
	a.store.Event(ev)
}

// Reload reads node.conf and the service files again, with the
// permission checks of the directories above them and of the programs
// they name, applies what changed (as an edit would) and logs that it did:
// SIGHUP. It returns once the changes are applied or ctx ends.
func (a *Agent) Reload(ctx context.Context) error {
	a.reloadMu.Lock() // one waiter on cfgTick at a time
	defer a.reloadMu.Unlock()
	a.log.Info("reloading node.conf and service files (SIGHUP)")
	n, err := a.watcher.Rescan(ctx)
	if err != nil {
		a.log.Error("reload failed", "err", err)
		return err
	}
	// The changes are on their way to configLoop; wait until it took them
	// all, so that the line below follows their own log lines.
	if err := a.waitConfigApplied(ctx); err != nil {
		return err
	}
	a.log.Info("reloaded node.conf and service files", "changed_files", n)
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
