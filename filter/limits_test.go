package filter

import (
	"errors"
	"strings"
	"testing"
)

func TestLimits(t *testing.T) {
	terms := func(n int) string { return strings.TrimSuffix(strings.Repeat("a=1 or ", n), " or ") }
	inList := func(n int) string { return "a in [" + strings.TrimSuffix(strings.Repeat("1,", n), ",") + "]" }
	for _, tc := range []struct {
		name, expr string
		ok         bool
		want       string
	}{
		{"1000 terms", terms(MaxTerms), true, ""},
		{"1001 terms", terms(MaxTerms + 1), false, "more than 1000 terms"},
		{"30000 terms", terms(30000), false, "bytes, more than the 65536 accepted"},
		// Two conditions and the elements of the array.
		{"1000 terms with an array", "b and " + inList(MaxTerms-2), true, ""},
		{"1001 terms with an array", "b and " + inList(MaxTerms-1), false, "more than 1000 terms"},
		{"64 KiB", "a=\"" + strings.Repeat("x", MaxBytes-4) + "\"", true, ""},
		{"64 KiB + 1", "a=\"" + strings.Repeat("x", MaxBytes-3) + "\"", false, "more than the 65536 accepted"},
	} {
		_, err := Parse(tc.expr)
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %.300v", tc.name, err)
			}
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(se.Msg, tc.want) {
			t.Errorf("%s: err = %.300v, want %q", tc.name, err, tc.want)
			continue
		}
		// The error repeats at most 200 bytes of the filter.
		if msg := err.Error(); len(msg) > 400 {
			t.Errorf("%s: error of %d bytes echoes the filter: %.300s", tc.name, len(msg), msg)
		}
	}
}

// TestLongFilterErrorNotEchoed: a syntax error at the end of a 60 KB
// filter names the column, not the whole filter.
func TestLongFilterErrorNotEchoed(t *testing.T) {
	expr := "a=\"" + strings.Repeat("y", 60000) + "\" and =bad"
	_, err := Parse(expr)
	if err == nil {
		t.Fatal("parsed")
	}
	if msg := err.Error(); len(msg) > 400 || !strings.Contains(msg, "(60013 bytes)") {
		t.Fatalf("error of %d bytes: %.500s", len(msg), msg)
	}
}
