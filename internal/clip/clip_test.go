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
	long := strings.Repeat("é", 400) // 800 bytes
	for _, got := range []string{String(long), Quote(long)} {
		if !utf8.ValidString(got) || !strings.HasSuffix(got, "... (800 bytes)") || len(got) > MaxEcho+40 {
			t.Errorf("clipped to %d bytes: %q", len(got), got)
		}
	}
}
