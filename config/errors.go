package config

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid is matched by errors.Is for every *Error: a config file (or a
// Node or Service value) is not acceptable.
var ErrInvalid = errors.New("invalid configuration")

// Error is a problem in a config file, located as precisely as known.
// Its text is one line: "FILE:LINE: [SECTION] KEY: MSG".
type Error struct {
	// File is the path of the file, empty for a value built in code.
	File string
	// Line is the 1-based line number, 0 when unknown.
	Line int
	// Section is the INI section name ("hb", "hook#notify"), if any.
	Section string
	// Key is the key within Section, if any.
	Key string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying cause, if any (returned by Unwrap).
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	switch {
	case e.Section != "" && e.Key != "":
		b.WriteString("[" + e.Section + "] " + e.Key + ": ")
	case e.Section != "":
		b.WriteString("[" + e.Section + "]: ")
	case e.Key != "":
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }
