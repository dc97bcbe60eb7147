package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Service defaults.
const (
	// DefaultCheckInterval is the time between two checks.
	DefaultCheckInterval = 10 * time.Second
	// DefaultServiceTimeout bounds each check, start and stop command.
	DefaultServiceTimeout = 60 * time.Second
)

// Topology is how many instances of a service run.
type Topology string

// Topologies.
const (
	Failover Topology = "failover" // one instance up
	Flex     Topology = "flex"     // FlexTarget instances up
)

// Orchestrate says whether the agents start, stop and fail over a service
// by themselves.
type Orchestrate string

// Orchestrate modes.
const (
	OrchestrateHA Orchestrate = "ha" // the agents act by themselves
	OrchestrateNo Orchestrate = "no" // never: only orders act
)

// Service is the content of svc/NAME.conf (its [service] section).
type Service struct {
	// Source is the file this was read from.
	Source string
	// Name is the file name without ".conf".
	Name string
	// Nodes are the candidate nodes in placement priority order; the
	// single entry "*" (the default) means every node, in name order.
	Nodes []string
	// Topology is failover (default) or flex.
	Topology Topology
	// FlexTarget is the number of instances up with flex (key
	// flex_target), default 1.
	FlexTarget int
	// Orchestrate is ha (default) or no.
	Orchestrate Orchestrate
	// Check is the check command, required: exit 0 up, 1 down, 2 warn,
	// anything else or a timeout: unknown.
	Check []string
	// Start is the start command; required with orchestrate = ha.
	Start []string
	// Stop is the stop command; required with orchestrate = ha.
	Stop []string
	// CheckInterval is the time between checks (key check_interval),
	// default 10s.
	CheckInterval time.Duration
	// Timeout bounds each command, default 60s.
	Timeout time.Duration
	// Env are the variables, KEY=VALUE, the check, start and stop commands
	// get besides the clean environment of every command (PATH, HOME, LANG,
	// TZ); key env, space-separated pairs, quoted as command words are. A
	// name may not start with AGENT_, which is the agent's own.
	Env []string

	pos *positions
}

// AllNodes reports whether the service may run on every node.
func (s Service) AllNodes() bool { return len(s.Nodes) == 1 && s.Nodes[0] == "*" }

// DefaultService returns the defaults of a service named name.
func DefaultService(name string) Service {
	return Service{
		Name:          name,
		Nodes:         []string{"*"},
		Topology:      Failover,
		FlexTarget:    1,
		Orchestrate:   OrchestrateHA,
		CheckInterval: DefaultCheckInterval,
		Timeout:       DefaultServiceTimeout,
	}
}

// ServiceName returns the service name of a config file path, and whether
// the file is a service config at all (a visible NAME.conf).
func ServiceName(path string) (string, bool) {
	base := filepath.Base(path)
	if strings.HasPrefix(base, ".") || !strings.HasSuffix(base, ".conf") {
		return "", false
	}
	return strings.TrimSuffix(base, ".conf"), true
}

// LoadService reads and validates the service config at path.
func LoadService(path string) (Service, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Service{}, fmt.Errorf("read service config: %w", err)
	}
	return ParseService(path, data)
}

// ParseService parses and validates data, the content of the service
// config at path; the service name comes from the file name.
func ParseService(path string, data []byte) (Service, error) {
	name, _ := ServiceName(path)
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), ".conf")
	}
	if !ValidName(name) {
		return Service{}, &Error{File: path, Msg: fmt.Sprintf("%q is not a valid service name (letters, digits, - _ .)", name)}
	}
	doc, err := parseINI(path, data)
	if err != nil {
		return Service{}, err
	}
	s := DefaultService(name)
	s.Source = path
	s.pos = newPositions()
	for _, sec := range doc.sections {
		if sec.name != "service" {
			return Service{}, &Error{File: path, Line: sec.line, Section: sec.name, Msg: "unknown section"}
		}
		s.pos.add(sec.name, "", sec.line)
		for _, e := range sec.entries {
			s.pos.add(sec.name, e.key, e.line)
			if err := s.set(e.key, e.value); err != nil {
				return Service{}, &Error{File: path, Line: e.line, Section: sec.name, Key: e.key, Msg: err.Error(), Err: err}
			}
		}
	}
	if err := s.Validate(); err != nil {
		return Service{}, err
	}
	return s, nil
}

