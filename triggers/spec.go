package triggers

import (
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"

	"agent/config"
	"agent/filter"
)

// Spec is a compiled [trigger#NAME] section. It does not change once
// compiled: a reload compiles new ones.
type Spec struct {
	name      string
	match     *filter.Expr
	fireWhen  *filter.Expr // nil: none
	distinct  []string
	count     int
	window    time.Duration
	fireCmd   []string
	expireCmd []string
	timeout   time.Duration
	retries   int
	// identity is the canonical match and distinct: a change of it closes
	// the open streams, a change of anything else re-evaluates them.
	identity string
}

// Compile checks and compiles a trigger section. The config package has
// validated it already when it comes from node.conf; Compile checks again
// for values built in code.
func Compile(c config.Trigger) (*Spec, error) {
	m, err := filter.Parse(c.Match)
	if err != nil {
		return nil, fmt.Errorf("trigger %s: match: %w", c.Name, err)
	}
	s := &Spec{
		name:      c.Name,
		match:     m,
		distinct:  append([]string(nil), c.Distinct...),
		count:     c.Count,
		window:    c.Window,
		fireCmd:   append([]string(nil), c.FireCommand...),
		expireCmd: append([]string(nil), c.ExpireCommand...),
		timeout:   c.Timeout,
		retries:   c.Retries,
	}
	if c.FireWhen != "" {
		if s.fireWhen, err = filter.Parse(c.FireWhen); err != nil {
			return nil, fmt.Errorf("trigger %s: fire_when: %w", c.Name, err)
		}
	}
	switch {
	case !config.ValidName(c.Name):
		return nil, fmt.Errorf("trigger %q: not a valid name", c.Name)
	case s.count < 1:
		return nil, fmt.Errorf("trigger %s: count %d must be at least 1", c.Name, s.count)
	case s.window <= 0:
		return nil, fmt.Errorf("trigger %s: window %s must be positive", c.Name, s.window)
	case s.timeout <= 0:
		return nil, fmt.Errorf("trigger %s: timeout %s must be positive", c.Name, s.timeout)
	case s.retries < 0:
		return nil, fmt.Errorf("trigger %s: retries %d must not be negative", c.Name, s.retries)
	case len(s.fireCmd) == 0 && len(s.expireCmd) == 0:
		return nil, fmt.Errorf("trigger %s: no fire_command nor expire_command", c.Name)
	}
	s.identity = identity(m.String(), s.distinct)
	return s, nil
}

// Name is the trigger's name.
func (s *Spec) Name() string { return s.name }

// identity joins what a stream's membership depends on.
func identity(match string, distinct []string) string {
	return match + "\x00" + strings.Join(distinct, " ")
}

// values returns the distinct values of the record doc: a string's
// content, the JSON text of any other value, "" for a missing path.
func (s *Spec) values(doc []byte) []string {
	if len(s.distinct) == 0 {
		return nil
	}
	str := unsafe.String(unsafe.SliceData(doc), len(doc))
	vals := make([]string, len(s.distinct))
	for i, p := range s.distinct {
		r := gjson.Get(str, p)
		switch {
		case !r.Exists():
		case r.Type == gjson.String:
			vals[i] = strings.Clone(r.Str)
		default:
			vals[i] = strings.Clone(r.Raw)
		}
	}
	return vals
}

// mapKey is the key of a stream in its trigger's map: the values joined by
// a byte no path value holds apart (a NUL is escaped in JSON, but a value
// may hold one; the length prefix keeps ("a\x00", "b") and ("a", "\x00b")
// apart).
func mapKey(vals []string) string {
	switch len(vals) {
	case 0:
		return ""
	case 1:
		return vals[0]
	}
	var b strings.Builder
	for _, v := range vals {
		fmt.Fprintf(&b, "%d:%s", len(v), v)
	}
	return b.String()
}

// displayKey is AGENT_TRIGGER_KEY: `path=value` pairs, space separated.
func displayKey(paths, vals []string) string {
	var b strings.Builder
	for i, p := range paths {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p)
		b.WriteByte('=')
		if i < len(vals) {
			b.WriteString(vals[i])
		}
	}
	return b.String()
}
