package clip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	if got := String("short"); got != "short" {
		t.Errorf("String(short) = %q", got)
	}
	if got := Quote("a\"b"); got != `"a\"b"` {
		t.Errorf("Quote = %q", got)
	}
	// Bytes that are not UTF-8 quote to four each: the bound holds on
	// the quoted text, not on the input.
	bad := "0 \xc100" + strings.Repeat("\x99\xe1", 300)
	if got := Quote(bad); len(got) > MaxEcho+40 || !strings.HasSuffix(got, "... (605 bytes)") {
		t.Errorf("Quote of %d bytes not UTF-8 gave %d bytes: %s", len(bad), len(got), got)
	}
	short := strings.Repeat("\x99", 60) // under MaxEcho, 242 bytes quoted
	if got := Quote(short); len(got) > MaxEcho+40 || !strings.HasSuffix(got, "... (60 bytes)") {
		t.Errorf("Quote of 60 bytes not UTF-8 gave %d bytes: %s", len(got), got)
	}
	long := strings.Repeat("é", 400) // 800 bytes
	for _, got := range []string{String(long), Quote(long)} {
		if !utf8.ValidString(got) || !strings.HasSuffix(got, "... (800 bytes)") || len(got) > MaxEcho+40 {
			t.Errorf("clipped to %d bytes: %q", len(got), got)
		}
	}
}
