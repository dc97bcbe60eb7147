package config

//go:generate sh -c "cd .. && go run ./cmd/agent docs config > docs/configuration.md"

// KeyDoc documents one key of a config file for the configuration
// reference (docs/configuration.md, written by `agent docs config`). A
// test fails when the parser accepts a key that has no KeyDoc, or a KeyDoc
// names a key the parser refuses.
type KeyDoc struct {
	// Key is the key name as written in the file.
	Key string
	// Default is the value used when the key is absent or empty, as an
	// operator would write it; "" when there is none (the key is required
	// or its absence turns a feature off, which Doc then says).
	Default string
	// Doc says what the key does and how its value is checked.
	Doc string
	// Live is true when an edit of the key applies without a restart.
	Live bool
}

// SectionDoc documents one section of a config file.
type SectionDoc struct {
	// File is "node.conf" or "svc/NAME.conf".
	File string
	// Section is the header as written, with NAME for the user's part:
	// "node", "hook#NAME".
	Section string
	// Doc says what the section is for.
	Doc string
	// Keys are the section's keys, in the order the reference lists them.
	Keys []KeyDoc
}

// Reference is the documentation of every section and key the parsers
// accept, in the order of the configuration reference. When you add a key
// to a parser, add it here, then regenerate the reference:
//
//	go run ./cmd/agent docs config > docs/configuration.md
func Reference() []SectionDoc {
	return []SectionDoc{
		{File: "node.conf", Section: "node", Doc: "This node's identity.", Keys: []KeyDoc{
			{Key: "name", Default: "the short host name", Doc: "The node name, unique in the cluster: a letter or digit, then letters, digits, `-`, `_`, `.` (at most 253). Changing it needs a restart: the cluster then sees a new node."},
			{Key: "labels", Doc: "Free `key=value` pairs, space separated, shown in the cluster data (`monitor.nodes.NODE.labels`). A value with blanks is quoted: `desc=\"rack 12\"`. A word without `=` or a key given twice is refused. An edit whose labels would make this node's data bigger than `max_data` is refused (`node_config_change` reason `invalid`).", Live: true},
			{Key: "max_data", Default: "1MiB", Doc: "The most this node's monitor data may weigh (its JSON): a size from `4KiB` to `8MiB`, the same on every node. A local change past it is refused and nothing is replicated; a peer's data past it is refused on receipt (a log line, `agent_peer_data_refused_total`). See storage.md."},
		}},
		{File: "node.conf", Section: "cluster", Doc: "Which cluster this node belongs to and how it protects itself against split brain.", Keys: []KeyDoc{
			{Key: "name", Default: "the node name", Doc: "The cluster name. It labels every heartbeat packet: agents of different clusters never merge, even when their seeds cross."},
			{Key: "secret", Doc: "Gossip encryption key: the base64 encoding of 16, 24 or 32 bytes (`head -c 32 /dev/urandom | base64`). Empty: no encryption. Every node of the cluster needs the same one. It is never printed in an error or a log line; a node.conf holding it must be readable by its owner only."},
			{Key: "seeds", Doc: "`host:port` heartbeat addresses to join, separated by blanks or commas; tried until one answers. Listing every node, this one included, is fine. Empty: a cluster of one until a peer joins this node."},
			{Key: "nodes", Doc: "The expected members, by node name (blanks or commas). Optional; with `quorum = true` the majority is counted over this list, and a starting node waits in status `rejoin` until it has seen all of them (at most 10 s)."},
			{Key: "quorum", Default: "false", Doc: "`true`: a node that sees no strict majority of the cluster alive emits `quorum_lost`, applies `split_action` and orchestrates nothing until `quorum_regained`. Accepts true/false, yes/no, on/off, 1/0."},
			{Key: "split_action", Default: "stop", Doc: "What a node without quorum does: `stop` its service instances, `freeze` itself, or `none` (only the event)."},
		}},
		{File: "node.conf", Section: "hb", Doc: "The heartbeat: memberlist gossip over UDP and TCP on one port, used for membership, failure detection and the exchange of cluster data.", Keys: []KeyDoc{
			{Key: "addr", Default: "0.0.0.0 (127.0.0.1 when there is no node.conf)", Doc: "IP address to bind (an IP literal, not a host name)."},
			{Key: "port", Default: "10000", Doc: "UDP and TCP port, 0 to 65535; 0 picks a free port (tests). Two agents on one host need two ports (or two addresses)."},
			{Key: "advertise", Doc: "IP address peers should use to reach this node, when it differs from `addr` (NAT, or `addr = 0.0.0.0` on a host with several addresses). Empty: memberlist picks one of the host's addresses."},
			{Key: "profile", Default: "lan", Doc: "Timing profile: `lan` (data centre: a dead node is seen dead in about 2 s), `wan` (slow links: slower failure detection) or `local` (one machine). The timings are in membership.md."},
			{Key: "forget_after", Default: "5m", Doc: "How long a dead peer's data is kept in the cluster data before it is dropped (`forget_peer`, reason `grace_expired`); at least `1s`. Its address is kept and retried longer: see `reconnect_timeout`."},
			{Key: "reconnect_timeout", Default: "72h", Doc: "How long the address of a dead peer is retried (every 1 to 10 s, with jitter) after it was last seen alive, so that a partition of any length heals; at least `10s`. The addresses are kept in `var/peers.json`. Peers that left gracefully and peers forgotten with `agent node forget` are not retried."},
		}},
		{File: "node.conf", Section: "listener", Doc: "The optional TCP listener: the HTTP API, the event streams, the web page and `/metrics`. The unix socket is always on; this section adds network access.", Keys: []KeyDoc{
			{Key: "addr", Doc: "`host:port` to listen on (`127.0.0.1:1215`, `0.0.0.0:1215`). Empty: no TCP listener."},
			{Key: "auth", Default: "token", Doc: "`token`: every request carries `Authorization: Bearer TOKEN`; `none`: no authentication, accepted only when `addr` is a loopback address."},
			{Key: "token_file", Doc: "File holding the bearer token; required with `auth = token`. Created with a random token (mode 0600) when missing; an existing one others can read or write stops the agent (see security.md)."},
			{Key: "tls_cert", Doc: "PEM certificate file; with `tls_key`, the listener speaks HTTPS. The two go together."},
			{Key: "tls_key", Doc: "PEM private key file of `tls_cert`. A secret: one others can read or write stops the agent (see security.md)."},
			{Key: "hosts", Doc: "Host names a request's `Host` header may give besides an IP address and `localhost` (blanks or commas): the names clients use for this node. Any other is refused (HTTP 421), so that a web page cannot reach the listener by DNS rebinding. The CLI also sends the local token to these names."},
			{Key: "max_conns", Default: "16384", Doc: "Most open connections of the TCP listener, at least 1; the next ones wait in the kernel's backlog. Lowered at start, with a log line, to what the open-file limit leaves."},
			{Key: "max_subscribers", Default: "12000", Doc: "Most event-stream subscribers, socket and listener together, at least 1; one more gets HTTP 503."},
			{Key: "idle_timeout", Default: "2m", Doc: "An idle keep-alive connection (socket or listener) is closed after this long: a positive duration of at most `2m`."},
		}},
		{File: "node.conf", Section: "journal", Doc: "The local record journal under the var directory (the history behind `agent events --since`, hooks' catch-up). Records past either bound are pruned, oldest segment first.", Keys: []KeyDoc{
			{Key: "max_bytes", Default: "256MiB", Doc: "Size bound: a positive size (`4096`, `64MB`, `256MiB`, `1GiB`)."},
			{Key: "max_age", Default: "7d", Doc: "Age bound: a positive duration (`12h`, `7d`, `1d12h`)."},
			{Key: "ring_bytes", Default: "64MiB", Doc: "Memory bound of the newest records kept for subscribers (and for the journal while its writes fail), at least `1MiB`; they are also at most 16384. See storage.md."},
		}},
		{File: "node.conf", Section: "hook#NAME", Doc: "A command run for each matching event, with the event record on stdin; any number of them, each with its own NAME (letters, digits, `-`, `_`, `.`). Hooks apply live: adding, changing or removing one needs no restart.", Keys: []KeyDoc{
			{Key: "events", Default: "all", Doc: "`all`, or event ids separated by blanks or commas (`node_down,instance_start`). `all` stands alone.", Live: true},
			{Key: "filter", Doc: "Optional filter expression on the event record (see filters.md): `data.svcname=web`.", Live: true},
			{Key: "command", Doc: "Required. The program and its arguments, split like a shell would split them (quotes and backslashes) but run without a shell: no `$VAR`, no pipes. Its environment is clean: `PATH`, `HOME`, `LANG`, `TZ` and `AGENT_EVENT_ID`, `AGENT_NODENAME`, `AGENT_SEQ`, `AGENT_HOOK` (see hooks.md).", Live: true},
			{Key: "timeout", Default: "30s", Doc: "Bound on one run: at the timeout the process group gets SIGTERM, then SIGKILL.", Live: true},
		}},
		{File: "node.conf", Section: "trigger#NAME", Doc: "A pattern of events over time (see triggers.md): matching records are split into streams by their `distinct` values; a stream fires when it holds `count` events (and, with `fire_when`, when an event satisfying it arrives), or expires `window` after its first event. Each outcome runs its command with the stream's records on stdin and publishes `trigger_fire` or `trigger_expire`. Any number of triggers, each with its own NAME (letters, digits, `-`, `_`, `.`). Triggers apply live: a change of `count`, `fire_when` or `window` re-evaluates the open streams at once; a change of `match` or `distinct` closes them (expired, reason `reload`).", Keys: []KeyDoc{
			{Key: "match", Doc: "Required. Filter expression (see filters.md) on the record: the records that enter the trigger's streams (`data.id in [\"node_down\",\"node_up\"]`). `trigger_*` events never enter. A filter that does not parse is refused with its column.", Live: true},
			{Key: "distinct", Doc: "Paths of the record whose values split the matching records into streams, like GROUP BY (`data.node`, `data.svcname data.node`), space separated; a missing path counts as the empty string. Empty: one stream for all.", Live: true},
			{Key: "count", Default: "1", Doc: "The stream fires when it holds this many events: a whole number from 1 to 100000.", Live: true},
			{Key: "fire_when", Doc: "Optional filter expression: a stream that holds `count` events fires only when an arriving event also satisfies it; until then it keeps collecting.", Live: true},
			{Key: "window", Default: "10m", Doc: "A stream that has not fired this long after its first event expires: a positive duration.", Live: true},
			{Key: "fire_command", Doc: "Command run when a stream fires, with its records on stdin (one JSON line each, oldest first) and `AGENT_TRIGGER`, `AGENT_TRIGGER_OUTCOME`, `AGENT_TRIGGER_KEY`, `AGENT_TRIGGER_COUNT` in a clean environment. Split like a hook's `command`, run without a shell. At least one of `fire_command` and `expire_command` is required.", Live: true},
			{Key: "expire_command", Doc: "Command run when a stream expires, like `fire_command`. A trigger with only an `expire_command` pages on what did not happen: a stream that fires closes without a command.", Live: true},
			{Key: "timeout", Default: "30s", Doc: "Bound on one run of a command: at the timeout the process group gets SIGTERM, then SIGKILL; the run counts as failed.", Live: true},
			{Key: "retries", Default: "3", Doc: "How many times a failing command (non-zero exit, timeout, not started) is run again, after 1s, 2s, 4s... (at most 1m), before `trigger_failed`: 0 to 20.", Live: true},
		}},
		{File: "node.conf", Section: "sink#NAME", Doc: "A history sink: a database the agent writes its records to, exactly once, for long-term search (`agent history`, the web page's History view; see history.md). Any number of them, each with its own NAME and cursor; the first is the default of `agent history`. Sinks apply live: adding, changing or removing one needs no restart.", Keys: []KeyDoc{
			{Key: "type", Default: "sqlite", Doc: "`sqlite` (a file of this node) or `postgres` (one database for any number of agents and clusters).", Live: true},
			{Key: "path", Default: "NAME.db", Doc: "With `sqlite`, the database file: relative to the var directory, or absolute. Created (mode 0600) by the agent.", Live: true},
			{Key: "dsn", Doc: "With `postgres`, the connection string (`postgres://user:pw@host:5432/db?sslmode=verify-full`, or `host=... dbname=...` quoted). A node.conf holding it must be readable by its owner only. One of `dsn` or `dsn_file`.", Live: true},
			{Key: "dsn_file", Doc: "With `postgres`, the absolute path of a file holding the connection string, readable by its owner only (mode 0600); read again at each connection attempt.", Live: true},
			{Key: "kinds", Default: "event", Doc: "The record kinds written: `event`, `patch`, or `event,patch`.", Live: true},
			{Key: "events", Default: "all", Doc: "`all`, or the event ids written (blanks or commas). Patch records are not selected by it.", Live: true},
			{Key: "filter", Doc: "Optional filter expression on the record (see filters.md); only records it holds on are written.", Live: true},
			{Key: "batch", Default: "1000", Doc: "Most records per transaction, 1 to 10000.", Live: true},
			{Key: "flush", Default: "1s", Doc: "Longest a record waits for its batch before the batch is written.", Live: true},
			{Key: "priority", Doc: "Event ids written at once (with what waits before them), without waiting for `flush`: `node_down,instance_start_failed,instance_duplicate`.", Live: true},
			{Key: "retention", Doc: "Optional positive duration (`90d`): every hour the agent deletes the rows it wrote that are older. Rows of other agents are never touched. Empty: keep everything.", Live: true},
		}},
		{File: "svc/NAME.conf", Section: "service", Doc: "One service, named after its file (`web.conf` declares `web`). Put the same file on every candidate node: each agent decides from its own copy. Files are picked up live (`service_add`, `service_config_change`, `service_remove`); hidden files and files not ending in `.conf` are ignored.", Keys: []KeyDoc{
			{Key: "nodes", Default: "*", Doc: "Candidate nodes in placement priority order (blanks or commas); `*` alone means every node, in name order.", Live: true},
			{Key: "topology", Default: "failover", Doc: "`failover`: one instance up, on the first eligible candidate; `flex`: `flex_target` instances up.", Live: true},
			{Key: "flex_target", Default: "1", Doc: "With `flex`, the number of instances up: at least 1 and at most the number of listed nodes.", Live: true},
			{Key: "orchestrate", Default: "ha", Doc: "`ha`: the agents start, stop and fail over the service by themselves; `no`: only orders (`agent svc start NAME`) act.", Live: true},
			{Key: "check", Doc: "Required. The check command: exit 0 up, 1 down, 2 warn; any other exit or a timeout is unknown. Split like `command` of a hook, run without a shell.", Live: true},
			{Key: "start", Doc: "The start command; required with `orchestrate = ha`.", Live: true},
			{Key: "stop", Doc: "The stop command; required with `orchestrate = ha`.", Live: true},
			{Key: "check_interval", Default: "10s", Doc: "Time between two checks: a positive duration.", Live: true},
			{Key: "timeout", Default: "60s", Doc: "Bound on each check, start and stop command: a positive duration. At the timeout the command's process group gets SIGTERM, then SIGKILL 5 s later.", Live: true},
			{Key: "env", Doc: "Variables for the check, start and stop commands, which otherwise get only `PATH`, `HOME`, `LANG` and `TZ` from the agent's environment, plus the agent's `AGENT_NODENAME` (this node), `AGENT_SVCNAME` and `AGENT_ACTION` (`check`, `start`, `stop`): space-separated `KEY=VALUE` pairs, quoted like command words (`GREETING=\"hello world\"`). Names are letters, digits and `_`, not starting with a digit, each once; names starting with `AGENT_` are refused. Start scripts that relied on variables inherited from the agent must declare them here.", Live: true},
		}},
	}
}
