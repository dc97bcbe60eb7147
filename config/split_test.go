package config

import (
	"errors"
	"reflect"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  error
	}{
		{"", nil, nil},
		{"   \t ", nil, nil},
		{"/bin/true", []string{"/bin/true"}, nil},
		{"  a   b\tc  ", []string{"a", "b", "c"}, nil},
		{`a 'b c' "d e"`, []string{"a", "b c", "d e"}, nil},
		{`'it''s'`, []string{"its"}, nil},
		{`"a\"b" 'a\b'`, []string{`a"b`, `a\b`}, nil},
		{`"a\\b" "a\nb"`, []string{`a\b`, `a\nb`}, nil},
		{`a\ b c\\d \'`, []string{"a b", `c\d`, "'"}, nil},
		{`x"y z"w`, []string{"xy zw"}, nil},
		{`"" ''`, []string{"", ""}, nil},
		{`echo $HOME ~ * | ; &&`, []string{"echo", "$HOME", "~", "*", "|", ";", "&&"}, nil},
		{`"héllo wörld"`, []string{"héllo wörld"}, nil},
		{`'abc`, nil, ErrUnbalancedQuote},
		{`a "b`, nil, ErrUnbalancedQuote},
		{`"a\"`, nil, ErrUnbalancedQuote},
		{`a\`, nil, ErrTrailingBackslash},
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.in)
		if !errors.Is(err, tt.err) {
			t.Errorf("SplitCommand(%q) error %v, want %v", tt.in, err, tt.err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if _, err := SplitCommand(`ab "c`); err == nil || err.Error() != "column 4: unbalanced quote" {
		t.Errorf("column: %v", err)
	}
}

func FuzzSplitCommand(f *testing.F) {
	f.Add(`a 'b' "c\"" d\ e`)
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = SplitCommand(s)
	})
}
