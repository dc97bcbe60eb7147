package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSinks(t *testing.T) {
	tests := []struct {
		name  string
		conf  string
		check func(n Node) bool
	}{
		{"defaults", "[sink#history]", func(n Node) bool {
			return reflect.DeepEqual(n.Sinks, []Sink{{Name: "history", Type: "sqlite", Path: "history.db",
				Kinds: []string{"event"}, Events: []string{"all"}, Batch: 1000, Flush: time.Second}})
		}},
		{"the SPEC example", `[sink#history]
type = sqlite
path = history.db
kinds = event
events = all
filter = data.svcname=web
batch = 1000
flush = 1s
priority = node_down,instance_start_failed,instance_duplicate
retention = 90d`, func(n Node) bool {
			s := n.Sinks[0]
			return s.Filter == "data.svcname=web" && s.Retention == 90*24*time.Hour &&
				reflect.DeepEqual(s.Priority, []string{"node_down", "instance_start_failed", "instance_duplicate"})
		}},
		{"postgres dsn_file", "[sink#pg]\ntype = postgres\ndsn_file = /etc/agent/pg.dsn\nkinds = event,patch\nbatch = 500\nflush = 200ms", func(n Node) bool {
			s := n.Sinks[0]
			return s.Type == SinkPostgres && s.DSNFile == "/etc/agent/pg.dsn" && s.Batch == 500 &&
				s.Flush == 200*time.Millisecond && reflect.DeepEqual(s.Kinds, []string{"event", "patch"})
		}},
		{"postgres dsn with spaces", "[sink#pg]\ntype = postgres\ndsn = \"host=127.0.0.1 user=agent dbname=hist\"", func(n Node) bool {
			return n.Sinks[0].DSN == "host=127.0.0.1 user=agent dbname=hist"
		}},
		{"sinks in order", "[sink#b]\n[sink#a]\ntype = postgres\ndsn = postgres://x", func(n Node) bool {
			return len(n.Sinks) == 2 && n.Sinks[0].Name == "b" && n.Sinks[1].Name == "a"
		}},
		{"empty retention", "[sink#a]\nretention =", func(n Node) bool { return n.Sinks[0].Retention == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNode("node.conf", []byte(tt.conf), "h")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(n) {
				t.Errorf("unexpected result: %+v", n.Sinks)
			}
		})
	}
}

func TestParseSinkErrors(t *testing.T) {
	tests := []struct {
		conf string
		want string
	}{
		{"[sink]\ntype = sqlite", "node.conf:1: [sink]: unknown section (a history sink is [sink#NAME])"},
		{"[sink#a b]", `node.conf:1: [sink#a b]: "a b" is not a valid sink name (letters, digits, - _ .)`},
		{"[sink#a]\n[sink#a]", "node.conf:2: [sink#a]: duplicate section (first at line 1)"},
		{"[sink#a]\ntype = mysql", `node.conf:2: [sink#a] type: "mysql" is not one of sqlite, postgres`},
		{"[sink#a]\ntype = postgres", "node.conf:1: [sink#a] dsn: type = postgres needs one of dsn or dsn_file"},
		{"[sink#a]\ntype = postgres\ndsn = x\ndsn_file = /y", "node.conf:3: [sink#a] dsn: type = postgres needs one of dsn or dsn_file"},
		{"[sink#a]\ntype = postgres\ndsn_file = pg.dsn", `node.conf:3: [sink#a] dsn_file: "pg.dsn" must be an absolute path`},
		{"[sink#a]\ndsn = x", "node.conf:1: [sink#a] type: dsn and dsn_file are for type = postgres; sqlite takes path"},
		{"[sink#a]\nkinds = full", `node.conf:2: [sink#a] kinds: "full" is not one of event, patch`},
		{"[sink#a]\nkinds = event event", `node.conf:2: [sink#a] kinds: "event" is given twice`},
		{"[sink#a]\nevents = all node_down", `node.conf:2: [sink#a] events: "all" must stand alone`},
		{"[sink#a]\npriority = Node-Down", `node.conf:2: [sink#a] priority: "Node-Down" is not an event id`},
		{"[sink#a]\nbatch = 0", "node.conf:2: [sink#a] batch: 0: want 1 to 10000 records"},
		{"[sink#a]\nbatch = many", `node.conf:2: [sink#a] batch: "many" is not a number of records`},
		{"[sink#a]\nflush = 0s", `node.conf:2: [sink#a] flush: "0s": must be positive`},
		{"[sink#a]\nretention = soon", `node.conf:2: [sink#a] retention: "soon" is not a duration (like 30s, 5m, 7d)`},
		{"[sink#a]\nhost = x", "node.conf:2: [sink#a] host: unknown key"},
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
		})
	}
}

func TestFindSink(t *testing.T) {
	n, err := ParseNode("/etc/agent/node.conf", []byte("[sink#a]\n[sink#b]"), "h")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := n.FindSink(""); err != nil || s.Name != "a" {
		t.Errorf("default sink: %v %v, want a", s.Name, err)
	}
	if s, err := n.FindSink("b"); err != nil || s.Name != "b" {
		t.Errorf("sink b: %v %v", s.Name, err)
	}
	if _, err := n.FindSink("c"); err == nil || !strings.Contains(err.Error(), "sinks: a, b") {
		t.Errorf("sink c: %v, want an error naming the sinks", err)
	}
	if _, err := DefaultNode("h").FindSink(""); err == nil || !strings.Contains(err.Error(), "no [sink#NAME]") {
		t.Errorf("no sinks: %v", err)
	}
	if got := n.Sinks[0].DBPath("/var/lib/agent"); got != "/var/lib/agent/a.db" {
		t.Errorf("DBPath = %s", got)
	}
}
