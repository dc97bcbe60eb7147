package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults used by DefaultNode, ParseNode and ParseService.
const (
	// DefaultHeartbeatPort is the memberlist port.
	DefaultHeartbeatPort = 10000
	// DefaultJournalMaxBytes bounds the journal size.
	DefaultJournalMaxBytes int64 = 256 << 20
	// DefaultJournalMaxAge bounds the journal age.
	DefaultJournalMaxAge = 7 * 24 * time.Hour
	// DefaultForgetAfter is how long a dead peer's data is kept.
	DefaultForgetAfter = 5 * time.Minute
	// DefaultReconnectTimeout is how long a dead peer's address is
	// retried after it was last seen alive.
	DefaultReconnectTimeout = 72 * time.Hour
	// DefaultJournalRingBytes bounds the memory of the record ring.
	DefaultJournalRingBytes int64 = 64 << 20
	// DefaultMaxData bounds one node's monitor data.
	DefaultMaxData int64 = 1 << 20
	// MinMaxData and MaxMaxData bound [node] max_data: peers copy a node's
	// data whole over memberlist, whose streams take at most 20 MB.
	MinMaxData int64 = 4 << 10
	MaxMaxData int64 = 8 << 20
	// DefaultHookTimeout bounds one hook run.
	DefaultHookTimeout = 30 * time.Second
	// DefaultMaxConns caps the connections of the TCP listener.
	DefaultMaxConns = 16384
	// DefaultMaxSubscribers caps the stream subscribers.
	DefaultMaxSubscribers = 12000
	// MaxIdleTimeout is the longest, and default, time an idle keep-alive
	// connection of the API stays open.
	MaxIdleTimeout = 2 * time.Minute
)

// SplitAction is what a node that sees no majority does (quorum = true).
type SplitAction string

// Split actions.
const (
	SplitStop   SplitAction = "stop"   // stop the local service instances
	SplitFreeze SplitAction = "freeze" // freeze the node: no more orchestration
	SplitNone   SplitAction = "none"   // do nothing but emit quorum_lost
)

// Profile names a memberlist timing profile; the heartbeat package maps it
// to timings.
type Profile string

// Heartbeat profiles.
const (
	ProfileLAN   Profile = "lan"
	ProfileWAN   Profile = "wan"
	ProfileLocal Profile = "local"
)

// Auth is how the TCP listener authenticates requests.
type Auth string

// Listener auth modes.
const (
	AuthToken Auth = "token" // Authorization: Bearer TOKEN
	AuthNone  Auth = "none"  // no auth: loopback addresses only
)

// Secret is a gossip encryption key. It is a []byte that prints, logs and
// marshals as "REDACTED" so it does not leak.
type Secret []byte

// String hides the key.
func (s Secret) String() string {
	if len(s) == 0 {
		return ""
	}
	return "REDACTED"
}

// LogValue hides the key from slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText hides the key from encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Node is the content of node.conf.
type Node struct {
	// Source is the file this was read from; empty when node.conf was
	// missing and these are the defaults.
	Source string
	// Node is the [node] section.
	Node NodeSection
	// Cluster is the [cluster] section.
	Cluster ClusterSection
	// HB is the [hb] section: the memberlist heartbeat.
	HB HeartbeatSection
	// Listener is the [listener] section: the optional TCP API listener.
	Listener ListenerSection
	// Journal is the [journal] section (an extension of the SPEC).
	Journal JournalSection
	// Hooks are the [hook#NAME] sections, in file order.
	Hooks []Hook
	// Sinks are the [sink#NAME] sections (history databases), in file
	// order: the first is the default of `agent history`.
	Sinks []Sink
	// Triggers are the [trigger#NAME] sections, in file order.
	Triggers []Trigger

	// pos locates keys for Validate's errors; nil for values built in code.
	pos *positions
	// secrets says the file sets a secret (HoldsSecrets).
	secrets bool
}

// NodeSection is [node]: this node's identity.
type NodeSection struct {
	// Name is the node name (key name), default the short hostname.
	Name string
	// Labels are free key=value pairs shown in cluster data (key labels,
	// "zone=a rack=12"; a value may be quoted: desc="a b").
	Labels map[string]string
	// MaxData bounds this node's monitor data in bytes (key max_data, like
	// 1MiB, the default); it should be the same on every node: a peer's
	// data over it is refused.
	MaxData int64
}

// ClusterSection is [cluster]: which cluster this node belongs to.
type ClusterSection struct {
	// Name is the cluster name; agents of different clusters never merge.
	// Default: the node name.
	Name string
	// Secret is the gossip encryption key (key secret, base64 of 16, 24
	// or 32 bytes); empty means no encryption.
	Secret Secret
	// Seeds are host:port addresses to join, retried until one answers.
	Seeds []string
	// Nodes are the expected members, counted by quorum; optional.
	Nodes []string
	// Quorum makes a node that sees no majority apply SplitAction.
	Quorum bool
	// SplitAction is stop, freeze or none (key split_action), default stop.
	SplitAction SplitAction
}

