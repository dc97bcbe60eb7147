package config

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"

	"gopkg.in/ini.v1"
)

// entry is one key of a section, with the line it was read from.
type entry struct {
	key   string
	value string // inline comment removed, quotes kept
	line  int
}

// section is one [NAME] block of a file, in file order.
type section struct {
	name    string
	line    int
	entries []entry
}

// document is a parsed INI file: ini.v1 gives the values, a light scan of
// the text gives the line numbers, which ini.v1 does not keep.
type document struct {
	file     string
	sections []section
}

// iniOptions are the ini.v1 settings that make it agree with the line scan
// of locate: "=" only, no continuation lines, inline comments only after
// whitespace (so a # inside a filter or a command stays), quotes kept for
// SplitCommand, and repeated sections kept apart so duplicates are seen.
var iniOptions = ini.LoadOptions{
	KeyValueDelimiters:       "=",
	IgnoreContinuation:       true,
	SpaceBeforeInlineComment: true,
	PreserveSurroundedQuote:  true,
	AllowNonUniqueSections:   true,
}

// parseINI parses data, the content of file. Syntax errors, keys outside a
// section, duplicate keys and duplicate sections are *Error values.
func parseINI(file string, data []byte) (*document, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	doc, err := locate(file, data)
	if err != nil {
		return nil, err
	}
	f, err := ini.LoadSources(iniOptions, data)
	if err != nil {
		// locate refuses everything ini.v1 is known to refuse; this is a
		// fallback without a line number.
		return nil, &Error{File: file, Msg: "cannot parse", Err: err}
	}
	secs := f.Sections()
	if len(secs) == 0 || len(secs)-1 != len(doc.sections) {
		return nil, &Error{File: file, Msg: fmt.Sprintf("cannot parse: found %d sections, expected %d", len(secs)-1, len(doc.sections))}
	}
	// secs[0] is the implicit DEFAULT section, which locate keeps empty.
	for i := range doc.sections {
		s := &doc.sections[i]
		lib := secs[i+1]
		for j := range s.entries {
			e := &s.entries[j]
			k, err := lib.GetKey(e.key)
			if err != nil {
				return nil, &Error{File: file, Line: e.line, Section: s.name, Key: e.key, Msg: "cannot parse", Err: err}
			}
			e.value = stripComment(k.Value())
		}
	}
	return doc, nil
}

// locate scans the text the way ini.v1 does, to record sections and keys
// with their line numbers and to refuse, with a line number, what this
// package does not accept.
func locate(file string, data []byte) (*document, error) {
	doc := &document{file: file}
	seen := map[string]int{} // section name -> line of first header
	var keys map[string]int  // key -> line, in the current section
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := strings.TrimLeftFunc(raw, unicode.IsSpace)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			// ini.v1 takes the name up to the last "]", which breaks
			// "[hook#a] ; see [hook#NAME]" from the SPEC example; the
			// first "]" is right. Sections are matched by position, not
			// by ini.v1's name.
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, &Error{File: file, Line: n, Msg: "syntax error: section header without ]"}
			}
			name := line[1:end]
			if strings.TrimSpace(name) == "" {
				return nil, &Error{File: file, Line: n, Msg: "syntax error: empty section name"}
			}
			if rest := strings.TrimSpace(line[end+1:]); rest != "" && rest[0] != ';' && rest[0] != '#' {
				return nil, &Error{File: file, Line: n, Section: name, Msg: fmt.Sprintf("syntax error: unexpected %q after the section header", rest)}
			}
			if first, ok := seen[name]; ok {
				return nil, &Error{File: file, Line: n, Section: name, Msg: fmt.Sprintf("duplicate section (first at line %d)", first)}
			}
			seen[name] = n
			doc.sections = append(doc.sections, section{name: name, line: n})
			keys = map[string]int{}
			continue
		}
		if line[0] == '"' || line[0] == '`' {
			return nil, &Error{File: file, Line: n, Msg: "syntax error: quoted key names are not supported"}
		}
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			return nil, &Error{File: file, Line: n, Msg: fmt.Sprintf("syntax error: expected \"key = value\" or \"[section]\", got %q", strings.TrimSpace(line))}
		}
		key := strings.TrimSpace(line[:eq])
		if key == "" {
			return nil, &Error{File: file, Line: n, Msg: "syntax error: empty key name"}
		}
		if len(doc.sections) == 0 {
			return nil, &Error{File: file, Line: n, Key: key, Msg: "key outside any section"}
		}
		s := &doc.sections[len(doc.sections)-1]
		val := strings.TrimLeftFunc(line[eq+1:], unicode.IsSpace)
		if strings.HasPrefix(val, "`") || strings.HasPrefix(val, `"""`) {
			return nil, &Error{File: file, Line: n, Section: s.name, Key: key, Msg: "multi-line quoted values are not supported"}
		}
		if first, ok := keys[key]; ok {
			return nil, &Error{File: file, Line: n, Section: s.name, Key: key, Msg: fmt.Sprintf("duplicate key (first at line %d)", first)}
		}
		keys[key] = n
		s.entries = append(s.entries, entry{key: key, line: n})
	}
	return doc, nil
}

// stripComment completes ini.v1's inline comment handling, which only
// knows " ;" and " #": a value that starts with a comment mark is empty,
// and a tab before the mark starts a comment too.
func stripComment(v string) string {
	v = strings.TrimSpace(v)
	if v != "" && (v[0] == ';' || v[0] == '#') {
		return ""
	}
	for i := 1; i < len(v); i++ {
		if (v[i] == ';' || v[i] == '#') && unicode.IsSpace(rune(v[i-1])) {
			return strings.TrimSpace(v[:i])
		}
	}
	return v
}

// unquote removes one pair of matching surrounding quotes from a scalar.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}
