package history

import (
	"fmt"
	"time"

	"agent/config"
	"agent/events"
	"agent/filter"
)

// spec is a sink's config, compiled.
type spec struct {
	cfg      config.Sink
	kinds    map[string]bool
	events   map[string]bool // nil: all
	priority map[string]bool
	filter   *filter.Expr // nil: none
}

func newSpec(s config.Sink) (*spec, error) {
	sp := &spec{cfg: s, kinds: set(s.Kinds), priority: set(s.Priority)}
	if len(s.Events) != 1 || s.Events[0] != "all" {
		sp.events = set(s.Events)
	}
	if s.Filter != "" {
		f, err := filter.Parse(s.Filter)
		if err != nil {
			return nil, fmt.Errorf("[sink#%s] filter: %w", s.Name, err)
		}
		sp.filter = f
	}
	if sp.cfg.Batch <= 0 {
		sp.cfg.Batch = config.DefaultSinkBatch
	}
	if sp.cfg.Flush <= 0 {
		sp.cfg.Flush = config.DefaultSinkFlush
	}
	return sp, nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// match says whether the sink writes rec, and whether at once.
func (sp *spec) match(rec *events.Record) (write, priority bool) {
	if !sp.kinds[rec.Kind] {
		return false, false
	}
	id := ""
	if rec.Kind == events.KindEvent {
		id = eventID(rec)
		if sp.events != nil && !sp.events[id] {
			return false, false
		}
	}
	if sp.filter != nil && !sp.filter.Match(rec.JSON()) {
		return false, false
	}
	return true, id != "" && sp.priority[id]
}

// flushEvery is the sink's flush interval.
func (sp *spec) flushEvery() time.Duration { return sp.cfg.Flush }
