// Package deploy holds the systemd unit and the Debian packaging of the
// agent; its tests build the package and check it as an installer would.
package deploy

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const testVersion = "1.2.3~test"

// buildDeb runs build-deb.sh once per test binary run and returns the .deb.
func buildDeb(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed: the package cannot be built here")
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "build-deb.sh", out)
	cmd.Env = append(os.Environ(), "VERSION="+testVersion, "COMMIT=0123456789abcdef0123456789abcdef01234567")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "agent_"+testVersion+"_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("build-deb.sh made %v; output:\n%s", debs, b)
	}
	return debs[0]
}

// TestDebPackage builds the .deb, checks its contents and modes as
// dpkg-deb -c lists them, extracts it and runs the binary from there, and
// runs its postinst on the extracted tree.
func TestDebPackage(t *testing.T) {
	deb := buildDeb(t)

	list, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v", err)
	}
	// drwxr-xr-x root/root         0 2026-12-01 15:34 ./usr/bin/
	line := regexp.MustCompile(`^([-dlrwxsStT]{10}) (\S+)\s+\d+ \S+ \S+ (\S+)`)
	modes := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected dpkg-deb -c line %q", l)
		}
		mode, owner, path := m[1], m[2], strings.TrimSuffix(m[3], "/")
		modes[path] = mode
		if owner != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", path, owner)
		}
		if mode[0] != 'l' && mode[8] == 'w' {
			t.Errorf("%s is world-writable: %s", path, mode)
		}
	}
	for path, want := range map[string]string{
		".":                                        "drwxr-xr-x", // the target's /
		"./usr/bin/agent":                          "-rwxr-xr-x",
		"./usr/lib/systemd/system/agent.service":   "-rw-r--r--",
		"./etc/agent":                              "drwx------",
		"./etc/agent/svc":                          "drwx------",
		"./var/lib/agent":                          "drwx------",
		"./usr/share/man/man1/agent.1.gz":          "-rw-r--r--",
		"./usr/share/man/man1/agent-wait.1.gz":     "-rw-r--r--",
		"./usr/share/doc/agent/examples/node.conf": "-rw-r--r--",
	} {
		if got, ok := modes[path]; !ok {
			t.Errorf("%s missing from the package", path)
		} else if got != want {
			t.Errorf("%s has mode %s, want %s", path, got, want)
		}
	}

	info, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version").Output()
	if err != nil || !strings.Contains(string(info), "Package: agent") || !strings.Contains(string(info), "Version: "+testVersion) {
		t.Errorf("control fields: %v\n%s", err, info)
	}

	root := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
	}
	out, err := exec.Command(filepath.Join(root, "usr", "bin", "agent"), "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("extracted agent version: %v", err)
	}
	var v struct{ Version, Commit, Go string }
	if err := json.Unmarshal(out, &v); err != nil || v.Version != testVersion || v.Commit != "0123456789abcdef0123456789abcdef01234567" || !strings.HasPrefix(v.Go, "go") {
		t.Fatalf("extracted agent version -o json: %s (%v)", out, err)
	}

	// The postinst, run on the unpacked tree (DPKG_ROOT), creates nothing
	// and leaves nothing world-writable; it restores loosened modes.
	ctrl := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-e", deb, ctrl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, b)
	}
	if err := os.Chmod(filepath.Join(root, "etc", "agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)
	post := exec.Command("sh", filepath.Join(ctrl, "postinst"), "configure")
	post.Env = append(os.Environ(), "DPKG_ROOT="+root)
	if b, err := post.CombinedOutput(); err != nil {
		t.Fatalf("postinst configure: %v\n%s", err, b)
	}
	after := tree(t, root)
	for path, mode := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("postinst created %s", path)
		}
		if mode.Type()&fs.ModeSymlink == 0 && mode.Perm()&0o002 != 0 {
			t.Errorf("%s is world-writable after postinst: %v", path, mode)
		}
	}
	if m := after["etc/agent"]; m.Perm() != 0o700 {
		t.Errorf("postinst left /etc/agent at %v, want 0700", m.Perm())
	}
}

// tree maps every path under root to its mode.
func tree(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	m := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		m[rel] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUnitVerifies runs systemd-analyze verify on the unit, with ExecStart
// pointing at an executable of this machine; without systemd-analyze it
// skips.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile("agent.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "KillMode=process", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "ExecStart=/usr/bin/agent daemon run"} {
		if !strings.Contains(string(unit), "\n"+want) {
			t.Errorf("agent.service lacks %q", want)
		}
	}
	if _, err := os.Stat("/bin/kill"); err != nil {
		t.Skip("no /bin/kill here: verify would only report that")
	}
	// verify checks that ExecStart names an executable: any will do.
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) here")
	}
	dir := t.TempDir()
	text := strings.Replace(string(unit), "ExecStart=/usr/bin/agent ", "ExecStart="+bin+" ", 1)
	path := filepath.Join(dir, "agent.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify exits 0 on many problems and prints them: any output fails.
	// The man pages named by Documentation= exist only once installed.
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
