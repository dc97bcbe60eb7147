// Package config reads the agent's configuration files: the paths layout
// (ResolvePaths), node.conf (Node, LoadNode), svc/NAME.conf (Service,
// LoadService, LoadServices), and watches them for edits (Watcher).
//
// # Syntax
//
// Files are INI, parsed by gopkg.in/ini.v1 with these rules:
//
//   - one "key = value" per line; no continuation lines and no multi-line
//     quoted values (a value starting with ` or """ is refused);
//   - a line starting with ; or # is a comment; an inline comment starts at
//     " ;" or " #" (whitespace before the mark), so "a=b#c" keeps its #,
//     and so does a filter like data.list.#; a value that is only a comment
//     is empty. A " ;" or " #" inside quotes still starts a comment;
//   - the first "=" separates key and value: "labels = zone=a rack=12";
//   - key and section names are case sensitive; unknown sections, unknown
//     keys, duplicate keys in a section, duplicate sections and keys
//     outside any section are errors;
//   - an empty value ("advertise =") means the default;
//   - a scalar wrapped in one pair of matching quotes is unquoted;
//     commands and word lists are split by SplitCommand.
//
// # Errors
//
// Every error about a file's content is a *Error, one line that names the
// file, the line (when known), the section and the key:
//
//	/etc/agent/node.conf:7: [hb] port: "abc" is not a port number
//	/etc/agent/node.conf:3: [node] nmae: unknown key
//
// Callers test it with errors.As; errors.Is(err, ErrInvalid) also holds.
// The secret is never echoed in an error or a log line.
//
// # Decisions where the SPEC is silent
//
//   - [journal] is an extension: max_bytes (size, default 256MiB) and
//     max_age (duration, default 7d) bound the local record journal.
//   - Durations are Go durations ("30s", "1h30m") and may start with whole
//     days ("7d", "1d12h"). Sizes are integers with an optional unit: B,
//     KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024).
//   - Without node.conf the heartbeat binds 127.0.0.1:10000. When node.conf
//     exists and [hb] addr is not set it binds 0.0.0.0, as memberlist does
//     and as the SPEC example shows: a written config is a cluster config.
//   - [hb] port 0 asks for a free port (tests). [hb] addr and advertise are
//     IP addresses, as memberlist wants.
//   - [cluster] name defaults to the node name; seeds and nodes accept
//     spaces or commas; seeds are host:port.
//   - [listener] is off unless addr is set; auth defaults to token, and
//     token then needs token_file; tls_cert and tls_key go together.
//   - A hook without events gets "all"; "all" cannot be mixed with ids;
//     event ids are checked for syntax only, since the event list is open.
//     The hook filter is kept as text: the hooks package compiles it.
//   - A service's nodes default to "*" (all nodes, in name order); "*"
//     stands alone. check is required; start and stop are required with
//     orchestrate = ha and optional with orchestrate = no (an order to
//     start or stop such a service then fails when it is given).
//     flex_target must be at least 1 and at most the number of listed
//     nodes.
//   - A service name is its file name without ".conf"; it must start with
//     a letter or digit and hold only letters, digits, "-", "_" and ".".
//     LoadServices and the Watcher ignore hidden files and files not ending
//     in ".conf" (editor swap and backup files).
//   - A config file that vanishes or empties is not a config. While the
//     agent runs, a removed node.conf (ErrRemoved) and an empty node.conf
//     or service file (nothing but whitespace: ErrEmpty) are refused edits:
//     the running config stays. Removing a service file removes the
//     service. At start, a missing node.conf means the defaults, and so
//     does an empty one.
//   - A symlinked config file is read through its link and watched through
//     its target: edits of the target apply.
//
// # Permissions
//
// Files that name commands (node.conf, service files, and a program a
// command names by absolute path) are used only when root or the agent's
// own user owns them and neither group nor others can write them or any
// directory above them; a directory writable by others passes when it is
// root's and sticky, like /tmp. Files that hold secrets (the token file, a
// dsn_file, node.conf when it sets secret or dsn) must also not be
// readable by group or others. CheckCommandFile, CheckSecretFile and
// CheckProgram apply the rules; a refusal is a *PermError that names the
// file, what is wrong and the fix, as sshd refuses loose key files.
//
// The Watcher applies them to every file it reads: a refused file is a
// refused edit (the running config stays), and since a chmod or chown is
// an event of the watched directory, fixing the mode applies the file
// without restart. Directories above and programs are not watched: they
// are checked again on Rescan (SIGHUP) and every Recheck (a minute).
//
// # Watcher guarantees
//
// A Watcher delivers Change values on one channel, in the order it saw
// them, only when a file's content, or the verdict of the permission rules
// on it, differs from what it last delivered (or from the Initial
// snapshot). Bursts of events are coalesced by a debounce
// timer owned by the watcher's single goroutine. Close stops that goroutine,
// waits for it and then closes the channel.
package config
