package heartbeat

import (
	"encoding/json"
	"errors"
	"fmt"

	"agent/monitor"
)

// Message types: the first byte of every user message.
const (
	msgDelta   byte = 'd'
	msgFullReq byte = 'r'
	msgFull    byte = 'f'
	msgOrder   byte = 'o'
	msgState   byte = 's'
	msgLeave   byte = 'l'
	msgDigest  byte = 'g'
	msgCrash   byte = 'x'
)

// leaveMsg announces a graceful leave just before memberlist's own, so
// that peers can tell "left" from "dead": memberlist's leave callback
// does not say which it was.
type leaveMsg struct {
	Node string `json:"n"`
}

type deltaMsg struct {
	Node string          `json:"n"`
	Boot string          `json:"b"`
	Base uint64          `json:"f"`
	Gen  uint64          `json:"g"`
	Ops  json.RawMessage `json:"o"`
}

// fullReqMsg asks for the whole data of node Of: its owner's, or, when
// sent to another node (a relay), the copy that node holds.
type fullReqMsg struct {
	From string `json:"r"`
	Of   string `json:"n"`
	Why  string `json:"w"`
}

type fullMsg struct {
	Node string          `json:"n"`
	Boot string          `json:"b"`
	Gen  uint64          `json:"g"`
	Data json.RawMessage `json:"d"`
	Why  string          `json:"w,omitempty"`
	// Relay names the node that sent its copy of Node's data; empty when
	// Node sent its own.
	Relay string `json:"r,omitempty"`
}

// digestMsg is a node's digest of its own data: sent to every peer after
// its last change, and carried by the acks of memberlist's probes. On an
// ack it also carries the digests of a few other nodes' data as the
// sender holds them (More): a prober cut from a node (a bridge partition)
// learns from a third one that its copy is behind, and asks that one.
type digestMsg struct {
	Node   string         `json:"n"`
	Digest monitor.Digest `json:"d"`
	More   []nodeDigest   `json:"m,omitempty"`
}

// nodeDigest is the digest of a node's data as a third node holds it.
type nodeDigest struct {
	Node   string         `json:"n"`
	Digest monitor.Digest `json:"d"`
}

// Order is an order sent to another node over the heartbeat, because only
// that node changes its own data.
type Order struct {
	// From is the node that forwarded the order.
	From string `json:"from"`
	// Target is the node that must carry it out.
	Target string `json:"target"`
	// Action is what to do: freeze or thaw.
	Action string `json:"action"`
}

var errBadMessage = errors.New("malformed heartbeat message")

func encode(t byte, v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		// Only our own message structs are encoded here.
		return nil
	}
	return append([]byte{t}, raw...)
}

// decodeMessage parses one heartbeat message as it came from the network
// (a user message, a push/pull state or an ack payload): the type byte,
// then the JSON body, strictly enough that garbage is rejected rather
// than half-read, and the fields every message of the type needs. It is
// the only place where heartbeat bytes from a peer are parsed. The value
// is a pointer to the message struct of the type: *deltaMsg,
// *fullReqMsg, *fullMsg (for msgFull and msgState), *Order, *leaveMsg or
// *digestMsg.
func decodeMessage(buf []byte) (kind byte, v any, err error) {
	if len(buf) < 2 {
		return 0, nil, fmt.Errorf("%w: %d bytes", errBadMessage, len(buf))
	}
	kind = buf[0]
	var missing func() bool
	switch kind {
	case msgDelta:
		m := &deltaMsg{}
		v, missing = m, func() bool { return m.Node == "" }
	case msgFullReq:
		m := &fullReqMsg{}
		v, missing = m, func() bool { return m.From == "" }
	case msgFull, msgState:
		m := &fullMsg{}
		v, missing = m, func() bool { return m.Node == "" }
	case msgOrder:
		m := &Order{}
		v, missing = m, func() bool { return m.Target == "" }
	case msgLeave:
		m := &leaveMsg{}
		v, missing = m, func() bool { return m.Node == "" }
	case msgDigest:
		m := &digestMsg{}
		v, missing = m, func() bool { return m.Node == "" }
	case msgCrash:
		m := &crashMsg{}
		v, missing = m, func() bool { return m.Node == "" || m.Addr == "" }
	default:
		return kind, nil, fmt.Errorf("%w: unknown type %q", errBadMessage, kind)
	}
	if err := json.Unmarshal(buf[1:], v); err != nil {
		return kind, nil, fmt.Errorf("%w: type %q: %v", errBadMessage, kind, err)
	}
	if missing() {
		return kind, nil, fmt.Errorf("%w: type %q: no node name", errBadMessage, kind)
	}
	return kind, v, nil
}
