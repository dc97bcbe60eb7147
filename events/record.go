package events

import (
	"bytes"
	"encoding/json"
	"time"
)

// Record kinds. Patch and event records are numbered and journaled; full,
// reset and progress records are made for one subscriber and carry the
// sequence number current when they were made.
const (
	KindPatch    = "patch"
	KindEvent    = "event"
	KindFull     = "full"
	KindReset    = "reset"
	KindProgress = "progress"
)

// TimeFormat is how record times are written: UTC with microseconds.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// Record is one entry of an agent's stream (SPEC section 4). A Record is
// immutable once made: its JSON encoding is computed once and shared by every
// subscriber, the journal and the hooks.
type Record struct {
	Seq      uint64
	Epoch    string
	Time     time.Time
	Nodename string
	Kind     string
	Data     json.RawMessage

	raw    []byte
	shared bool // Data is a part of raw
}

// wireRecord is the JSON shape of a Record, in the key order of the SPEC.
type wireRecord struct {
	Seq      uint64          `json:"seq"`
	Epoch    string          `json:"epoch"`
	Time     string          `json:"time"`
	Nodename string          `json:"nodename"`
	Kind     string          `json:"kind"`
	Data     json.RawMessage `json:"data"`
}

// NewRecord makes a record and computes its encoding. A nil or empty data
// becomes JSON null.
func NewRecord(seq uint64, epoch string, t time.Time, nodename, kind string, data json.RawMessage) *Record {
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	r := &Record{Seq: seq, Epoch: epoch, Time: t.UTC(), Nodename: nodename, Kind: kind, Data: data}
	w := wireRecord{Seq: seq, Epoch: epoch, Time: r.Time.Format(TimeFormat), Nodename: nodename, Kind: kind, Data: data}
	raw, err := json.Marshal(w)
	if err != nil {
		// Data was not valid JSON: keep the record, but say so in it rather than
		// emit a line no reader can parse.
		w.Data, _ = json.Marshal(map[string]string{"error": "invalid record data: " + err.Error()})
		r.Data = w.Data
		raw, _ = json.Marshal(w)
	}
	r.raw = raw
	r.shareData()
	return r
}

// shareData points Data into raw when raw ends with it (data is the last
// field), so a record's data is held once in memory, not twice.
func (r *Record) shareData() {
	if end := len(r.raw) - 1; end > len(r.Data) && bytes.Equal(r.raw[end-len(r.Data):end], r.Data) {
		r.Data = r.raw[end-len(r.Data) : end : end]
		r.shared = true
	}
}

// recordOverhead is what a Record costs beyond its encoding and data, for
// the ring's byte bound.
const recordOverhead = 160

// memSize is the memory a record holds, for the ring's byte bound.
func (r *Record) memSize() int64 {
	n := int64(len(r.raw) + recordOverhead)
	if !r.shared {
		n += int64(len(r.Data))
	}
	return n
}

// JSON returns the record's encoding: one line of JSON without the newline.
// The caller must not modify it.
func (r *Record) JSON() []byte { return r.raw }

// ParseRecord decodes one JSON line into a Record, keeping the line as its
// encoding.
func ParseRecord(line []byte) (*Record, error) {
	var w wireRecord
	if err := json.Unmarshal(line, &w); err != nil {
		return nil, err
	}
	r := &Record{Seq: w.Seq, Epoch: w.Epoch, Nodename: w.Nodename, Kind: w.Kind, Data: w.Data}
	if w.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Time)
		if err != nil {
			return nil, err
		}
		r.Time = t
	}
	r.raw = append([]byte(nil), line...)
	r.shareData()
	return r, nil
}
