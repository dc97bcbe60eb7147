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

func TestParseServiceSpecExample(t *testing.T) {
	s, err := LoadService("testdata/svc/web.conf")
	if err != nil {
		t.Fatal(err)
	}
	s.pos = nil
	want := Service{
		Source: "testdata/svc/web.conf", Name: "web",
		Nodes: []string{"n1", "n2", "n3"}, Topology: Failover, FlexTarget: 2, Orchestrate: OrchestrateHA,
		Check: []string{"/usr/local/bin/web-check"}, Start: []string{"/usr/local/bin/web-start"}, Stop: []string{"/usr/local/bin/web-stop"},
		CheckInterval: 10 * time.Second, Timeout: 60 * time.Second,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
}

const minimalSvc = "[service]\ncheck = c\nstart = s1\nstop = s2\n"

func TestParseServiceKeys(t *testing.T) {
	tests := []struct {
		name  string
		conf  string
		check func(s Service) bool
	}{
		{"defaults", minimalSvc, func(s Service) bool {
			return s.AllNodes() && s.Topology == Failover && s.FlexTarget == 1 && s.Orchestrate == OrchestrateHA &&
				s.CheckInterval == 10*time.Second && s.Timeout == 60*time.Second
		}},
		{"star", minimalSvc + "nodes = *", func(s Service) bool { return s.AllNodes() }},
		{"flex", minimalSvc + "nodes = a,b c\ntopology = flex\nflex_target = 3", func(s Service) bool {
			return s.Topology == Flex && s.FlexTarget == 3 && reflect.DeepEqual(s.Nodes, []string{"a", "b", "c"})
		}},
		{"flex on all nodes", minimalSvc + "topology = flex\nflex_target = 9", func(s Service) bool { return s.FlexTarget == 9 }},
		{"orchestrate no without start/stop", "[service]\ncheck = c\norchestrate = no", func(s Service) bool {
			return s.Orchestrate == OrchestrateNo && s.Start == nil && s.Stop == nil
		}},
		{"commands", "[service]\ncheck = /bin/sh -c 'test -f /x'\nstart = a \"b c\"\nstop = d", func(s Service) bool {
			return reflect.DeepEqual(s.Check, []string{"/bin/sh", "-c", "test -f /x"}) && reflect.DeepEqual(s.Start, []string{"a", "b c"})
		}},
		{"env", minimalSvc + `env = DB_HOST=db1 GREETING="hello world" Q='a "b"' EMPTY= PATH=/opt/web/bin:/usr/bin`, func(s Service) bool {
			return reflect.DeepEqual(s.Env, []string{"DB_HOST=db1", "GREETING=hello world", `Q=a "b"`, "EMPTY=", "PATH=/opt/web/bin:/usr/bin"})
		}},
		{"env empty", minimalSvc + "env =", func(s Service) bool { return s.Env == nil }},
		{"durations", minimalSvc + "check_interval = 1m\ntimeout = 1d", func(s Service) bool {
			return s.CheckInterval == time.Minute && s.Timeout == 24*time.Hour
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseService("/x/web.conf", []byte(tt.conf))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(s) {
				t.Errorf("unexpected: %+v", s)
			}
		})
	}
}

func TestParseServiceErrors(t *testing.T) {
	tests := []struct {
		path, conf, want string
	}{
		{"web.conf", "[svc]\n", "web.conf:1: [svc]: unknown section"},
		{"web.conf", minimalSvc + "nodez = a", "web.conf:5: [service] nodez: unknown key"},
		{"web.conf", minimalSvc + "nodes = a * b", `web.conf:5: [service] nodes: "*" (all nodes) must stand alone`},
		{"web.conf", minimalSvc + "nodes = a a", `web.conf:5: [service] nodes: "a" is listed twice`},
		{"web.conf", minimalSvc + "nodes = a/b", `web.conf:5: [service] nodes: "a/b" is not a valid node name`},
		{"web.conf", minimalSvc + "topology = spread", `web.conf:5: [service] topology: "spread" is not one of failover, flex`},
		{"web.conf", minimalSvc + "flex_target = two", `web.conf:5: [service] flex_target: "two" is not a number`},
		{"web.conf", minimalSvc + "flex_target = 0", `web.conf:5: [service] flex_target: 0: must be at least 1`},
		{"web.conf", minimalSvc + "nodes = a b\ntopology = flex\nflex_target = 3", `web.conf:7: [service] flex_target: 3 exceeds the 2 candidate nodes`},
		{"web.conf", minimalSvc + "orchestrate = yes", `web.conf:5: [service] orchestrate: "yes" is not one of ha, no`},
		{"web.conf", "[service]\nstart = a\nstop = b", `web.conf:1: [service] check: a check command is required`},
		{"web.conf", "", `web.conf: [service] check: a check command is required`},
		{"web.conf", "[service]\ncheck = a\nstop = b", `web.conf:1: [service] start: a start command is required with orchestrate = ha`},
		{"web.conf", "[service]\ncheck = a\nstart = b\nstop =", `web.conf:4: [service] stop: a stop command is required with orchestrate = ha`},
		{"web.conf", "[service]\ncheck = 'a", `web.conf:2: [service] check: column 1: unbalanced quote`},
		{"web.conf", minimalSvc + "check_interval = 0s", `web.conf:5: [service] check_interval: "0s": must be positive`},
		{"web.conf", minimalSvc + "timeout = 1 minute", `web.conf:5: [service] timeout: "1 minute" is not a duration (like 30s, 5m, 7d)`},
		{"web.conf", minimalSvc + "check = d", `web.conf:5: [service] check: duplicate key (first at line 2)`},
		{"web.conf", minimalSvc + "env = A=1 B", `web.conf:5: [service] env: "B" is not KEY=VALUE`},
		{"web.conf", minimalSvc + "env = =x", `web.conf:5: [service] env: "" is not a valid variable name (letters, digits, _; not starting with a digit)`},
		{"web.conf", minimalSvc + "env = 1A=x", `web.conf:5: [service] env: "1A" is not a valid variable name (letters, digits, _; not starting with a digit)`},
		{"web.conf", minimalSvc + "env = MY-VAR=x", `web.conf:5: [service] env: "MY-VAR" is not a valid variable name (letters, digits, _; not starting with a digit)`},
		{"web.conf", minimalSvc + "env = AGENT_TOKEN=x", `web.conf:5: [service] env: AGENT_TOKEN: names starting with AGENT_ are the agent's own`},
		{"web.conf", minimalSvc + "env = A=1 A=2", `web.conf:5: [service] env: A is set twice`},
		{"web.conf", minimalSvc + "env = A='x", `web.conf:5: [service] env: column 3: unbalanced quote`},
		{"/etc/svc/my web.conf", minimalSvc, `/etc/svc/my web.conf: "my web" is not a valid service name (letters, digits, - _ .)`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := ParseService(tt.path, []byte(tt.conf))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got  %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Error("not ErrInvalid")
			}
		})
	}
}

