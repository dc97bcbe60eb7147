package heartbeat

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Message types: the first byte of every user message.
const (
	msgDelta   byte = 'd'
	msgFullReq byte = 'r'
	msgFull    byte = 'f'
	msgOrder   byte = 'o'
	msgState   byte = 's'
	msgLeave   byte = 'l'
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

// decode checks the type byte and decodes the JSON body strictly enough that
// garbage is rejected rather than half-read.
func decode(buf []byte, v any) error {
	if len(buf) < 2 {
		return errBadMessage
	}
	if err := json.Unmarshal(buf[1:], v); err != nil {
		return fmt.Errorf("%w: %v", errBadMessage, err)
	}
	return nil
}
