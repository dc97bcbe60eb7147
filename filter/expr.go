package filter

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Expr is a parsed filter expression. Build one with [Parse].
type Expr struct {
	root  node
	paths []string
}

// Match reports whether the expression holds on the JSON document doc.
func (e *Expr) Match(doc []byte) bool {
	// gjson reads a string. Converting without a copy keeps Match free of allocations on the
	// hot paths (every record of a stream, every change of the cluster data); it is sound
	// because nothing derived from the document outlives this call and doc is only read.
	return e.root.match(unsafe.String(unsafe.SliceData(doc), len(doc)))
}

// String returns the canonical form of the expression: Parse(e.String()) gives an
// expression with the same String.
func (e *Expr) String() string {
	var b strings.Builder
	e.root.format(&b, levelOr)
	return b.String()
}

// Paths returns the paths the expression reads, each once, in order of first appearance and
// as written in the filter (gjson syntax, backslashes kept), as [Get] takes them.
func (e *Expr) Paths() []string {
	return append([]string(nil), e.paths...)
}

// Get returns the value at a gjson path of the JSON document doc as raw JSON (`0`,
// `"idle"`, `{"zone":"a"}`), and whether the path exists. It serves
// `agent daemon status --filter PATH`. The returned string does not share memory with doc.
func Get(doc []byte, path string) (raw string, ok bool) {
	r := gjson.GetBytes(doc, path)
	return r.Raw, r.Exists()
}

// Any is a set of expressions of which one must hold: repeated --filter options (and
// repeated filter= query parameters) are OR'ed. Its elements come from [Parse]; none is nil.
type Any []*Expr

// Match reports whether any expression of a holds on doc. An empty Any holds on every
// document, as no --filter at all lets everything through.
func (a Any) Match(doc []byte) bool {
	if len(a) == 0 {
		return true
	}
	for _, e := range a {
		if e.Match(doc) {
			return true
		}
	}
	return false
}

// node is one term of a parsed expression.
type node interface {
	// match evaluates the term on a JSON document.
	match(doc string) bool
	// format writes the canonical form, in parentheses when the term binds more loosely
	// than the context requires.
	format(b *strings.Builder, context level)
}

// level is a binding strength: a term printed where a stronger one is required gets
// parentheses.
type level int

const (
	levelOr level = iota
	levelAnd
	levelUnary
)

type orNode []node

func (n orNode) match(doc string) bool {
	for _, x := range n {
		if x.match(doc) {
			return true
		}
	}
	return false
}

func (n orNode) format(b *strings.Builder, context level) {
	formatList(b, context, levelOr, " or ", n)
}

type andNode []node

func (n andNode) match(doc string) bool {
	for _, x := range n {
		if !x.match(doc) {
			return false
		}
	}
	return true
}

func (n andNode) format(b *strings.Builder, context level) {
	formatList(b, context, levelAnd, " and ", n)
}

func formatList(b *strings.Builder, context, own level, sep string, list []node) {
	if context > own {
		b.WriteByte('(')
		defer b.WriteByte(')')
	}
	for i, x := range list {
		if i > 0 {
			b.WriteString(sep)
		}
		// own+1: a child of the same kind was flattened away, so only a looser one (an
		// "or" under an "and") can stand here, and it needs parentheses.
		x.format(b, own+1)
	}
}

// flattenOr merges the "or" lists among the terms into one, so that `(a or b) or c` and
// `a or b or c` are one expression with one canonical form.
func flattenOr(list orNode) orNode {
	var out orNode
	for _, x := range list {
		if inner, ok := x.(orNode); ok {
			out = append(out, inner...)
		} else {
			out = append(out, x)
		}
	}
	return out
}

// flattenAnd is flattenOr for "and".
func flattenAnd(list andNode) andNode {
	var out andNode
	for _, x := range list {
		if inner, ok := x.(andNode); ok {
			out = append(out, inner...)
		} else {
			out = append(out, x)
		}
	}
	return out
}

type notNode struct{ x node }

func (n notNode) match(doc string) bool { return !n.x.match(doc) }

func (n notNode) format(b *strings.Builder, context level) {
	b.WriteString("not ")
	n.x.format(b, levelUnary)
}

// format writes a condition, which binds tightest of all: it never needs parentheses.
func (c *cond) format(b *strings.Builder, _ level) {
	b.WriteString(c.path)
	switch c.op {
	case opTruthy:
	case opIn:
		b.WriteString(" in [")
		for i, v := range c.set {
			if i > 0 {
				b.WriteByte(',')
			}
			v.formatJSON(b)
		}
		b.WriteByte(']')
	case opMatch, opNotMatch:
		b.WriteString(c.op.String())
		formatPattern(b, c.re.String())
	default:
		b.WriteString(c.op.String())
		c.val.format(b)
	}
}

// formatPattern writes a regular expression bare when it reads back the same way, else as a
// JSON string: with whitespace, a leading quote or a trailing ")" (which the parser may give
// back to an enclosing parenthesis) it would not.
func formatPattern(b *strings.Builder, pattern string) {
	bare := pattern != "" && pattern[0] != '"' && !strings.HasSuffix(pattern, ")") &&
		strings.IndexFunc(pattern, unicode.IsSpace) < 0
	if bare {
		b.WriteString(pattern)
		return
	}
	writeJSONString(b, pattern)
}

// format writes a value bare when it reads back as the same value, else as JSON.
func (v value) format(b *strings.Builder) {
	if v.kind == kindString {
		if text, back, ok := readBare(v.str); ok && len(text) == len(v.str) && back == v {
			b.WriteString(v.str)
			return
		}
	}
	v.formatJSON(b)
}

func (v value) formatJSON(b *strings.Builder) {
	if v.kind == kindString {
		writeJSONString(b, v.str)
		return
	}
	b.WriteString(v.str)
}

func writeJSONString(b *strings.Builder, s string) {
	// An Encoder rather than json.Marshal so that <, > and & stay readable. Encoding a
	// string cannot fail.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	b.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}
