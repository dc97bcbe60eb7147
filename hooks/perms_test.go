package hooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPerms(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o644, true},
		{0o400, true},
		{0o664, false},
		{0o602, false},
		{0o666, false},
		{0o620, false},
	} {
		path := filepath.Join(dir, "node.conf."+tc.mode.String())
		if err := os.WriteFile(path, []byte("[node]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		err := CheckPerms(path)
		if tc.ok {
			if err != nil {
				t.Errorf("mode %04o: %v", tc.mode, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInsecureConfig) {
			t.Errorf("mode %04o: err = %v, want ErrInsecureConfig", tc.mode, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, fmt.Sprintf("mode %04o", tc.mode.Perm())) {
			t.Errorf("mode %04o: error %q does not name the file and mode", tc.mode, msg)
		}
	}
	if err := CheckPerms(filepath.Join(dir, "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
