package stream

import (
	"encoding/json"
	"errors"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"agent/events"
)

// Sentinel errors of Mirror.Apply.
var (
	// ErrNeedFull: the mirror has no document to patch (none yet, after a
	// reset, or after a patch failed); it waits for a full record.
	ErrNeedFull = errors.New("mirror needs a full record")
	// ErrGap: a record does not follow the mirror's: it goes back, or it is
	// of another epoch without a reset before it.
	ErrGap = errors.New("records missing before this one")
)

// Mirror holds a copy of an agent's cluster data built from a full record
// and the patch records after it, for `agent wait` and other clients.
//
// Feed it every record of a stream that asked for a snapshot, of both
// kinds or of patches only. Seqs need not be consecutive: events are holes
// in a stream of patches, and the agent's numbering jumps over a reserved
// range after an unclean stop. The agent never leaves a silent gap (a
// reset record says when records were lost), so the mirror takes any
// record after its seq in its epoch, and refuses one that goes back or
// changes the epoch without a reset. A Mirror is not safe for concurrent
// use.
type Mirror struct {
	doc   []byte
	seq   uint64
	epoch string
	ready bool
	opts  *jsonpatch.ApplyOptions
}

// Apply takes the next record: a full record replaces the document, a
// patch is applied (only when it comes after the mirror's seq, in its
// epoch), a reset makes the mirror wait for a full record; events and
// progress records move its seq.
// On error the document is unchanged; after a failed patch the mirror needs
// a full record.
func (m *Mirror) Apply(rec *events.Record) error {
	switch rec.Kind {
	case events.KindFull:
		if !json.Valid(rec.Data) {
			return fmt.Errorf("full record %d: invalid JSON document", rec.Seq)
		}
		m.doc = append(m.doc[:0:0], rec.Data...)
		m.seq, m.epoch, m.ready = rec.Seq, rec.Epoch, true
		return nil
	case events.KindReset:
		m.seq, m.epoch, m.ready = rec.Seq, rec.Epoch, false
		return nil
	case events.KindProgress:
		// Records up to it were passed over: filtered out, or none.
		if m.ready && rec.Epoch == m.epoch && rec.Seq > m.seq {
			m.seq = rec.Seq
		}
		return nil
	case events.KindEvent:
		if !m.ready {
			return nil
		}
		if err := m.checkNext(rec); err != nil {
			return err
		}
		m.seq = rec.Seq
		return nil
	case events.KindPatch:
		if !m.ready {
			return fmt.Errorf("patch %d: %w", rec.Seq, ErrNeedFull)
		}
		if err := m.checkNext(rec); err != nil {
			return err
		}
		if m.opts == nil {
			m.opts = jsonpatch.NewApplyOptions()
		}
		p, err := jsonpatch.DecodePatch(rec.Data)
		if err == nil {
			var doc []byte
			doc, err = p.ApplyWithOptions(m.doc, m.opts)
			if err == nil {
				m.doc, m.seq = doc, rec.Seq
				return nil
			}
		}
		m.ready = false
		return fmt.Errorf("apply patch %d from %s: %w (%w)", rec.Seq, rec.Nodename, err, ErrNeedFull)
	}
	return nil
}

func (m *Mirror) checkNext(rec *events.Record) error {
	if rec.Epoch != m.epoch {
		return fmt.Errorf("%s %d of epoch %s after epoch %s: %w", rec.Kind, rec.Seq, rec.Epoch, m.epoch, ErrGap)
	}
	if rec.Seq > m.seq {
		return nil
	}
	return fmt.Errorf("%s %d after %d: %w", rec.Kind, rec.Seq, m.seq, ErrGap)
}

// Doc returns the document, nil before the first full record. The caller
// must not modify it; it stays valid after later Applies.
func (m *Mirror) Doc() []byte { return m.doc }

// Seq returns the seq the document is exact at.
func (m *Mirror) Seq() uint64 { return m.seq }

// Epoch returns the epoch of Seq.
func (m *Mirror) Epoch() string { return m.epoch }

// Ready says whether Doc is current: false before the first full record and
// after a reset or a failed patch.
func (m *Mirror) Ready() bool { return m.ready }