// HeartbeatSection is [hb]: the memberlist heartbeat.
type HeartbeatSection struct {
	// Addr is the bind IP address: 127.0.0.1 without node.conf, else
	// 0.0.0.0 unless set.
	Addr string
	// Port is the bind port, default 10000; 0 picks a free port.
	Port int
	// Advertise is the IP address peers should use, when it differs from
	// Addr; empty means memberlist's choice.
	Advertise string
	// Profile is the timing profile: lan (default), wan or local.
	Profile Profile
	// ForgetAfter is how long a dead peer's data is kept (key
	// forget_after, default 5m). Its address is kept longer: see
	// ReconnectTimeout.
	ForgetAfter time.Duration
	// ReconnectTimeout is how long the address of a dead peer is retried
	// after it was last seen alive (key reconnect_timeout, default 72h).
	ReconnectTimeout time.Duration
}

// ListenerSection is [listener]: the optional TCP listener for the API, the
// streams and the web page.
type ListenerSection struct {
	// Addr is the host:port to listen on; empty: no TCP listener.
	Addr string
	// Auth is token (default) or none; none only on a loopback Addr.
	Auth Auth
	// TokenFile holds the bearer token (key token_file); required with
	// auth = token.
	TokenFile string
	// TLSCert is the PEM certificate file (key tls_cert); TLS is on when
	// it and TLSKey are set.
	TLSCert string
	// TLSKey is the PEM private key file (key tls_key).
	TLSKey string
	// Hosts are the host names a request's Host header may give besides
	// an IP address and localhost (key hosts, space or comma separated):
	// the names clients use for this node. Any other is refused, so that
	// a web page cannot reach the listener through DNS rebinding.
	Hosts []string
	// MaxConns caps the open connections of the TCP listener (key
	// max_conns), default DefaultMaxConns; lowered at start to what the
	// open-file limit leaves.
	MaxConns int
	// MaxSubscribers caps the stream subscribers, socket and listener
	// together (key max_subscribers), default DefaultMaxSubscribers.
	MaxSubscribers int
	// IdleTimeout closes an idle keep-alive connection (key
	// idle_timeout), default and at most MaxIdleTimeout.
	IdleTimeout time.Duration
}

// JournalSection is [journal], an extension of the SPEC: the local record
// journal kept under the var directory is pruned past either bound.
type JournalSection struct {
	// MaxBytes bounds the journal size (key max_bytes, like 256MiB).
	MaxBytes int64
	// MaxAge bounds the age of kept records (key max_age, like 7d).
	MaxAge time.Duration
	// RingBytes bounds the memory of the newest records kept for
	// subscribers (key ring_bytes, like 64MiB, the default).
	RingBytes int64
}

// Hook is one [hook#NAME] section: a command run for matching events, with
// the event record on stdin, without a shell.
type Hook struct {
	// Name is NAME from the section header.
	Name string
	// Events are event ids, or the single word "all" (the default); comma
	// or space separated in the file.
	Events []string
	// Filter is an optional filter expression (SPEC section 6) on the
	// record, compiled by the hooks package.
	Filter string
	// Command is the program and its arguments, split by SplitCommand.
	Command []string
	// Timeout bounds one run, default 30s.
	Timeout time.Duration
}

// DefaultNode is the config of an agent without node.conf: a one-node
// cluster named after the host, heartbeat on 127.0.0.1 only.
func DefaultNode(hostname string) Node {
	name := ShortHostname(hostname)
	return Node{
		Node:    NodeSection{Name: name, MaxData: DefaultMaxData},
		Cluster: ClusterSection{Name: name, SplitAction: SplitStop},
		HB: HeartbeatSection{Addr: "127.0.0.1", Port: DefaultHeartbeatPort, Profile: ProfileLAN,
			ForgetAfter: DefaultForgetAfter, ReconnectTimeout: DefaultReconnectTimeout},
		Listener: ListenerSection{
			Auth:           AuthToken,
			MaxConns:       DefaultMaxConns,
			MaxSubscribers: DefaultMaxSubscribers,
			IdleTimeout:    MaxIdleTimeout,
		},
		Journal: JournalSection{MaxBytes: DefaultJournalMaxBytes, MaxAge: DefaultJournalMaxAge, RingBytes: DefaultJournalRingBytes},
	}
}

// ShortHostname returns hostname up to its first dot, or "localhost" when
// that is empty.
func ShortHostname(hostname string) string {
	short, _, _ := strings.Cut(strings.TrimSpace(hostname), ".")
	if short == "" {
		return "localhost"
	}
	return short
}

