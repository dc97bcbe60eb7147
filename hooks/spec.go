package hooks

import (
	"fmt"
	"slices"
	"time"

	"github.com/tidwall/gjson"

	"agent/config"
	"agent/events"
	"agent/filter"
)

// spec is a hook's settings, checked and compiled. It does not change once
// made, so a worker reads it without a lock.
type spec struct {
	name    string
	command []string
	all     bool            // Events is "all"
	ids     map[string]bool // else the event ids
	filter  *filter.Expr    // nil: none
	timeout time.Duration
	src     config.Hook // as given, to tell a changed hook from the same one
}

// compile checks h and compiles its filter. An empty Events means "all"; a
// zero Timeout means config.DefaultHookTimeout.
func compile(h config.Hook) (*spec, error) {
	if !config.ValidName(h.Name) {
		return nil, fmt.Errorf("hook %q: not a valid hook name (letters, digits, - _ .)", h.Name)
	}
	if len(h.Command) == 0 || h.Command[0] == "" {
		return nil, fmt.Errorf("hook %s: no command", h.Name)
	}
	if h.Timeout < 0 {
		return nil, fmt.Errorf("hook %s: timeout %s is negative", h.Name, h.Timeout)
	}
	s := &spec{
		name:    h.Name,
		command: slices.Clone(h.Command),
		timeout: h.Timeout,
		src:     h,
	}
	s.src.Events = slices.Clone(h.Events)
	s.src.Command = s.command
	if s.timeout == 0 {
		s.timeout = config.DefaultHookTimeout
	}
	if len(h.Events) == 0 || slices.Contains(h.Events, "all") {
		s.all = true
	} else {
		s.ids = make(map[string]bool, len(h.Events))
		for _, id := range h.Events {
			s.ids[id] = true
		}
	}
	if h.Filter != "" {
		e, err := filter.Parse(h.Filter)
		if err != nil {
			return nil, fmt.Errorf("hook %s: filter: %w", h.Name, err)
		}
		s.filter = e
	}
	return s, nil
}

// equal reports whether o has the same settings as s.
func (s *spec) equal(o *spec) bool {
	a, b := s.src, o.src
	return a.Name == b.Name && a.Filter == b.Filter && a.Timeout == b.Timeout &&
		slices.Equal(a.Events, b.Events) && slices.Equal(a.Command, b.Command)
}

// match reports whether the hook runs for rec, and the event id.
func (s *spec) match(rec *events.Record) (id string, ok bool) {
	if rec.Kind != events.KindEvent {
		return "", false
	}
	id = gjson.GetBytes(rec.Data, "id").String()
	if !s.all && !s.ids[id] {
		return id, false
	}
	if s.filter != nil && !s.filter.Match(rec.JSON()) {
		return id, false
	}
	return id, true
}
