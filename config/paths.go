package config

import "path/filepath"

// Paths is where one agent keeps its files (SPEC section 2).
type Paths struct {
	// Root is the --root directory, or ~/.agent for a non-root user, or
	// empty for the system layout used when running as root.
	Root string
	// NodeConf is the node config file.
	NodeConf string
	// SvcDir is the directory of service configs, one NAME.conf each.
	SvcDir string
	// VarDir holds state and the journal.
	VarDir string
	// Socket is the local API unix socket.
	Socket string
}

// ResolvePaths returns the layout for an agent started with --root root
// (empty when not given), by effective user id euid, whose home directory
// is home. It does not touch the file system. A relative root or home gives
// relative paths: make them absolute first if the process may chdir.
func ResolvePaths(root string, euid int, home string) Paths {
	switch {
	case root != "":
		return underRoot(filepath.Clean(root))
	case euid == 0:
		return Paths{
			NodeConf: "/etc/agent/node.conf",
			SvcDir:   "/etc/agent/svc",
			VarDir:   "/var/lib/agent",
			Socket:   "/var/run/agent.sock",
		}
	default:
		return underRoot(filepath.Join(home, ".agent"))
	}
}

func underRoot(root string) Paths {
	return Paths{
		Root:     root,
		NodeConf: filepath.Join(root, "etc", "node.conf"),
		SvcDir:   filepath.Join(root, "etc", "svc"),
		VarDir:   filepath.Join(root, "var"),
		Socket:   filepath.Join(root, "var", "agent.sock"),
	}
}

// ServiceFile returns the config file path of service name.
func (p Paths) ServiceFile(name string) string {
	return filepath.Join(p.SvcDir, name+".conf")
}
