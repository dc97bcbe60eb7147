package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// clearPos drops the unexported line index so values compare.
func clearPos(n Node) Node { n.pos = nil; return n }

func TestParseNodeSpecExample(t *testing.T) {
	n, err := LoadNode("testdata/node.conf", "host.example.com")
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i)
	}
	want := Node{
		Source: "testdata/node.conf",
		Node:   NodeSection{Name: "n1", Labels: map[string]string{"zone": "a", "rack": "12"}, MaxData: 1 << 20},
		Cluster: ClusterSection{
			Name: "prod", Secret: secret,
			Seeds:       []string{"10.0.0.1:10000", "10.0.0.2:10000"},
			Nodes:       []string{"n1", "n2", "n3"},
			SplitAction: SplitStop,
		},
		HB: HeartbeatSection{Addr: "0.0.0.0", Port: 10000, Profile: ProfileLAN,
			ForgetAfter: 5 * time.Minute, ReconnectTimeout: 72 * time.Hour},
		Listener: ListenerSection{Addr: "127.0.0.1:1215", Auth: AuthToken, TokenFile: "/etc/agent/token", TLSCert: "...", TLSKey: "...",
			MaxConns: DefaultMaxConns, MaxSubscribers: DefaultMaxSubscribers, IdleTimeout: MaxIdleTimeout},
		Journal: JournalSection{MaxBytes: 256 << 20, MaxAge: 7 * 24 * time.Hour, RingBytes: 64 << 20},
		Hooks: []Hook{{
			Name: "notify", Events: []string{"all"}, Filter: "data.svcname=web",
			Command: []string{"/usr/local/bin/on_event", "--verbose"}, Timeout: 30 * time.Second,
		}},
		secrets: true, // HoldsSecrets: it sets [cluster] secret
	}
	if got := clearPos(n); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseNodeSpecPlaceholderSecret(t *testing.T) {
	data, err := os.ReadFile("testdata/node.conf")
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "BASE64KEY", 1))
	_, err = ParseNode("node.conf", data, "h")
	want := "node.conf:7: [cluster] secret: not valid base64"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestDefaultNode(t *testing.T) {
	n, err := LoadNode(filepath.Join(t.TempDir(), "node.conf"), "db1.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if n.Source != "" {
		t.Errorf("Source = %q, want empty for defaults", n.Source)
	}
	want := Node{
		Node:    NodeSection{Name: "db1", MaxData: 1 << 20},
		Cluster: ClusterSection{Name: "db1", SplitAction: SplitStop},
		HB: HeartbeatSection{Addr: "127.0.0.1", Port: 10000, Profile: ProfileLAN,
			ForgetAfter: DefaultForgetAfter, ReconnectTimeout: DefaultReconnectTimeout},
		Listener: ListenerSection{Auth: AuthToken, MaxConns: DefaultMaxConns, MaxSubscribers: DefaultMaxSubscribers, IdleTimeout: MaxIdleTimeout},
		Journal:  JournalSection{MaxBytes: 256 << 20, MaxAge: 7 * 24 * time.Hour, RingBytes: 64 << 20},
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got  %+v\nwant %+v", n, want)
	}
	if err := n.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if got := DefaultNode("").Node.Name; got != "localhost" {
		t.Errorf("empty hostname: name %q", got)
	}
}

