package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"agent/filter"
)

// Defaults and bounds of [trigger#NAME].
const (
	// DefaultTriggerCount is the number of events that fires a stream.
	DefaultTriggerCount = 1
	// DefaultTriggerWindow is how long a stream stays open after its first
	// event without firing.
	DefaultTriggerWindow = 10 * time.Minute
	// DefaultTriggerTimeout bounds one run of a trigger command.
	DefaultTriggerTimeout = 30 * time.Second
	// DefaultTriggerRetries is how many times a failing command is run
	// again before trigger_failed.
	DefaultTriggerRetries = 3
	// MaxTriggerRetries bounds retries: with the backoff capped at a
	// minute, more would hold a trigger's later commands for hours.
	MaxTriggerRetries = 20
	// MaxTriggerCount bounds count, and so the events a stream must hold.
	MaxTriggerCount = 100000
)

// Trigger is one [trigger#NAME] section: a pattern of events over time
// (SPEC section 12). Matching event records are split into streams by the
// values of the Distinct paths; a stream fires when it holds Count events
// (and, with FireWhen, when an event satisfying it arrives), or expires
// Window after its first event; each outcome runs its command with the
// stream's events on stdin.
type Trigger struct {
	// Name is NAME from the section header.
	Name string
	// Match is the filter expression (SPEC section 6) a record must
	// satisfy to enter a stream. Required.
	Match string
	// Distinct are the gjson paths whose values split the matching records
	// into streams (space separated in the file); none: one stream.
	Distinct []string
	// Count is the number of events at which a stream fires, default 1.
	Count int
	// FireWhen is an optional filter expression: with it, a stream that
	// holds Count events fires only when an event satisfying it arrives.
	FireWhen string
	// Window is how long a stream that has not fired stays open after its
	// first event, default 10m.
	Window time.Duration
	// FireCommand is run when a stream fires (key fire_command); optional,
	// but one of FireCommand and ExpireCommand is required.
	FireCommand []string
	// ExpireCommand is run when a stream expires (key expire_command).
	ExpireCommand []string
	// Timeout bounds one run of a command, default 30s.
	Timeout time.Duration
	// Retries is how many times a failing command is run again, with
	// backoff, before trigger_failed; default 3.
	Retries int
}

// DefaultTrigger is a trigger section with only its name given.
func DefaultTrigger(name string) Trigger {
	return Trigger{
		Name:    name,
		Count:   DefaultTriggerCount,
		Window:  DefaultTriggerWindow,
		Timeout: DefaultTriggerTimeout,
		Retries: DefaultTriggerRetries,
	}
}

func (t *Trigger) set(key, v string) error {
	switch key {
	case "match":
		t.Match = unquote(v)
	case "distinct":
		t.Distinct = strings.Fields(unquote(v))
	case "count":
		if v = unquote(v); v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		t.Count = n
	case "fire_when":
		t.FireWhen = unquote(v)
	case "window", "timeout":
		if v = unquote(v); v == "" {
			return nil
		}
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		if key == "window" {
			t.Window = d
		} else {
			t.Timeout = d
		}
	case "fire_command", "expire_command":
		words, err := SplitCommand(v)
		if err != nil {
			return err
		}
		if key == "fire_command" {
			t.FireCommand = words
		} else {
			t.ExpireCommand = words
		}
	case "retries":
		if v = unquote(v); v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		t.Retries = n
	default:
		return errUnknownKey
	}
	return nil
}

// validate checks one trigger; bad builds the located error.
func (t Trigger) validate(bad func(section, key, format string, args ...any) error) error {
	sec := "trigger#" + t.Name
	if !ValidName(t.Name) {
		return bad(sec, "", "%q is not a valid trigger name (letters, digits, - _ .)", t.Name)
	}
	if strings.TrimSpace(t.Match) == "" {
		return bad(sec, "match", "a trigger needs a match filter (like data.id=node_down)")
	}
	if _, err := filter.Parse(t.Match); err != nil {
		return bad(sec, "match", "%v", err)
	}
	if t.FireWhen != "" {
		if _, err := filter.Parse(t.FireWhen); err != nil {
			return bad(sec, "fire_when", "%v", err)
		}
	}
	seen := map[string]bool{}
	for _, p := range t.Distinct {
		if seen[p] {
			return bad(sec, "distinct", "path %q is listed twice", p)
		}
		seen[p] = true
	}
	if t.Count < 1 || t.Count > MaxTriggerCount {
		return bad(sec, "count", "%d: must be 1 to %d", t.Count, MaxTriggerCount)
	}
	if t.Window <= 0 {
		return bad(sec, "window", "must be positive")
	}
	if t.Timeout <= 0 {
		return bad(sec, "timeout", "must be positive")
	}
	if t.Retries < 0 || t.Retries > MaxTriggerRetries {
		return bad(sec, "retries", "%d: must be 0 to %d", t.Retries, MaxTriggerRetries)
	}
	noCmd := func(c []string) bool { return len(c) == 0 || c[0] == "" }
	if noCmd(t.FireCommand) && noCmd(t.ExpireCommand) {
		return bad(sec, "fire_command", "a trigger needs a fire_command, an expire_command, or both")
	}
	return nil
}
