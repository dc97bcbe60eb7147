package monitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/wI2L/jsondiff"
)

// Canonical returns raw re-encoded with sorted keys and numbers kept as
// written, so equal data gives equal bytes on every agent.
func Canonical(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	return json.Marshal(v)
}

// marshalCanonical encodes v canonically.
func marshalCanonical(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Canonical(raw)
}

// Diff returns the RFC 6902 operations taking the JSON document a to b,
// with every path under prefix (a JSON pointer, "" for the root).
func Diff(a, b []byte, prefix string) (json.RawMessage, error) {
	p, err := jsondiff.CompareJSON(a, b)
	if err != nil {
		return nil, err
	}
	if prefix != "" {
		for i := range p {
			p[i].Path = prefix + p[i].Path
			if p[i].From != "" {
				p[i].From = prefix + p[i].From
			}
		}
	}
	if len(p) == 0 {
		return json.RawMessage("[]"), nil
	}
	return json.Marshal(p)
}

// Prefix rewrites every path (and from) of an operation list to sit under
// prefix.
func Prefix(ops json.RawMessage, prefix string) (json.RawMessage, error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(ops, &list); err != nil {
		return nil, err
	}
	for _, op := range list {
		for _, k := range []string{"path", "from"} {
			raw, ok := op[k]
			if !ok {
				continue
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("operation %s: %w", k, err)
			}
			op[k], _ = json.Marshal(prefix + s)
		}
	}
	return json.Marshal(list)
}

// Pointer builds a JSON pointer from tokens, escaping "~" and "/" as RFC
// 6901 requires.
func Pointer(tokens ...string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}
