// Package clip cuts what a client sent down to a size fit to repeat in an
// error message or a log line: an error body must not hand a large input
// back whole (an amplifier, and noise in every log it reaches).
package clip

import (
	"strconv"
	"unicode/utf8"
)

// MaxEcho is the most bytes of a client's input an error repeats.
const MaxEcho = 200

// String returns s when it has at most MaxEcho bytes, else its first
// MaxEcho bytes (cut at a rune boundary) followed by "..." and its size.
func String(s string) string { return N(s, MaxEcho) }

// N is String with a bound of n bytes instead of MaxEcho: the last guard
// of a message that may hold several inputs.
func N(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// Quote is strconv.Quote of s cut so that the quoted text holds at most
// MaxEcho+2 bytes (a byte that is not UTF-8 takes four to write, so the
// input is cut shorter than String would); the size stays outside the
// quotes.
func Quote(s string) string {
	q := strconv.Quote(s)
	if len(q) <= MaxEcho+2 {
		return q
	}
	cut := min(len(s), MaxEcho)
	for {
		for cut > 0 && cut < len(s) && !utf8.RuneStart(s[cut]) {
			cut--
		}
		q = strconv.Quote(s[:cut])
		if len(q) <= MaxEcho+2 || cut == 0 {
			break
		}
		// Each byte cut saves at least one quoted byte, and at most ten.
		cut -= max(1, (len(q)-MaxEcho-2)/10)
	}
	return q + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
