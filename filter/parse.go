package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"agent/internal/clip"
)

// maxNest bounds the nesting of parentheses and "not": the parser, String and Match recurse
// once per level, and a filter from a user must not be able to exhaust the stack.
const maxNest = 100

// Limits on a filter: anyone who can subscribe to a stream hands the agent a filter that it
// then evaluates on every record, so its size and its work per record are bounded.
const (
	// MaxBytes is the longest filter Parse accepts.
	MaxBytes = 64 << 10
	// MaxTerms is the most terms a filter may hold: conditions, plus the elements of the
	// arrays after "in".
	MaxTerms = 1000
)

// SyntaxError is the error Parse returns for a filter that does not parse.
type SyntaxError struct {
	// Expr is the filter as given to Parse.
	Expr string
	// Col is the 1-based column, counted in runes, the error points at. It is one past the
	// last rune when the filter ended too early.
	Col int
	// Msg says what is wrong, without the filter or the column.
	Msg string
}

// Error returns one line naming the filter, the column and the problem, for example
// `filter "a=" column 3: expected a value after "="`. A filter longer than 200 bytes is cut
// there, with its size.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter %s column %d: %s", clip.Quote(e.Expr), e.Col, e.Msg)
}

// Parse parses a filter expression (see the package documentation). Its errors are
// [*SyntaxError].
func Parse(s string) (*Expr, error) {
	p := &parser{s: s}
	if len(s) > MaxBytes {
		return nil, p.errAt(MaxBytes, "the filter is %d bytes, more than the %d accepted", len(s), MaxBytes)
	}
	p.skipSpace()
	if p.pos == len(s) {
		return nil, p.errAt(0, "empty filter")
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(s) {
		if s[p.pos] == ')' {
			return nil, p.errAt(p.pos, `unexpected ")" without a matching "("`)
		}
		return nil, p.errAt(p.pos, `expected "and", "or" or the end of the filter, found %s`, p.found())
	}
	return &Expr{root: root, paths: p.paths}, nil
}

// parser is a recursive descent parser working directly on the filter text: the tokens depend
// on where they stand (a path, a bare word and a bare regular expression end at different
// characters), so a separate lexer would need to know the grammar anyway.
type parser struct {
	s     string
	pos   int      // byte offset of the next unread character
	open  int      // parentheses open at pos, which a bare regular expression may not eat
	nest  int      // parentheses and "not"s being parsed, bounded by maxNest
	terms int      // terms read so far, bounded by MaxTerms
	paths []string // paths read so far, each once, in order of appearance
}

func (p *parser) errAt(off int, format string, args ...any) *SyntaxError {
	return &SyntaxError{
		Expr: p.s,
		Col:  utf8.RuneCountInString(p.s[:off]) + 1,
		Msg:  fmt.Sprintf(format, args...),
	}
}

// found describes what stands at pos for an error message: the rest of the word, quoted.
func (p *parser) found() string {
	if p.pos >= len(p.s) {
		return "the end of the filter"
	}
	end := p.pos
	for end < len(p.s) {
		r, size := utf8.DecodeRuneInString(p.s[end:])
		if unicode.IsSpace(r) || (end > p.pos && (r == '(' || r == ')')) {
			break
		}
		end += size
	}
	return clip.Quote(p.s[p.pos:end])
}

func (p *parser) skipSpace() {
	for p.pos < len(p.s) {
		r, size := utf8.DecodeRuneInString(p.s[p.pos:])
		if !unicode.IsSpace(r) {
			return
		}
		p.pos += size
	}
}

// keyword skips whitespace and consumes kw if it stands there as a word of its own: followed
// by the end, whitespace, "(" or "[" (so `not(a)` and `a in["x"]` read as expected, while
// `in.x` or `not=1` are paths).
func (p *parser) keyword(kw string) bool {
	p.skipSpace()
	if !strings.HasPrefix(p.s[p.pos:], kw) {
		return false
	}
	end := p.pos + len(kw)
	if end < len(p.s) {
		r, _ := utf8.DecodeRuneInString(p.s[end:])
		if !unicode.IsSpace(r) && r != '(' && r != '[' {
			return false
		}
	}
	p.pos = end
	return true
}

func (p *parser) parseOr() (node, *SyntaxError) {
	x, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	list := orNode{x}
	for p.keyword("or") {
		y, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		list = append(list, y)
	}
	if len(list) == 1 {
		return x, nil
	}
	return flattenOr(list), nil
}

func (p *parser) parseAnd() (node, *SyntaxError) {
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	list := andNode{x}
	for p.keyword("and") {
		y, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		list = append(list, y)
	}
	if len(list) == 1 {
		return x, nil
	}
	return flattenAnd(list), nil
}

func (p *parser) parseUnary() (node, *SyntaxError) {
	p.skipSpace()
	if p.pos == len(p.s) {
		return nil, p.errAt(p.pos, `unexpected end of the filter, expected a condition`)
	}
	if p.nest >= maxNest {
		return nil, p.errAt(p.pos, "filter nested too deeply (more than %d parentheses or \"not\")", maxNest)
	}
	if p.s[p.pos] == '(' {
		start := p.pos
		p.pos++
		p.open++
		p.nest++
		x, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos == len(p.s) {
			return nil, p.errAt(start, `unclosed "("`)
		}
		if p.s[p.pos] != ')' {
			return nil, p.errAt(p.pos, `expected "and", "or" or ")", found %s`, p.found())
		}
		p.pos++
		p.open--
		p.nest--
		return x, nil
	}
	if p.keyword("not") {
		p.nest++
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		p.nest--
		return notNode{x}, nil
	}
	return p.parseCond()
}

// opChars end a path: they start an operator.
const opChars = "=!<>~"

func (p *parser) parseCond() (node, *SyntaxError) {
	start := p.pos
	if p.terms++; p.terms > MaxTerms {
		return nil, p.errAt(start, "more than %d terms (conditions and elements of \"in\" arrays)", MaxTerms)
	}
	path, err := p.lexPath()
	if err != nil {
		return nil, err
	}
	if path == "" {
		// parseUnary saw neither the end, "(" nor "not", so an operator or ")" stands here.
		return nil, p.errAt(p.pos, "expected a condition, found %s", p.found())
	}
	switch path {
	case "and", "or", "not", "in":
		return nil, p.errAt(start, `%q is a keyword, not a path (write \%s for a key named %q)`, path, path, path) // a keyword: short
	}
	p.addPath(path)
	c := &cond{path: path}

	afterPath := p.pos
	p.skipSpace()
	opStart := p.pos
	op, err := p.lexOp()
	if err != nil {
		return nil, err
	}
	if op == opTruthy {
		if !p.keyword("in") {
			// A path alone: leave what follows to the callers, which know what may come next.
			p.pos = afterPath
			return c, nil
		}
		op = opIn
	}
	c.op = op
	opText := p.s[opStart:p.pos]

	p.skipSpace()
	valStart := p.pos
	switch op {
	case opIn:
		if p.pos == len(p.s) || p.s[p.pos] != '[' {
			return nil, p.errAt(p.pos, `expected a JSON array after "in", like ["a","b"]`)
		}
		set, err := p.lexArray()
		if err != nil {
			return nil, err
		}
		c.set = set
	case opMatch, opNotMatch:
		pattern, err := p.lexPattern(opText)
		if err != nil {
			return nil, err
		}
		re, cerr := regexp.Compile(pattern)
		if cerr != nil {
			msg := cerr.Error()
			var se *syntax.Error
			if errors.As(cerr, &se) {
				msg = fmt.Sprintf("%s in %s", se.Code, clip.Quote(se.Expr))
			}
			return nil, p.errAt(valStart, "bad regular expression: %s", msg)
		}
		c.re = re
	default:
		v, err := p.lexValue(opText)
		if err != nil {
			return nil, err
		}
		c.val = v
	}
	// A value ends at whitespace or ")"; anything glued to it is a mistake worth naming
	// here rather than as a vague "expected and/or" further on.
	if p.pos < len(p.s) {
		r, _ := utf8.DecodeRuneInString(p.s[p.pos:])
		if !unicode.IsSpace(r) && r != ')' {
			return nil, p.errAt(p.pos, `unexpected %q after the value (write values with other characters as JSON strings: "...")`, r)
		}
	}
	return c, nil
}

func (p *parser) addPath(path string) {
	for _, q := range p.paths {
		if q == path {
			return
		}
	}
	p.paths = append(p.paths, path)
}

// lexPath reads a path: everything up to whitespace, an operator character or ")", where a
// backslash takes the next character whatever it is and a "(" takes everything up to its
// matching ")". The backslashes stay: gjson reads them.
func (p *parser) lexPath() (string, *SyntaxError) {
	start := p.pos
	for p.pos < len(p.s) {
		r, size := utf8.DecodeRuneInString(p.s[p.pos:])
		if r == '\\' {
			if p.pos+1 == len(p.s) {
				return "", p.errAt(p.pos, "backslash at the end of the filter escapes nothing")
			}
			_, next := utf8.DecodeRuneInString(p.s[p.pos+1:])
			p.pos += 1 + next
			continue
		}
		if r == '(' {
			// A gjson query (`data.#(path%"*/frozen").value`) holds operators, spaces
			// and quotes of its own: it runs to its matching ")".
			end := matchParen(p.s[p.pos:])
			if end < 0 {
				return "", p.errAt(p.pos, `unclosed "(" in the path`)
			}
			p.pos += end
			continue
		}
		if unicode.IsSpace(r) || r == ')' || strings.ContainsRune(opChars, r) {
			break
		}
		p.pos += size
	}
	return p.s[start:p.pos], nil
}

// matchParen returns the length of the parenthesized text at the start of s, nested
// parentheses, JSON strings and backslash escapes included, or -1 when it is not closed.
func matchParen(s string) int {
	depth := 0
	inString := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// lexOp reads an operator other than "in"; it returns opTruthy, consuming nothing, when none
// stands at pos.
func (p *parser) lexOp() (op, *SyntaxError) {
	rest := p.s[p.pos:]
	for _, o := range opTable {
		if strings.HasPrefix(rest, o.text) {
			p.pos += len(o.text)
			return o.op, nil
		}
	}
	if strings.HasPrefix(rest, "!") {
		return 0, p.errAt(p.pos, `unexpected "!", expected "!=" or "!~"`)
	}
	return opTruthy, nil
}

// opTable lists the operators longest first, so that "==" is not read as "=" then "=".
var opTable = []struct {
	text string
	op   op
}{
	{"==", opEq}, {"!=", opNe}, {"!~", opNotMatch}, {">=", opGe}, {"<=", opLe},
	{"=", opEq}, {">", opGt}, {"<", opLt}, {"~", opMatch},
}

// lexValue reads the VALUE of a comparison other than "in", "~" and "!~".
func (p *parser) lexValue(opText string) (value, *SyntaxError) {
	if p.pos == len(p.s) {
		return value{}, p.errAt(p.pos, "expected a value after %q", opText)
	}
	switch p.s[p.pos] {
	case '"':
		str, err := p.lexString()
		if err != nil {
			return value{}, err
		}
		return stringValue(str), nil
	case '[':
		return value{}, p.errAt(p.pos, `an array is a value only after "in"`)
	case '{':
		return value{}, p.errAt(p.pos, "a JSON object cannot be compared; compare its fields")
	}
	text, v, ok := readBare(p.s[p.pos:])
	if !ok {
		return value{}, p.errAt(p.pos, "expected a value after %q, found %s", opText, p.found())
	}
	p.pos += len(text)
	return v, nil
}

// readBare reads a bare value at the start of s: a JSON number when one stands there and is
// not the start of a longer bare word (so `10.0.0.1` and `2026-11-22` are strings), else a
// bare word, which is a string unless it is true, false or null.
func readBare(s string) (string, value, bool) {
	n := scanNumber(s)
	b := scanBare(s)
	if n > 0 && n >= b {
		return s[:n], numberValue(s[:n]), true
	}
	if b == 0 {
		return "", value{}, false
	}
	word := s[:b]
	switch word {
	case "true":
		return word, value{kind: kindTrue, str: word}, true
	case "false":
		return word, value{kind: kindFalse, str: word}, true
	case "null":
		return word, value{kind: kindNull, str: word}, true
	}
	return word, stringValue(word), true
}

func numberValue(text string) value {
	// The text is a JSON number, so the only error is a range one, where ParseFloat still
	// returns ±Inf or 0: the same gjson gives for such a number in the document.
	f, _ := strconv.ParseFloat(text, 64)
	return value{kind: kindNumber, num: f, str: text}
}

func stringValue(s string) value { return value{kind: kindString, str: s} }

func isBareRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_.-:/@", r)
}

// scanBare returns the length of the run of bare-word characters at the start of s.
func scanBare(s string) int {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || !isBareRune(r) {
			break
		}
		i += size
	}
	return i
}

