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
//   - Removing node.conf while the agent runs is reported by the Watcher as
//     a removal carrying DefaultNode: the same as starting without it.
//
// # Watcher guarantees
//
// A Watcher delivers Change values on one channel, in the order it saw
// them, only when a file's content differs from what it last delivered (or
// from the Initial snapshot). Bursts of events are coalesced by a debounce
// timer owned by the watcher's single goroutine. Close stops that goroutine,
// waits for it and then closes the channel.
package config
