package agent

import (
	"errors"

	"agent/history"
)

// consumeForSink opens the durable journal consumer a sink reads.
//
// Placeholder until the shared durable consumer is merged: sinks cannot
// run without it.
func (a *Agent) consumeForSink(name string, loss func(reason string, count uint64, countKnown bool, detail string)) (history.Source, error) {
	return nil, errors.New("the durable journal consumer is not in this build")
}