// LoadNode reads and validates node.conf at path. A missing file is not an
// error: it returns DefaultNode(hostname), with an empty Source.
func LoadNode(path, hostname string) (Node, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return DefaultNode(hostname), nil
	}
	if err != nil {
		return Node{}, fmt.Errorf("read node config: %w", err)
	}
	return ParseNode(path, data, hostname)
}

// ParseNode parses and validates data, the content of node.conf at path.
// hostname gives the default node name.
func ParseNode(path string, data []byte, hostname string) (Node, error) {
	doc, err := parseINI(path, data)
	if err != nil {
		return Node{}, err
	}
	n := DefaultNode(hostname)
	n.Source = path
	n.HB.Addr = "0.0.0.0"
	n.pos = newPositions()
	clusterNamed := false
	hooks := map[string]int{}
	sinks := map[string]int{}
	for _, s := range doc.sections {
		n.pos.add(s.name, "", s.line)
		var set func(key, v string) error
		switch {
		case s.name == "node":
			set = n.setNode
		case s.name == "cluster":
			set = func(key, v string) error {
				if key == "name" && v != "" {
					clusterNamed = true
				}
				return n.setCluster(key, v)
			}
		case s.name == "hb":
			set = n.setHB
		case s.name == "listener":
			set = n.setListener
		case s.name == "journal":
			set = n.setJournal
		case strings.HasPrefix(s.name, "hook#"):
			name := strings.TrimPrefix(s.name, "hook#")
			if !ValidName(name) {
				return Node{}, &Error{File: path, Line: s.line, Section: s.name, Msg: fmt.Sprintf("%q is not a valid hook name (letters, digits, - _ .)", name)}
			}
			if first, ok := hooks[name]; ok {
				// Unreachable while duplicate sections are refused, kept
				// for safety.
				return Node{}, &Error{File: path, Line: s.line, Section: s.name, Msg: fmt.Sprintf("duplicate hook name (first at line %d)", first)}
			}
			hooks[name] = s.line
			n.Hooks = append(n.Hooks, Hook{Name: name, Events: []string{"all"}, Timeout: DefaultHookTimeout})
			h := &n.Hooks[len(n.Hooks)-1]
			set = h.set
		case s.name == "hook":
			return Node{}, &Error{File: path, Line: s.line, Section: s.name, Msg: "unknown section (a hook is [hook#NAME])"}
		case strings.HasPrefix(s.name, "sink#"):
			name := strings.TrimPrefix(s.name, "sink#")
			if !ValidName(name) {
				return Node{}, &Error{File: path, Line: s.line, Section: s.name, Msg: fmt.Sprintf("%q is not a valid sink name (letters, digits, - _ .)", name)}
			}
			if first, ok := sinks[name]; ok {
				return Node{}, &Error{File: path, Line: s.line, Section: s.name, Msg: fmt.Sprintf("duplicate sink name (first at line %d)", first)}
			}
			sinks[name] = s.line
			n.Sinks = append(n.Sinks, DefaultSink(name))
			set = n.Sinks[len(n.Sinks)-1].set
		case s.name == "sink":
			return Node{}, &Error{File: path, Line: s.line, Section: s.name, Msg: "unknown section (a history sink is [sink#NAME])"}
		case strings.HasPrefix(s.name, "trigger#"):
			name := strings.TrimPrefix(s.name, "trigger#")
			if !ValidName(name) {
				return Node{}, &Error{File: path, Line: s.line, Section: s.name, Msg: fmt.Sprintf("%q is not a valid trigger name (letters, digits, - _ .)", name)}
			}
			n.Triggers = append(n.Triggers, DefaultTrigger(name))
			set = n.Triggers[len(n.Triggers)-1].set
		case s.name == "trigger":
			return Node{}, &Error{File: path, Line: s.line, Section: s.name, Msg: "unknown section (a trigger is [trigger#NAME])"}
		default:
			return Node{}, &Error{File: path, Line: s.line, Section: s.name, Msg: "unknown section"}
		}
		for _, e := range s.entries {
			n.pos.add(s.name, e.key, e.line)
			if (e.key == "secret" || e.key == "dsn") && unquote(e.value) != "" {
				n.secrets = true
			}
			if err := set(e.key, e.value); err != nil {
				return Node{}, &Error{File: path, Line: e.line, Section: s.name, Key: e.key, Msg: err.Error(), Err: err}
			}
		}
	}
	if !clusterNamed {
		n.Cluster.Name = n.Node.Name
	}
	if err := n.Validate(); err != nil {
		return Node{}, err
	}
	return n, nil
}

// errUnknownKey is returned by the section setters.
var errUnknownKey = errors.New("unknown key")

