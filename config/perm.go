package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrInsecure is matched by errors.Is for every refusal of the permission
// rules: a file that names commands, or holds a secret, that someone else
// than root or the agent's own user could change (or read).
var ErrInsecure = errors.New("insecure file")

// PermError is a file refused by the permission rules, as sshd refuses
// loose key files. Its text names the file, what is wrong and how to fix
// it. It matches both ErrInsecure and ErrInvalid.
type PermError struct {
	// Path is the file that was checked.
	Path string
	// At is the path found wanting: Path, the target of a symlink, or a
	// directory above either.
	At string
	// Dir says At is a directory above the file.
	Dir bool
	// Reason says what is wrong with At, with its owner or mode.
	Reason string
	// Fix is a command that fixes it, when there is one.
	Fix string
}

// Error implements error.
func (e *PermError) Error() string {
	msg := "refused " + e.Path + ": "
	switch {
	case e.Dir:
		msg += "directory " + e.At + " above it is "
	case e.At != e.Path:
		msg += "its target " + e.At + " is "
	default:
		msg += "it is "
	}
	msg += e.Reason
	if e.Fix != "" {
		msg += " (fix: " + e.Fix + ")"
	}
	return msg
}

// Is matches ErrInsecure and ErrInvalid.
func (e *PermError) Is(target error) bool { return target == ErrInsecure || target == ErrInvalid }

// CheckCommandFile applies the rule for files that name commands (node.conf,
// svc/*.conf, a program given by absolute path): the file, the target of a
// symlink, and every directory above either up to / must be owned by root
// or by the agent's effective user, and not be writable by group or others;
// a directory writable by others passes only when it is root's and sticky,
// like /tmp. Errors are *PermError, or the error of a file that cannot be
// examined (a missing file gives one that matches fs.ErrNotExist).
func CheckCommandFile(path string) error { return checkFile(path, os.Geteuid(), false) }

// CheckSecretFile applies CheckCommandFile's rule and also refuses a file
// readable by group or others: for the token file, a dsn_file, and a
// node.conf that holds a secret.
func CheckSecretFile(path string) error { return checkFile(path, os.Geteuid(), true) }

// CheckProgram applies CheckCommandFile's rule to the program a command
// names, when it is an absolute path; a bare name found through PATH is
// not checked (PATH is the agent's own, clean one).
func CheckProgram(name string) error {
	if !filepath.IsAbs(name) {
		return nil
	}
	return CheckCommandFile(name)
}

// checkFile is CheckCommandFile (secret false) or CheckSecretFile for an
// agent running as uid.
func checkFile(path string, uid int, secret bool) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	target, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if e := checkMode(target, fi, uid, false, secret); e != nil {
		e.Path = path
		if target == abs {
			e.At = path
		}
		return e
	}
	// Whoever can write a directory above can replace the file: check the
	// directories of the path as given (where a symlink may be replaced)
	// and of its target.
	seen := map[string]bool{}
	for _, p := range []string{abs, target} {
		for d := filepath.Dir(p); !seen[d]; d = filepath.Dir(d) {
			seen[d] = true
			di, err := os.Stat(d)
			if err != nil {
				return fmt.Errorf("check %s: %w", path, err)
			}
			if e := checkMode(d, di, uid, true, false); e != nil {
				e.Path = path
				return e
			}
		}
	}
	return nil
}

// checkMode checks one file or directory at; nil when it passes.
func checkMode(at string, fi fs.FileInfo, uid int, dir, secret bool) *PermError {
	mode := fi.Mode().Perm()
	bad := func(reason, fix string) *PermError {
		return &PermError{At: at, Dir: dir, Reason: reason, Fix: fix}
	}
	owner := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = int(st.Uid)
	}
	if owner != 0 && owner != uid {
		return bad(fmt.Sprintf("owned by uid %d, neither root nor the agent's uid %d (mode %04o)", owner, uid, mode),
			fmt.Sprintf("chown %d %s", uid, at))
	}
	if mode&0o022 != 0 {
		if dir && owner == 0 && fi.Mode()&fs.ModeSticky != 0 {
			return nil // like /tmp: others may add files, not replace ours
		}
		who := "group and others"
		switch mode & 0o022 {
		case 0o020:
			who = "group"
		case 0o002:
			who = "others"
		}
		reason := fmt.Sprintf("writable by %s (mode %04o)", who, mode)
		if dir {
			reason += " and not a sticky directory of root's"
		}
		return bad(reason, "chmod go-w "+at)
	}
	if secret && mode&0o044 != 0 {
		return bad(fmt.Sprintf("readable by group or others (mode %04o) and holds a secret", mode), "chmod go-r "+at)
	}
	return nil
}

// HoldsSecrets reports whether node.conf sets a secret (key secret or
// dsn, in any section): the file must then not be readable by others.
func (n Node) HoldsSecrets() bool { return n.secrets }

// checkFiles applies the permission rules to node.conf itself (the secret
// rule when it holds a secret) and to the programs its commands name.
func (n Node) checkFiles() error {
	check := CheckCommandFile
	if n.secrets {
		check = CheckSecretFile
	}
	if err := check(n.Source); err != nil {
		return err
	}
	for _, h := range n.Hooks {
		if err := checkArgv(h.Command); err != nil {
			return n.pos.wrap(n.Source, "hook#"+h.Name, "command", err)
		}
	}
	for _, t := range n.Triggers {
		if err := checkArgv(t.FireCommand); err != nil {
			return n.pos.wrap(n.Source, "trigger#"+t.Name, "fire_command", err)
		}
		if err := checkArgv(t.ExpireCommand); err != nil {
			return n.pos.wrap(n.Source, "trigger#"+t.Name, "expire_command", err)
		}
	}
	return nil
}

// checkFiles applies the permission rules to a service file and to the
// programs its commands name.
func (s Service) checkFiles() error {
	if err := CheckCommandFile(s.Source); err != nil {
		return err
	}
	for _, c := range []struct {
		key  string
		argv []string
	}{{"check", s.Check}, {"start", s.Start}, {"stop", s.Stop}} {
		if err := checkArgv(c.argv); err != nil {
			return s.pos.wrap(s.Source, "service", c.key, err)
		}
	}
	return nil
}

// checkArgv refuses a command whose program, named by absolute path,
// fails the permission rules. A program that cannot be examined (not
// installed yet) is not refused here: running it fails, and says why.
func checkArgv(argv []string) error {
	if len(argv) == 0 {
		return nil
	}
	if err := CheckProgram(argv[0]); errors.Is(err, ErrInsecure) {
		return err
	}
	return nil
}

// wrap locates err, about the value of key, like errorf does.
func (p *positions) wrap(file, section, key string, err error) error {
	e := p.errorf(file, section, key, "%v", err).(*Error)
	e.Err = err
	return e
}
