package heartbeat

import (
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/internal/ride"
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
	// ForgetAfter is how long a dead or left peer's data is kept; default
	// 5m. Its address stays in the reconnect set.
	ForgetAfter time.Duration
	// ReconnectTimeout is how long a dead peer's address is retried after
	// it was last seen alive; default 72h.
	ReconnectTimeout time.Duration
	// PeersFile, when set, is where the reconnect set is kept across
	// restarts (var/peers.json).
	PeersFile string
	// MaxPeers bounds the reconnect set; default 4096. The peers seen
	// alive longest ago are dropped first.
	MaxPeers int
	// DigestDelay is how long after its last change this node sends the
	// digest of its data to every peer (again at five times that), so
	// that a peer that lost the last delta asks for the data; default
	// 200ms.
	DigestDelay time.Duration
	// DigestGrace is how long a peer waits, when a digest or a push/pull
	// says its copy is behind, for a delta that may be in flight before
	// it asks for or takes the whole data; default 100ms.
	DigestGrace time.Duration
	// QueueLimit bounds each peer's queue of reliable sends, in messages;
	// default 64. Past it the queued deltas give way to one full copy.
	QueueLimit int
	// Coalesce is the window within which local changes that follow a send
	// are merged into one delta; default 5ms.
	Coalesce time.Duration
	// FullRetry is how long to wait for an answer to a full request before
	// asking again; default 1s.
	FullRetry time.Duration
	// Refresh is how often the forget grace, unanswered full requests and
	// the reconnect set are checked; default 1s.
	Refresh time.Duration
	// Bell, when set, is rung whenever memberlist sends or receives a
	// packet: periodic work elsewhere in the process rides on those
	// wake-ups instead of timers of its own (package ride).
	Bell *ride.Bell
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

func (h *Heartbeat) memberlistConfig() (*memberlist.Config, error) {
	mc, err := profileConfig(h.cfg.Profile)
	if err != nil {
		return nil, err
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
	mc.Ping = (*pingDelegate)(h)
	mc.Logger = log.New(&slogWriter{log: h.log, limit: newBadPacketLimiter(h.cfg.Now), bad: func() { h.c.badMessages.Add(1) }}, "", 0)
	if h.cfg.Tune != nil {
		h.cfg.Tune(mc)
	}
	return mc, nil
}

// profileConfig returns memberlist's config for a timing profile. The
// figures and the measurements behind them are in docs/membership.md.
//
// lan (the default) is tuned so that a node killed is seen dead by every
// peer within about 3 s at 5 to 30 nodes, while a live but slow node is
// not judged dead:
//
//   - probes every 400 ms (memberlist: 1 s). A dead node waits about one
//     interval to be probed (every peer probes one node per interval, so
//     each node gets about one probe per interval), then the probe takes
//     one interval (indirect probes and the TCP fallback run until then).
//   - a suspicion lasts 2 intervals, times log10 of the cluster size from
//     10 nodes on (0.8 s at 5 nodes, 1.2 s at 30): the time a live node
//     has to refute it. memberlist's default multiplier (4) also waits
//     for confirmations from other peers before its shortest timeout, up
//     to 6 times longer: 26 s when two of four nodes died together, with
//     two left to confirm. With 2, no confirmation is awaited.
//   - Lifeguard's awareness stays on: a node whose own probes go
//     unanswered (it is slow itself) probes less often and waits longer
//     before it suspects anyone.
//   - gossip every 300 ms: suspicions, refutations and deaths reach every
//     peer in a few rounds (they also ride on every probe and ack).
//   - push/pull every 30 s (memberlist's): digests now find a lost
//     delta; push/pull is the backstop.
//   - no compression: memberlist compresses every packet with a fresh
//     64 KiB LZW table, to save a few bytes on a ping.
//
// local keeps memberlist's local timings (a probe a second) with the same
// compression choice; wan is memberlist's own.
func profileConfig(name string) (*memberlist.Config, error) {
	var mc *memberlist.Config
	switch name {
	case "", "lan":
		mc = memberlist.DefaultLANConfig()
		mc.ProbeInterval = 400 * time.Millisecond
		mc.ProbeTimeout = 200 * time.Millisecond
		mc.SuspicionMult = 2
		mc.GossipInterval = 300 * time.Millisecond
		mc.EnableCompression = false
	case "wan":
		mc = memberlist.DefaultWANConfig()
	case "local":
		mc = memberlist.DefaultLocalConfig()
		mc.PushPullInterval = 5 * time.Second
		mc.GossipInterval = 500 * time.Millisecond
		mc.EnableCompression = false
	default:
		return nil, fmt.Errorf("heartbeat profile %q: want lan, wan or local", name)
	}
	return mc, nil
}
