package config

import (
	"fmt"
	"net"
	"time"
)

// MinReconnectTimeout is the shortest [hb] reconnect_timeout: a dead peer
// is tried at least every 10 s, so anything shorter would not try it
// twice.
const MinReconnectTimeout = 10 * time.Second

// Validate checks n as a whole. Errors are *Error and name the file and
// line when n came from ParseNode.
func (n Node) Validate() error {
	bad := func(section, key, format string, args ...any) error {
		return n.pos.errorf(n.Source, section, key, format, args...)
	}
	if !ValidName(n.Node.Name) {
		return bad("node", "name", "%q is not a valid node name (letters, digits, - _ .)", n.Node.Name)
	}
	for k := range n.Node.Labels {
		if k == "" {
			return bad("node", "labels", "empty label key")
		}
	}
	if n.Node.MaxData < MinMaxData || n.Node.MaxData > MaxMaxData {
		return bad("node", "max_data", "%d bytes: must be from 4KiB to 8MiB (peers copy a node's data whole over memberlist)", n.Node.MaxData)
	}
	if n.Cluster.Name == "" {
		return bad("cluster", "name", "must not be empty")
	}
	if l := len(n.Cluster.Secret); l != 0 && l != 16 && l != 24 && l != 32 {
		return bad("cluster", "secret", "is %d bytes, want 16, 24 or 32", l)
	}
	for _, s := range n.Cluster.Seeds {
		if err := checkHostPort(s); err != nil {
			return bad("cluster", "seeds", "%v", err)
		}
	}
	if err := checkNames(n.Cluster.Nodes, false); err != nil {
		return bad("cluster", "nodes", "%v", err)
	}
	switch n.Cluster.SplitAction {
	case SplitStop, SplitFreeze, SplitNone:
	default:
		return bad("cluster", "split_action", "%q is not one of stop, freeze, none", n.Cluster.SplitAction)
	}
	if net.ParseIP(n.HB.Addr) == nil {
		return bad("hb", "addr", "%q is not an IP address", n.HB.Addr)
	}
	if n.HB.Port < 0 || n.HB.Port > 65535 {
		return bad("hb", "port", "%d is not a port number", n.HB.Port)
	}
	if n.HB.Advertise != "" && net.ParseIP(n.HB.Advertise) == nil {
		return bad("hb", "advertise", "%q is not an IP address", n.HB.Advertise)
	}
	switch n.HB.Profile {
	case ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		return bad("hb", "profile", "%q is not one of lan, wan, local", n.HB.Profile)
	}
	if n.HB.ForgetAfter < time.Second {
		return bad("hb", "forget_after", "%v: must be at least 1s", n.HB.ForgetAfter)
	}
	if n.HB.ReconnectTimeout < MinReconnectTimeout {
		return bad("hb", "reconnect_timeout", "%v: must be at least %v (one reconnect period)", n.HB.ReconnectTimeout, MinReconnectTimeout)
	}
	if err := n.Listener.validate(bad); err != nil {
		return err
	}
	if n.Journal.MaxBytes <= 0 {
		return bad("journal", "max_bytes", "must be positive")
	}
	if n.Journal.MaxAge <= 0 {
		return bad("journal", "max_age", "must be positive")
	}
	if n.Journal.RingBytes < 1<<20 {
		return bad("journal", "ring_bytes", "%d bytes: must be at least 1MiB", n.Journal.RingBytes)
	}
	seen := map[string]bool{}
	for _, h := range n.Hooks {
		sec := "hook#" + h.Name
		if !ValidName(h.Name) {
			return bad(sec, "", "%q is not a valid hook name (letters, digits, - _ .)", h.Name)
		}
		if seen[h.Name] {
			return bad(sec, "", "duplicate hook name")
		}
		seen[h.Name] = true
		if len(h.Command) == 0 || h.Command[0] == "" {
			return bad(sec, "command", "a hook needs a command")
		}
		if len(h.Events) == 0 {
			return bad(sec, "events", "no events: use all or event ids")
		}
		for _, ev := range h.Events {
			if ev == "all" && len(h.Events) > 1 {
				return bad(sec, "events", `"all" must stand alone`)
			}
			if ev != "all" && !eventIDRe.MatchString(ev) {
				return bad(sec, "events", "%q is not an event id", ev)
			}
		}
		if h.Timeout <= 0 {
			return bad(sec, "timeout", "must be positive")
		}
	}
	sinks := map[string]bool{}
	for _, s := range n.Sinks {
		if sinks[s.Name] {
			return bad("sink#"+s.Name, "", "duplicate sink name")
		}
		sinks[s.Name] = true
		if err := s.validate(bad); err != nil {
			return err
		}
	}
	seen = map[string]bool{}
	for _, t := range n.Triggers {
		if seen[t.Name] {
			return bad("trigger#"+t.Name, "", "duplicate trigger name")
		}
		seen[t.Name] = true
		if err := t.validate(bad); err != nil {
			return err
		}
	}
	return nil
}

func (l ListenerSection) validate(bad func(section, key, format string, args ...any) error) error {
	if l.Auth != AuthToken && l.Auth != AuthNone {
		return bad("listener", "auth", "%q is not one of token, none", l.Auth)
	}
	if l.MaxConns < 1 {
		return bad("listener", "max_conns", "%d: must be at least 1", l.MaxConns)
	}
	if l.MaxSubscribers < 1 {
		return bad("listener", "max_subscribers", "%d: must be at least 1", l.MaxSubscribers)
	}
	if l.IdleTimeout <= 0 || l.IdleTimeout > MaxIdleTimeout {
		return bad("listener", "idle_timeout", "%s: must be positive and at most %s", l.IdleTimeout, MaxIdleTimeout)
	}
	for _, h := range l.Hosts {
		if !validHostName(h) {
			return bad("listener", "hosts", "%q is not a host name (letters, digits, - and .)", h)
		}
	}
	if l.Addr == "" {
		return nil
	}
	if err := checkHostPort(l.Addr); err != nil {
		return bad("listener", "addr", "%v", err)
	}
	host, _, _ := net.SplitHostPort(l.Addr)
	switch l.Auth {
	case AuthToken:
		if l.TokenFile == "" {
			return bad("listener", "token_file", "required with auth = token")
		}
	case AuthNone:
		if !isLoopback(host) {
			return bad("listener", "auth", "none is accepted on loopback addresses only, not %q", host)
		}
	}
	if (l.TLSCert == "") != (l.TLSKey == "") {
		return bad("listener", "tls_cert", "tls_cert and tls_key go together")
	}
	return nil
}

// positions maps a (section, key) to the line it was read from; key ""
// is the section header.
type positions struct {
	lines map[[2]string]int
}

func newPositions() *positions { return &positions{lines: map[[2]string]int{}} }

func (p *positions) add(section, key string, line int) {
	p.lines[[2]string{section, key}] = line
}

// errorf builds an *Error at the key's line, else at its section's header.
// p may be nil.
func (p *positions) errorf(file, section, key, format string, args ...any) error {
	e := &Error{File: file, Section: section, Key: key, Msg: fmt.Sprintf(format, args...)}
	if p != nil {
		if l, ok := p.lines[[2]string{section, key}]; ok {
			e.Line = l
		} else {
			e.Line = p.lines[[2]string{section, ""}]
		}
	}
	return e
}