func TestParseNodeEmptyFile(t *testing.T) {
	n, err := ParseNode("node.conf", nil, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if n.Source != "node.conf" || n.Node.Name != "h1" || n.Cluster.Name != "h1" || n.HB.Addr != "0.0.0.0" {
		t.Errorf("got %+v", n)
	}
}

func TestParseNodeKeys(t *testing.T) {
	tests := []struct {
		name  string
		conf  string
		check func(n Node) bool
	}{
		{"node name", "[node]\nname = a1", func(n Node) bool { return n.Node.Name == "a1" && n.Cluster.Name == "a1" }},
		{"quoted name", "[node]\nname = \"a1\"", func(n Node) bool { return n.Node.Name == "a1" }},
		{"empty name is default", "[node]\nname =", func(n Node) bool { return n.Node.Name == "h" }},
		{"labels quoted", "[node]\nlabels = desc=\"a b\" x= ", func(n Node) bool {
			return reflect.DeepEqual(n.Node.Labels, map[string]string{"desc": "a b", "x": ""})
		}},
		{"label value with =", "[node]\nlabels = k=v=w", func(n Node) bool { return n.Node.Labels["k"] == "v=w" }},
		{"cluster name", "[cluster]\nname = prod", func(n Node) bool { return n.Cluster.Name == "prod" }},
		{"secret 16", "[cluster]\nsecret = AAAAAAAAAAAAAAAAAAAAAA==", func(n Node) bool { return len(n.Cluster.Secret) == 16 }},
		{"secret 24", "[cluster]\nsecret = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", func(n Node) bool { return len(n.Cluster.Secret) == 24 }},
		{"seeds commas", "[cluster]\nseeds = a:1,b:2, [::1]:3", func(n Node) bool {
			return reflect.DeepEqual(n.Cluster.Seeds, []string{"a:1", "b:2", "[::1]:3"})
		}},
		{"quorum yes", "[cluster]\nquorum = yes", func(n Node) bool { return n.Cluster.Quorum }},
		{"split freeze", "[cluster]\nsplit_action = freeze", func(n Node) bool { return n.Cluster.SplitAction == SplitFreeze }},
		{"split none", "[cluster]\nsplit_action = none", func(n Node) bool { return n.Cluster.SplitAction == SplitNone }},
		{"hb", "[hb]\naddr = 10.1.2.3\nport = 0\nadvertise = 192.0.2.1\nprofile = wan", func(n Node) bool {
			return n.HB == HeartbeatSection{Addr: "10.1.2.3", Port: 0, Advertise: "192.0.2.1", Profile: ProfileWAN,
				ForgetAfter: DefaultForgetAfter, ReconnectTimeout: DefaultReconnectTimeout}
		}},
		{"hb timeouts", "[hb]\nforget_after = 20s\nreconnect_timeout = 3d", func(n Node) bool {
			return n.HB.ForgetAfter == 20*time.Second && n.HB.ReconnectTimeout == 72*time.Hour
		}},
		{"hb timeouts empty", "[hb]\nforget_after =\nreconnect_timeout =", func(n Node) bool {
			return n.HB.ForgetAfter == DefaultForgetAfter && n.HB.ReconnectTimeout == DefaultReconnectTimeout
		}},
		{"hb local", "[hb]\nprofile = local", func(n Node) bool { return n.HB.Profile == ProfileLocal }},
		{"listener none loopback", "[listener]\naddr = 127.0.0.1:80\nauth = none", func(n Node) bool { return n.Listener.Auth == AuthNone }},
		{"listener none localhost", "[listener]\naddr = localhost:80\nauth = none", func(n Node) bool { return n.Listener.Auth == AuthNone }},
		{"listener none ::1", "[listener]\naddr = [::1]:80\nauth = none", func(n Node) bool { return n.Listener.Auth == AuthNone }},
		{"listener limits", "[listener]\nhosts = agent.example.com, n1\nmax_conns = 100\nmax_subscribers = 10\nidle_timeout = 30s", func(n Node) bool {
			l := n.Listener
			return reflect.DeepEqual(l.Hosts, []string{"agent.example.com", "n1"}) && l.MaxConns == 100 && l.MaxSubscribers == 10 && l.IdleTimeout == 30*time.Second
		}},
		{"journal", "[journal]\nmax_bytes = 1GB\nmax_age = 1d12h", func(n Node) bool {
			return n.Journal == JournalSection{MaxBytes: 1e9, MaxAge: 36 * time.Hour, RingBytes: 64 << 20}
		}},
		{"journal ring", "[journal]\nring_bytes = 8MiB", func(n Node) bool { return n.Journal.RingBytes == 8<<20 }},
		{"max_data", "[node]\nmax_data = 2MiB", func(n Node) bool { return n.Node.MaxData == 2<<20 }},
		{"journal bytes", "[journal]\nmax_bytes = 4096", func(n Node) bool { return n.Journal.MaxBytes == 4096 }},
		{"hook defaults", "[hook#a]\ncommand = /bin/true", func(n Node) bool {
			return reflect.DeepEqual(n.Hooks, []Hook{{Name: "a", Events: []string{"all"}, Command: []string{"/bin/true"}, Timeout: 30 * time.Second}})
		}},
		{"hook events", "[hook#a]\nevents = node_down,instance_start node_up\ncommand = x\ntimeout = 5s", func(n Node) bool {
			return reflect.DeepEqual(n.Hooks[0].Events, []string{"node_down", "instance_start", "node_up"}) && n.Hooks[0].Timeout == 5*time.Second
		}},
		{"hook command quoting", `[hook#a]
command = /bin/sh -c 'echo "$X" | logger' "a b" c\ d`, func(n Node) bool {
			return reflect.DeepEqual(n.Hooks[0].Command, []string{"/bin/sh", "-c", `echo "$X" | logger`, "a b", "c d"})
		}},
		{"hook filter with # and ~", "[hook#a]\nfilter = kind=event and data.id~^instance_ and data.list.#>1\ncommand = x", func(n Node) bool {
			return n.Hooks[0].Filter == "kind=event and data.id~^instance_ and data.list.#>1"
		}},
		{"hooks in order", "[hook#b]\ncommand = x\n[hook#a]\ncommand = y", func(n Node) bool {
			return len(n.Hooks) == 2 && n.Hooks[0].Name == "b" && n.Hooks[1].Name == "a"
		}},
		{"inline comments", "[node] ; c\nname = a ; c\nlabels = k=v # c\n[cluster]\nname = b\t; tab comment\nseeds = ; only a comment", func(n Node) bool {
			return n.Node.Name == "a" && n.Node.Labels["k"] == "v" && n.Cluster.Name == "b" && n.Cluster.Seeds == nil
		}},
		{"# inside value", "[node]\nlabels = k=a#b;c", func(n Node) bool { return n.Node.Labels["k"] == "a#b;c" }},
		{"comment lines and CRLF", "# top\r\n; also\r\n[node]\r\n  name = a\r\n", func(n Node) bool { return n.Node.Name == "a" }},
		{"BOM", "\xef\xbb\xbf[node]\nname = a", func(n Node) bool { return n.Node.Name == "a" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNode("node.conf", []byte(tt.conf), "h")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(n) {
				t.Errorf("unexpected result: %+v", clearPos(n))
			}
		})
	}
}

func TestParseNodeErrors(t *testing.T) {
	tests := []struct {
		conf string
		want string
	}{
		{"[node]\nname = a\n\nnmae = b", "node.conf:4: [node] nmae: unknown key"},
		{"[nodes]\nname = a", "node.conf:1: [nodes]: unknown section"},
		{"[hook]\ncommand = a", "node.conf:1: [hook]: unknown section (a hook is [hook#NAME])"},
		{"name = a", "node.conf:1: name: key outside any section"},
		{"[node]\nname", `node.conf:2: syntax error: expected "key = value" or "[section]", got "name"`},
		{"[node]\n= a", "node.conf:2: syntax error: empty key name"},
		{"[node\nname = a", "node.conf:1: syntax error: section header without ]"},
		{"[]\n", "node.conf:1: syntax error: empty section name"},
		{"[node] x\n", `node.conf:1: [node]: syntax error: unexpected "x" after the section header`},
		{"[node]]\n", `node.conf:1: [node]: syntax error: unexpected "]" after the section header`},
		{"[node]\n\"na\" = a", "node.conf:2: syntax error: quoted key names are not supported"},
		{"[node]\nname = `a\nb`", "node.conf:2: [node] name: multi-line quoted values are not supported"},
		{"[node]\nname = a\nname = b", "node.conf:3: [node] name: duplicate key (first at line 2)"},
		{"[node]\n[cluster]\n[node]", "node.conf:3: [node]: duplicate section (first at line 1)"},
		{"[node]\nname = a b", `node.conf:2: [node] name: "a b" is not a valid node name (letters, digits, - _ .)`},
		{"[node]\nlabels = zone", `node.conf:2: [node] labels: label "zone" is not key=value`},
		{"[node]\nlabels = =a", `node.conf:2: [node] labels: label "=a" is not key=value`},
		{"[node]\nlabels = a=1 a=2", `node.conf:2: [node] labels: label "a" is set twice`},
		{"[node]\nlabels = a='1", `node.conf:2: [node] labels: column 3: unbalanced quote`},
		{"[cluster]\nsecret = !!!", "node.conf:2: [cluster] secret: not valid base64"},
		{"[cluster]\nsecret = AAAA", "node.conf:2: [cluster] secret: decodes to 3 bytes, want 16, 24 or 32"},
		{"[cluster]\nseeds = 10.0.0.1", `node.conf:2: [cluster] seeds: "10.0.0.1" is not a host:port address`},
		{"[cluster]\nseeds = a:0", `node.conf:2: [cluster] seeds: "a:0": "0" is not a port number`},
		{"[cluster]\nnodes = a a", `node.conf:2: [cluster] nodes: "a" is listed twice`},
		{"[cluster]\nnodes = a *", `node.conf:2: [cluster] nodes: "*" is not a valid node name`},
		{"[cluster]\nquorum = maybe", `node.conf:2: [cluster] quorum: "maybe" is not a boolean (true or false)`},
		{"[cluster]\n\nsplit_action = halt", `node.conf:3: [cluster] split_action: "halt" is not one of stop, freeze, none`},
		{"[hb]\nport = abc", `node.conf:2: [hb] port: "abc" is not a port number`},
		{"[listener]\nmax_conns = 0", `node.conf:2: [listener] max_conns: 0: must be at least 1`},
		{"[listener]\nmax_subscribers = x", `node.conf:2: [listener] max_subscribers: "x" is not a number`},
		{"[listener]\nidle_timeout = 5m", `node.conf:2: [listener] idle_timeout: 5m0s: must be positive and at most 2m0s`},
		{"[listener]\nhosts = a_b", `node.conf:2: [listener] hosts: "a_b" is not a host name (letters, digits, - and .)`},
		{"[hb]\nport = 70000", `node.conf:2: [hb] port: "70000" is not a port number`},
		{"[hb]\naddr = myhost", `node.conf:2: [hb] addr: "myhost" is not an IP address`},
		{"[hb]\nadvertise = myhost", `node.conf:2: [hb] advertise: "myhost" is not an IP address`},
		{"[hb]\nprofile = fast", `node.conf:2: [hb] profile: "fast" is not one of lan, wan, local`},
		{"[hb]\nforget_after = soon", `node.conf:2: [hb] forget_after: "soon" is not a duration (like 30s, 5m, 7d)`},
		{"[hb]\nforget_after = 0s", `node.conf:2: [hb] forget_after: "0s": must be positive`},
		{"[hb]\nforget_after = 10ms", `node.conf:2: [hb] forget_after: 10ms: must be at least 1s`},
		{"[hb]\n\nreconnect_timeout = 5s", `node.conf:3: [hb] reconnect_timeout: 5s: must be at least 10s (one reconnect period)`},
		{"[listener]\nauth = basic", `node.conf:2: [listener] auth: "basic" is not one of token, none`},
		{"[listener]\naddr = 1215", `node.conf:2: [listener] addr: "1215" is not a host:port address`},
		{"[listener]\naddr = 0.0.0.0:1215\nauth = none", `node.conf:3: [listener] auth: none is accepted on loopback addresses only, not "0.0.0.0"`},
		{"[listener]\naddr = 127.0.0.1:1215", `node.conf:1: [listener] token_file: required with auth = token`},
		{"[listener]\naddr = 127.0.0.1:1215\ntoken_file = t\ntls_key = k", `node.conf:1: [listener] tls_cert: tls_cert and tls_key go together`},
		{"[journal]\nmax_bytes = 10XB", `node.conf:2: [journal] max_bytes: "10XB" is not a size (like 256MiB, 1GB, 4096)`},
		{"[journal]\nmax_bytes = 0", `node.conf:2: [journal] max_bytes: "0": must be positive`},
		{"[journal]\nmax_bytes = 99999999999TiB", `node.conf:2: [journal] max_bytes: "99999999999TiB": too large`},
		{"[journal]\nmax_age = forever", `node.conf:2: [journal] max_age: "forever" is not a duration (like 30s, 5m, 7d)`},
		{"[journal]\nmax_age = -1s", `node.conf:2: [journal] max_age: "-1s": must be positive`},
		{"[journal]\nsize = 1", `node.conf:2: [journal] size: unknown key`},
		{"[journal]\nring_bytes = 1000", `node.conf:2: [journal] ring_bytes: 1000 bytes: must be at least 1MiB`},
		{"[node]\nmax_data = 100", `node.conf:2: [node] max_data: 100 bytes: must be from 4KiB to 8MiB (peers copy a node's data whole over memberlist)`},
		{"[node]\nmax_data = 1GiB", `node.conf:2: [node] max_data: 1073741824 bytes: must be from 4KiB to 8MiB (peers copy a node's data whole over memberlist)`},
		{"[node]\nmax_data = lots", `node.conf:2: [node] max_data: "lots" is not a size (like 256MiB, 1GB, 4096)`},
		{"[hook#a]\ncommand = x\n[hook#a]\ncommand = y", "node.conf:3: [hook#a]: duplicate section (first at line 1)"},
		{"[hook#a b]\ncommand = x", `node.conf:1: [hook#a b]: "a b" is not a valid hook name (letters, digits, - _ .)`},
		{"[hook#]\ncommand = x", `node.conf:1: [hook#]: "" is not a valid hook name (letters, digits, - _ .)`},
		{"[hook#a]\nevents = all", "node.conf:1: [hook#a] command: a hook needs a command"},
		{"[hook#a]\ncommand =", "node.conf:2: [hook#a] command: a hook needs a command"},
		{"[hook#a]\ncommand = \"x", "node.conf:2: [hook#a] command: column 1: unbalanced quote"},
		{"[hook#a]\ncommand = x\\", "node.conf:2: [hook#a] command: column 2: trailing backslash"},
		{"[hook#a]\ncommand = x\ntimeout = 10", `node.conf:3: [hook#a] timeout: "10" is not a duration (like 30s, 5m, 7d)`},
		{"[hook#a]\ncommand = x\nevents = all node_down", `node.conf:3: [hook#a] events: "all" must stand alone`},
		{"[hook#a]\ncommand = x\nevents = Node-Down", `node.conf:3: [hook#a] events: "Node-Down" is not an event id`},
		{"[hook#a]\ncommand = x\nrun = y", `node.conf:3: [hook#a] run: unknown key`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := ParseNode("node.conf", []byte(tt.conf), "h")
			if err == nil {
				t.Fatalf("no error, want %s", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) {
				t.Errorf("error %T is not a *Error matching ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line")
			}
		})
	}
}

func TestNodeValidateInCode(t *testing.T) {
	n := DefaultNode("h")
	n.HB.Port = -1
	if err := n.Validate(); err == nil || err.Error() != "[hb] port: -1 is not a port number" {
		t.Errorf("got %v", err)
	}
	n = DefaultNode("h")
	n.Hooks = []Hook{{Name: "a", Events: []string{"all"}, Command: []string{"x"}, Timeout: time.Second}, {Name: "a", Events: []string{"all"}, Command: []string{"x"}, Timeout: time.Second}}
	if err := n.Validate(); err == nil || err.Error() != "[hook#a]: duplicate hook name" {
		t.Errorf("got %v", err)
	}
}

func TestSecretRedacted(t *testing.T) {
	s := Secret("0123456789abcdef")
	if s.String() != "REDACTED" {
		t.Errorf("String() = %q", s.String())
	}
	b, _ := s.MarshalText()
	if string(b) != "REDACTED" {
		t.Errorf("MarshalText() = %q", b)
	}
	var raw []byte = s // a Secret is usable where memberlist wants []byte
	if len(raw) != 16 {
		t.Error("lost bytes")
	}
}

func TestLoadNodeReadError(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadNode(dir, "h"); err == nil {
		t.Error("reading a directory: no error")
	}
}

func FuzzParseNode(f *testing.F) {
	if data, err := os.ReadFile("testdata/node.conf"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("[hook#a]\ncommand = 'x\n"))
	f.Add([]byte("[node]\nname = `a\n"))
	f.Add([]byte("\xfe\xff[node]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseNode("node.conf", data, "h")
		if err == nil {
			if err := n.Validate(); err != nil {
				t.Errorf("ParseNode accepted what Validate refuses: %v", err)
			}
		} else if strings.Contains(err.Error(), "\n") && !strings.Contains(string(data), "\r") {
			// Messages quote offending text with %q, so they stay one line.
			t.Errorf("multi-line error: %q", err)
		}
	})
}
