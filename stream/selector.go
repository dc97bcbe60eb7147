package stream

import (
	"slices"
	"strings"
	"sync"
)

// A selector is what a subscriber takes of the stream: kinds, and filters
// OR'ed. Subscribers that ask for the same kinds and the same filter text
// share one selector, so that the shared windows (framer.go) select and
// encode their records once for all of them.
type selector struct {
	selection
	key  string
	refs int // guarded by selectors.mu
}

// selectors interns the selectors of the subscribers that use shared
// windows. Owned by the Handler.
type selectors struct {
	mu sync.Mutex
	m  map[string]*selector
}

// selectorKey is the identity of a request's selection: its kinds and its
// filter texts, sorted and without repeats (they are OR'ed).
func selectorKey(patch, event bool, texts []string) string {
	var b strings.Builder
	switch {
	case patch && event:
		b.WriteString("patch,event")
	case patch:
		b.WriteString("patch")
	case event:
		b.WriteString("event")
	}
	t := slices.Compact(slices.Sorted(slices.Values(texts)))
	for _, s := range t {
		b.WriteByte(0)
		b.WriteString(s)
	}
	return b.String()
}

// get returns the selector of q, creating it from q's compiled filters
// when no subscriber holds one with the same key. Each get is paired with
// a put.
func (ss *selectors) get(q *request) *selector {
	key := selectorKey(q.patch, q.event, q.filterTexts)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[key]; ok {
		s.refs++
		return s
	}
	if ss.m == nil {
		ss.m = make(map[string]*selector)
	}
	s := &selector{selection: q.selection, key: key, refs: 1}
	ss.m[key] = s
	return s
}

// put releases a selector taken with get.
func (ss *selectors) put(s *selector) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s.refs--
	if s.refs == 0 {
		delete(ss.m, s.key)
	}
}