func (s *Service) set(key, v string) error {
	switch key {
	case "nodes":
		if l := splitList(v); l != nil {
			s.Nodes = l
		}
	case "topology":
		if v = unquote(v); v != "" {
			s.Topology = Topology(v)
		}
	case "flex_target":
		if v = unquote(v); v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		s.FlexTarget = n
	case "orchestrate":
		if v = unquote(v); v != "" {
			s.Orchestrate = Orchestrate(v)
		}
	case "check", "start", "stop":
		words, err := SplitCommand(v)
		if err != nil {
			return err
		}
		switch key {
		case "check":
			s.Check = words
		case "start":
			s.Start = words
		default:
			s.Stop = words
		}
	case "env":
		env, err := parseEnv(v)
		if err != nil {
			return err
		}
		s.Env = env
	case "check_interval", "timeout":
		if v = unquote(v); v == "" {
			return nil
		}
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		if key == "timeout" {
			s.Timeout = d
		} else {
			s.CheckInterval = d
		}
	default:
		return errUnknownKey
	}
	return nil
}

// Validate checks s as a whole. Errors are *Error and name the file and
// line when s came from ParseService.
func (s Service) Validate() error {
	bad := func(key, format string, args ...any) error {
		return s.pos.errorf(s.Source, "service", key, format, args...)
	}
	if !ValidName(s.Name) {
		return &Error{File: s.Source, Msg: fmt.Sprintf("%q is not a valid service name (letters, digits, - _ .)", s.Name)}
	}
	if len(s.Nodes) == 0 {
		return bad("nodes", "no candidate nodes")
	}
	if err := checkNames(s.Nodes, true); err != nil {
		return bad("nodes", "%v", err)
	}
	switch s.Topology {
	case Failover, Flex:
	default:
		return bad("topology", "%q is not one of failover, flex", s.Topology)
	}
	if s.FlexTarget < 1 {
		return bad("flex_target", "%d: must be at least 1", s.FlexTarget)
	}
	if s.Topology == Flex && !s.AllNodes() && s.FlexTarget > len(s.Nodes) {
		return bad("flex_target", "%d exceeds the %d candidate nodes", s.FlexTarget, len(s.Nodes))
	}
	switch s.Orchestrate {
	case OrchestrateHA, OrchestrateNo:
	default:
		return bad("orchestrate", "%q is not one of ha, no", s.Orchestrate)
	}
	if len(s.Check) == 0 || s.Check[0] == "" {
		return bad("check", "a check command is required")
	}
	if s.Orchestrate == OrchestrateHA {
		if len(s.Start) == 0 || s.Start[0] == "" {
			return bad("start", "a start command is required with orchestrate = ha")
		}
		if len(s.Stop) == 0 || s.Stop[0] == "" {
			return bad("stop", "a stop command is required with orchestrate = ha")
		}
	}
	if s.CheckInterval <= 0 {
		return bad("check_interval", "must be positive")
	}
	if s.Timeout <= 0 {
		return bad("timeout", "must be positive")
	}
	return nil
}

// LoadServices loads every NAME.conf of dir. It returns the valid services
// by name and the errors by file path; a missing dir gives two empty maps,
// and a dir that cannot be read gives one error keyed by dir.
func LoadServices(dir string) (map[string]Service, map[string]error) {
	good := map[string]Service{}
	bad := map[string]error{}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return good, bad
	}
	if err != nil {
		bad[dir] = fmt.Errorf("read service dir: %w", err)
		return good, bad
	}
	for _, ent := range ents {
		name, ok := ServiceName(ent.Name())
		if !ok || ent.IsDir() {
			continue
		}
		path := filepath.Join(dir, ent.Name())
		s, err := LoadService(path)
		if err != nil {
			bad[path] = err
			continue
		}
		good[name] = s
	}
	return good, bad
}

// parseEnv splits the value of an env key into KEY=VALUE words, split and
// unquoted as a command is (SplitCommand), and checks each: a name of
// letters, digits and underscores not starting with a digit, an "=", not
// the AGENT_ prefix of the agent's own variables, no name twice.
func parseEnv(v string) ([]string, error) {
	words, err := SplitCommand(v)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(words))
	for _, w := range words {
		name, _, ok := strings.Cut(w, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("%q is not KEY=VALUE", w)
		case !validEnvName(name):
			return nil, fmt.Errorf("%q is not a valid variable name (letters, digits, _; not starting with a digit)", name)
		case strings.HasPrefix(name, "AGENT_"):
			return nil, fmt.Errorf("%s: names starting with AGENT_ are the agent's own", name)
		case seen[name]:
			return nil, fmt.Errorf("%s is set twice", name)
		}
		seen[name] = true
	}
	return words, nil
}

// validEnvName reports whether name is a portable environment variable
// name.
func validEnvName(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, c := range []byte(name) {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