// scanNumber returns the length of the JSON number at the start of s, or 0. An exponent
// without digits is left out, so "1e" reads as the number 1 followed by "e".
func scanNumber(s string) int {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return 0
	}
	if i+1 < len(s) && s[i] == '.' && isDigit(s[i+1]) {
		i += 2
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			i = j
		}
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// lexString reads a JSON string literal at pos and returns its content.
func (p *parser) lexString() (string, *SyntaxError) {
	start := p.pos
	end := -1
	for i := start + 1; i < len(p.s); i++ {
		if p.s[i] == '\\' {
			i++
			continue
		}
		if p.s[i] == '"' {
			end = i + 1
			break
		}
	}
	if end < 0 {
		return "", p.errAt(start, "unterminated string")
	}
	var str string
	if err := json.Unmarshal([]byte(p.s[start:end]), &str); err != nil {
		return "", p.errAt(start, "bad JSON string: %v", err)
	}
	p.pos = end
	return str, nil
}

// lexArray reads the JSON array after "in" and returns its elements.
func (p *parser) lexArray() ([]value, *SyntaxError) {
	start := p.pos
	end := matchBracket(p.s[start:])
	if end < 0 {
		return nil, p.errAt(start, `unclosed "["`)
	}
	lit := p.s[start : start+end]
	dec := json.NewDecoder(strings.NewReader(lit))
	// Numbers are kept as written, so String prints them back unchanged.
	dec.UseNumber()
	var elems []any
	if err := dec.Decode(&elems); err != nil {
		return nil, p.errAt(start, "bad JSON array: %v", err)
	}
	if p.terms += len(elems); p.terms > MaxTerms {
		return nil, p.errAt(start, "more than %d terms (conditions and elements of \"in\" arrays)", MaxTerms)
	}
	set := make([]value, 0, len(elems))
	for _, e := range elems {
		switch e := e.(type) {
		case json.Number:
			set = append(set, numberValue(string(e)))
		case string:
			set = append(set, stringValue(e))
		case bool:
			if e {
				set = append(set, value{kind: kindTrue, str: "true"})
			} else {
				set = append(set, value{kind: kindFalse, str: "false"})
			}
		case nil:
			set = append(set, value{kind: kindNull, str: "null"})
		default:
			return nil, p.errAt(start, `the array after "in" may hold numbers, strings, true, false and null, not arrays or objects`)
		}
	}
	p.pos = start + end
	return set, nil
}

// matchBracket returns the length of the bracketed text at the start of s, strings and
// nested brackets included, or -1 when it is not closed. Only the extent is found here; the
// JSON decoder judges the content.
func matchBracket(s string) int {
	depth := 0
	inString := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// lexPattern reads the regular expression after "~" or "!~": a JSON string, or a bare run of
// anything but whitespace. Regular expressions are full of characters a bare word may not
// hold (^ $ * [ ] ( ) |), so a bare pattern only stops at whitespace; the ")" at its end
// that close parentheses open in the filter are given back, so `(id~^a)` works.
func (p *parser) lexPattern(opText string) (string, *SyntaxError) {
	if p.pos < len(p.s) && p.s[p.pos] == '"' {
		return p.lexString()
	}
	start := p.pos
	end := start
	for end < len(p.s) {
		r, size := utf8.DecodeRuneInString(p.s[end:])
		if unicode.IsSpace(r) {
			break
		}
		end += size
	}
	for closing := 0; closing < p.open && end > start && p.s[end-1] == ')'; closing++ {
		end--
	}
	if end == start {
		return "", p.errAt(start, "expected a regular expression after %q", opText)
	}
	p.pos = end
	return p.s[start:end], nil
}