func TestLoadServices(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("web.conf", minimalSvc)
	write("db.conf", minimalSvc+"nodes = n1 n2\n")
	write("bad.conf", "[service]\ncheck = x\nbogus = 1\n")
	write("bad name.conf", minimalSvc)
	write(".web.conf.swp", "junk")
	write("web.conf~", "junk")
	write("README", "junk")
	if err := os.Mkdir(filepath.Join(dir, "sub.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	good, bad := LoadServices(dir)
	if len(good) != 2 || good["web"].Name != "web" || !reflect.DeepEqual(good["db"].Nodes, []string{"n1", "n2"}) {
		t.Errorf("good = %+v", good)
	}
	if len(bad) != 2 {
		t.Fatalf("bad = %v", bad)
	}
	if err := bad[filepath.Join(dir, "bad.conf")]; err == nil || !strings.HasSuffix(err.Error(), "bad.conf:3: [service] bogus: unknown key") {
		t.Errorf("bad.conf: %v", err)
	}
	if err := bad[filepath.Join(dir, "bad name.conf")]; err == nil {
		t.Error("bad name.conf: no error")
	}

	good, bad = LoadServices(filepath.Join(dir, "missing"))
	if len(good) != 0 || len(bad) != 0 {
		t.Errorf("missing dir: %v %v", good, bad)
	}
	good, bad = LoadServices(filepath.Join(dir, "web.conf"))
	if len(good) != 0 || len(bad) != 1 {
		t.Errorf("not a dir: %v %v", good, bad)
	}
}

func FuzzParseService(f *testing.F) {
	if data, err := os.ReadFile("testdata/svc/web.conf"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(minimalSvc))
	f.Add([]byte("[service]\ncheck = \"a\\\"b\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseService("svc/web.conf", data)
		if err == nil {
			if err := s.Validate(); err != nil {
				t.Errorf("ParseService accepted what Validate refuses: %v", err)
			}
		}
	})
}
