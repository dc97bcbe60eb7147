package config

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned (wrapped) by SplitCommand.
var (
	// ErrUnbalancedQuote means a quote was opened and never closed.
	ErrUnbalancedQuote = errors.New("unbalanced quote")
	// ErrTrailingBackslash means the text ends with an escaping backslash.
	ErrTrailingBackslash = errors.New("trailing backslash")
)

// SplitCommand splits s into words the way a POSIX shell splits a simple
// command line, without running anything and without expansions: blanks
// (space, tab, newline) separate words; '...' keeps its content literally;
// "..." keeps its content except that \" and \\ are unescaped; outside
// quotes a backslash makes the next character literal. $, ~, *, |, ; and
// the like are ordinary characters. "" yields an empty word. An unclosed
// quote or a trailing backslash is an error, with its 1-based column.
func SplitCommand(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("column %d: %w", i+1, ErrTrailingBackslash)
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		case '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("column %d: %w", i+1, ErrUnbalancedQuote)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case '"':
			start := i
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, fmt.Errorf("column %d: %w", start+1, ErrUnbalancedQuote)
			}
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
