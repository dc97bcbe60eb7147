package filter

import (
	"regexp"
	"strings"

	"github.com/tidwall/gjson"
)

// op is the operator of a condition.
type op int

const (
	opTruthy   op = iota // a path alone
	opEq                 // = and ==
	opNe                 // !=
	opGt                 // >
	opGe                 // >=
	opLt                 // <
	opLe                 // <=
	opMatch              // ~
	opNotMatch           // !~
	opIn                 // in
)

// String returns the canonical spelling of the operator.
func (o op) String() string {
	switch o {
	case opEq:
		return "="
	case opNe:
		return "!="
	case opGt:
		return ">"
	case opGe:
		return ">="
	case opLt:
		return "<"
	case opLe:
		return "<="
	case opMatch:
		return "~"
	case opNotMatch:
		return "!~"
	case opIn:
		return "in"
	}
	return ""
}

// kind is the JSON type of a VALUE. Only numbers get a comparison of their own; the other
// kinds compare as their string form and are kept apart for printing.
type kind int

const (
	kindString kind = iota
	kindNumber
	kindTrue
	kindFalse
	kindNull
)

// value is a VALUE of a filter, prepared at parse time for comparisons.
type value struct {
	kind kind
	num  float64 // for kindNumber
	// str is what a document's value is compared with when not both are numbers: the
	// content of a string, the JSON text of anything else (the number as written, "true").
	str string
}

// cond is PATH [ OP VALUE ].
type cond struct {
	path string // as written, backslashes kept, for gjson
	op   op
	val  value          // for =, !=, >, >=, <, <=
	set  []value        // for in
	re   *regexp.Regexp // for ~ and !~
}

func (c *cond) match(doc string) bool {
	r := gjson.Get(doc, c.path)
	// Every comparison on a missing path is false, != and !~ included: see doc.go.
	if !r.Exists() {
		return false
	}
	switch c.op {
	case opTruthy:
		return truthy(r)
	case opEq:
		return compare(r, c.val) == 0
	case opNe:
		return compare(r, c.val) != 0
	case opGt:
		return compare(r, c.val) > 0
	case opGe:
		return compare(r, c.val) >= 0
	case opLt:
		return compare(r, c.val) < 0
	case opLe:
		return compare(r, c.val) <= 0
	case opMatch:
		return c.re.MatchString(stringForm(r))
	case opNotMatch:
		return !c.re.MatchString(stringForm(r))
	case opIn:
		for _, v := range c.set {
			if compare(r, v) == 0 {
				return true
			}
		}
	}
	return false
}

// compare orders a document's value against a VALUE: as numbers when both are numbers, else
// as strings.
func compare(r gjson.Result, v value) int {
	if r.Type == gjson.Number && v.kind == kindNumber {
		switch {
		case r.Num < v.num:
			return -1
		case r.Num > v.num:
			return 1
		}
		return 0
	}
	return strings.Compare(stringForm(r), v.str)
}

// stringForm is what a document's value compares as when not as a number: a string's
// content, the JSON text of anything else.
func stringForm(r gjson.Result) string {
	if r.Type == gjson.String {
		return r.Str
	}
	return r.Raw
}

// truthy tells whether a value that exists makes a path alone hold: anything but false, 0,
// "", null, [] and {}.
func truthy(r gjson.Result) bool {
	switch r.Type {
	case gjson.False, gjson.Null:
		return false
	case gjson.Number:
		return r.Num != 0
	case gjson.String:
		return r.Str != ""
	case gjson.JSON:
		return !emptyContainer(r.Raw)
	}
	return true
}

// emptyContainer tells whether raw JSON text is an empty array or object, without parsing
// its elements.
func emptyContainer(raw string) bool {
	if len(raw) < 2 {
		return false
	}
	inner := strings.TrimLeft(raw[1:], " \t\r\n")
	return inner != "" && (inner[0] == ']' || inner[0] == '}')
}
