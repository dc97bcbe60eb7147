package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// permFile writes a file of mode mode in a fresh 0700 directory (the
// layout of the project's test roots) and returns its path.
func permFile(t *testing.T, mode os.FileMode) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "etc")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node.conf")
	if err := os.WriteFile(path, []byte("[node]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckFileModes(t *testing.T) {
	for _, tc := range []struct {
		mode          os.FileMode
		command, secr bool // passes as a command file, as a secret file
		want          string
	}{
		{0o600, true, true, ""},
		{0o400, true, true, ""},
		{0o700, true, true, ""},
		{0o644, true, false, "readable by group or others (mode 0644)"},
		{0o640, true, false, "readable by group or others"},
		{0o604, true, false, "readable by group or others"},
		{0o664, false, false, "writable by group (mode 0664)"},
		{0o602, false, false, "writable by others (mode 0602)"},
		{0o666, false, false, "writable by group and others (mode 0666)"},
		{0o620, false, false, "writable by group"},
	} {
		path := permFile(t, tc.mode)
		for _, secret := range []bool{false, true} {
			err := checkFile(path, os.Geteuid(), secret)
			pass := tc.command
			if secret {
				pass = tc.secr
			}
			if pass {
				if err != nil {
					t.Errorf("mode %04o secret=%v: %v", tc.mode, secret, err)
				}
				continue
			}
			if !errors.Is(err, ErrInsecure) || !errors.Is(err, ErrInvalid) {
				t.Errorf("mode %04o secret=%v: err = %v, want ErrInsecure", tc.mode, secret, err)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, tc.want) || !strings.Contains(msg, "fix: chmod go-") {
				t.Errorf("mode %04o secret=%v: %q does not name the file, %q and the fix", tc.mode, secret, msg, tc.want)
			}
		}
	}
}

func TestCheckFileDirectoriesAbove(t *testing.T) {
	path := permFile(t, 0o600)
	etc := filepath.Dir(path)
	for _, mode := range []os.FileMode{0o770, 0o707, 0o777} {
		if err := os.Chmod(etc, mode); err != nil {
			t.Fatal(err)
		}
		err := CheckCommandFile(path)
		var pe *PermError
		if !errors.As(err, &pe) || !pe.Dir || pe.At != etc || !strings.Contains(err.Error(), "directory "+etc+" above it") {
			t.Errorf("dir mode %04o: err = %v, want the directory named", mode, err)
		}
	}
	// A sticky directory writable by others passes only when root owns it.
	if err := os.Chmod(etc, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	err := CheckCommandFile(path)
	if os.Geteuid() == 0 && err != nil {
		t.Errorf("root's sticky 1777 directory refused: %v", err)
	}
	if os.Geteuid() != 0 && !errors.Is(err, ErrInsecure) {
		t.Errorf("a sticky 1777 directory not root's passed")
	}
	if err := os.Chmod(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckCommandFile(path); err != nil {
		t.Errorf("0755 directory: %v", err)
	}
}

// TestCheckFileOwner refuses a file owned by another user: by chown when
// the test runs as root, else by checking for an agent of another uid.
func TestCheckFileOwner(t *testing.T) {
	path := permFile(t, 0o600)
	uid := os.Geteuid()
	if uid == 0 {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	} else {
		uid++ // the file is the test user's, not this pretend agent's
	}
	err := checkFile(path, uid, false)
	if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "owned by uid") {
		t.Fatalf("file of another user: err = %v", err)
	}
	if uid == 0 {
		// The parent directory of another user is refused as well.
		if err := os.Chown(path, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Dir(path), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		var pe *PermError
		if err := CheckCommandFile(path); !errors.As(err, &pe) || !pe.Dir {
			t.Fatalf("directory of another user: err = %v", err)
		}
	}
}

func TestCheckFileSymlink(t *testing.T) {
	link := permFile(t, 0o600)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(other, "real.conf")
	if err := os.WriteFile(target, []byte("[node]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckCommandFile(link); err != nil {
		t.Fatalf("symlink to a sound file: %v", err)
	}
	if err := os.Chmod(target, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := CheckCommandFile(link); err == nil || !strings.Contains(err.Error(), "its target "+target) {
		t.Fatalf("loose target: %v", err)
	}
	if err := os.Chmod(target, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(other, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := CheckCommandFile(link); err == nil || !strings.Contains(err.Error(), "directory "+other) {
		t.Fatalf("loose directory of the target: %v", err)
	}
}

func TestCheckFileMissing(t *testing.T) {
	err := CheckCommandFile(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInsecure) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestCheckProgram(t *testing.T) {
	if err := CheckProgram("sh"); err != nil {
		t.Errorf("a bare name is not checked: %v", err)
	}
	if err := CheckProgram("/bin/sh"); err != nil {
		t.Errorf("/bin/sh: %v", err)
	}
	prog := permFile(t, 0o777)
	if err := CheckProgram(prog); !errors.Is(err, ErrInsecure) {
		t.Errorf("0777 program: %v", err)
	}
}
