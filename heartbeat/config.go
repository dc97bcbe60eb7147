package heartbeat

import (
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures the heartbeat of one agent.
type Config struct {
	// Name is this node's name (memberlist node name).
	Name string
	// ClusterName labels every packet, so two clusters never merge.
	ClusterName string
	// Secret is the gossip encryption key (16, 24 or 32 bytes), or nil.
	Secret []byte
	// BindAddr and BindPort are where memberlist listens (UDP and TCP).
	BindAddr string
	BindPort int
	// Advertise is the address (host or host:port) peers should use, when
	// it differs from the bind address.
	Advertise string
	// Profile picks memberlist's timings: lan (default), wan or local.
	Profile string
	// Seeds are host:port addresses to join; retried until one answers.
	Seeds []string
	// ForgetAfter is how long a dead or left peer's data is kept; default 5m.
	ForgetAfter time.Duration
	// Coalesce is the window within which local changes that follow a send
	// are merged into one delta; default 5ms.
	Coalesce time.Duration
	// FullRetry is how long to wait for an answer to a full request before
	// asking again; default 1s.
	FullRetry time.Duration
	// Refresh is how often the forget grace and unanswered full requests
	// are checked; default 1s.
	Refresh time.Duration
	// Tune, when set, adjusts the memberlist config last (tests shrink the
	// timings to milliseconds or set an in-memory transport).
	Tune func(*memberlist.Config)
	// DropIncoming, when set, drops the user messages it returns true for
	// (tests: message loss on purpose).
	DropIncoming func(msg []byte) bool
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// idleGossipInterval is memberlist's gossip rate in the lan and local
// profiles. Deltas go to each peer directly, never by gossip, and
// memberlist piggybacks its own membership news on every probe and ack as
// well, so gossip carries little; but each round wakes the process, and
// those wake-ups were most of an idle agent's CPU (memberlist's 100 ms:
// about 1% of a core in a 5-node cluster; 200 ms: 0.5%).
const idleGossipInterval = 500 * time.Millisecond

func (h *Heartbeat) memberlistConfig() (*memberlist.Config, error) {
	var mc *memberlist.Config
	switch h.cfg.Profile {
	case "", "lan":
		mc = memberlist.DefaultLANConfig()
		mc.PushPullInterval = 10 * time.Second
		mc.GossipInterval = idleGossipInterval
	case "wan":
		mc = memberlist.DefaultWANConfig()
	case "local":
		mc = memberlist.DefaultLocalConfig()
		mc.PushPullInterval = 5 * time.Second
		mc.GossipInterval = idleGossipInterval
	default:
		return nil, fmt.Errorf("heartbeat profile %q: want lan, wan or local", h.cfg.Profile)
	}
	mc.Name = h.cfg.Name
	mc.Label = h.cfg.ClusterName
	mc.BindAddr = h.cfg.BindAddr
	mc.BindPort = h.cfg.BindPort
	mc.AdvertisePort = h.cfg.BindPort
	if h.cfg.Advertise != "" {
		host, port, err := net.SplitHostPort(h.cfg.Advertise)
		if err != nil {
			host, port = h.cfg.Advertise, strconv.Itoa(h.cfg.BindPort)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("heartbeat advertise %q: bad port", h.cfg.Advertise)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, p
	}
	if len(h.cfg.Secret) > 0 {
		mc.SecretKey = h.cfg.Secret
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.DeadNodeReclaimTime = 10 * time.Second
	mc.Delegate = (*delegate)(h)
	mc.Events = (*eventDelegate)(h)
	mc.Merge = (*mergeDelegate)(h)
	mc.Logger = log.New(&slogWriter{log: h.log, limit: newBadPacketLimiter(h.cfg.Now), bad: func() { h.c.badMessages.Add(1) }}, "", 0)
	if h.cfg.Tune != nil {
		h.cfg.Tune(mc)
	}
	return mc, nil
}