func (n *Node) setNode(key, v string) error {
	switch key {
	case "name":
		if v = unquote(v); v != "" {
			n.Node.Name = v
		}
	case "labels":
		words, err := SplitCommand(v)
		if err != nil {
			return err
		}
		n.Node.Labels = nil
		for _, w := range words {
			k, val, ok := strings.Cut(w, "=")
			if !ok || k == "" {
				return fmt.Errorf("label %q is not key=value", w)
			}
			if _, dup := n.Node.Labels[k]; dup {
				return fmt.Errorf("label %q is set twice", k)
			}
			if n.Node.Labels == nil {
				n.Node.Labels = map[string]string{}
			}
			n.Node.Labels[k] = val
		}
	case "max_data":
		if v = unquote(v); v == "" {
			return nil
		}
		b, err := parseSize(v)
		if err != nil {
			return err
		}
		n.Node.MaxData = b
	default:
		return errUnknownKey
	}
	return nil
}

func (n *Node) setCluster(key, v string) error {
	switch key {
	case "name":
		if v = unquote(v); v != "" {
			n.Cluster.Name = v
		}
	case "secret":
		v = unquote(v)
		if v == "" {
			n.Cluster.Secret = nil
			return nil
		}
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			// The decoder's error would quote the secret's position only;
			// still, keep the message free of the value.
			return errors.New("not valid base64")
		}
		if l := len(b); l != 16 && l != 24 && l != 32 {
			return fmt.Errorf("decodes to %d bytes, want 16, 24 or 32", l)
		}
		n.Cluster.Secret = b
	case "seeds":
		n.Cluster.Seeds = splitList(v)
	case "nodes":
		n.Cluster.Nodes = splitList(v)
	case "quorum":
		if v = unquote(v); v == "" {
			n.Cluster.Quorum = false
			return nil
		}
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		n.Cluster.Quorum = b
	case "split_action":
		if v = unquote(v); v != "" {
			n.Cluster.SplitAction = SplitAction(v)
		}
	default:
		return errUnknownKey
	}
	return nil
}

func (n *Node) setHB(key, v string) error {
	v = unquote(v)
	switch key {
	case "addr":
		if v != "" {
			n.HB.Addr = v
		}
	case "port":
		if v == "" {
			return nil
		}
		p, err := parsePort(v)
		if err != nil {
			return err
		}
		n.HB.Port = p
	case "advertise":
		n.HB.Advertise = v
	case "profile":
		if v != "" {
			n.HB.Profile = Profile(v)
		}
	case "forget_after", "reconnect_timeout":
		d := DefaultForgetAfter
		if key == "reconnect_timeout" {
			d = DefaultReconnectTimeout
		}
		if v != "" {
			var err error
			if d, err = parseDuration(v); err != nil {
				return err
			}
		}
		if key == "forget_after" {
			n.HB.ForgetAfter = d
		} else {
			n.HB.ReconnectTimeout = d
		}
	default:
		return errUnknownKey
	}
	return nil
}

func (n *Node) setListener(key, v string) error {
	v = unquote(v)
	switch key {
	case "addr":
		n.Listener.Addr = v
	case "auth":
		if v != "" {
			n.Listener.Auth = Auth(v)
		}
	case "token_file":
		n.Listener.TokenFile = v
	case "tls_cert":
		n.Listener.TLSCert = v
	case "tls_key":
		n.Listener.TLSKey = v
	case "hosts":
		n.Listener.Hosts = splitList(v)
	case "max_conns", "max_subscribers":
		if v == "" {
			return nil
		}
		i, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		if key == "max_conns" {
			n.Listener.MaxConns = i
		} else {
			n.Listener.MaxSubscribers = i
		}
	case "idle_timeout":
		if v == "" {
			return nil
		}
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		n.Listener.IdleTimeout = d
	default:
		return errUnknownKey
	}
	return nil
}

func (n *Node) setJournal(key, v string) error {
	v = unquote(v)
	if v == "" && (key == "max_bytes" || key == "max_age" || key == "ring_bytes") {
		return nil
	}
	switch key {
	case "max_bytes":
		b, err := parseSize(v)
		if err != nil {
			return err
		}
		n.Journal.MaxBytes = b
	case "ring_bytes":
		b, err := parseSize(v)
		if err != nil {
			return err
		}
		n.Journal.RingBytes = b
	case "max_age":
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		n.Journal.MaxAge = d
	default:
		return errUnknownKey
	}
	return nil
}

func (h *Hook) set(key, v string) error {
	switch key {
	case "events":
		if ev := splitList(v); ev != nil {
			h.Events = ev
		}
	case "filter":
		h.Filter = unquote(v)
	case "command":
		words, err := SplitCommand(v)
		if err != nil {
			return err
		}
		h.Command = words
	case "timeout":
		if v = unquote(v); v == "" {
			return nil
		}
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		h.Timeout = d
	default:
		return errUnknownKey
	}
	return nil
}
