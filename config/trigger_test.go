package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParseTriggerSpecExamples parses the three worked examples of the
// triggers page.
func TestParseTriggerSpecExamples(t *testing.T) {
	text := `[trigger#flapping]
match = data.id in ["node_down","node_up"]   ; which event records enter
distinct = data.node
count = 4
window = 10m
fire_command = /usr/local/bin/page-oncall --flapping
timeout = 30s
retries = 3

[trigger#restarts]
match = data.id=instance_start and data.reason=restart
distinct = data.svcname
count = 3
fire_command = /usr/local/bin/page-oncall

[trigger#no-up]
match = data.id=instance_start or (data.id=instance_status_change and data.avail=up)
distinct = data.svcname data.node
count = 2
fire_when = data.id=instance_status_change
window = 2m
expire_command = /usr/local/bin/page-oncall "start not followed by up"
retries = 0
`
	n, err := ParseNode("/etc/agent/node.conf", []byte(text), "h")
	if err != nil {
		t.Fatal(err)
	}
	want := []Trigger{
		{Name: "flapping", Match: `data.id in ["node_down","node_up"]`, Distinct: []string{"data.node"}, Count: 4,
			Window: 10 * time.Minute, FireCommand: []string{"/usr/local/bin/page-oncall", "--flapping"}, Timeout: 30 * time.Second, Retries: 3},
		{Name: "restarts", Match: "data.id=instance_start and data.reason=restart", Distinct: []string{"data.svcname"}, Count: 3,
			Window: DefaultTriggerWindow, FireCommand: []string{"/usr/local/bin/page-oncall"}, Timeout: DefaultTriggerTimeout, Retries: DefaultTriggerRetries},
		{Name: "no-up", Match: "data.id=instance_start or (data.id=instance_status_change and data.avail=up)",
			Distinct: []string{"data.svcname", "data.node"}, Count: 2, FireWhen: "data.id=instance_status_change",
			Window: 2 * time.Minute, ExpireCommand: []string{"/usr/local/bin/page-oncall", "start not followed by up"},
			Timeout: DefaultTriggerTimeout, Retries: 0},
	}
	if !reflect.DeepEqual(n.Triggers, want) {
		t.Errorf("got  %+v\nwant %+v", n.Triggers, want)
	}
}

func TestParseTriggerErrors(t *testing.T) {
	const head = "[node]\nname = n1\n\n" // the trigger section starts at line 4
	for _, tc := range []struct {
		name, body, want string
	}{
		{"no command", "[trigger#a]\nmatch = data.id=node_down\n",
			"n.conf:4: [trigger#a] fire_command: a trigger needs a fire_command, an expire_command, or both"},
		{"empty commands", "[trigger#a]\nmatch = data.id=node_down\nfire_command =\nexpire_command =\n",
			"n.conf:6: [trigger#a] fire_command: a trigger needs a fire_command, an expire_command, or both"},
		{"no match", "[trigger#a]\nfire_command = /bin/true\n",
			"n.conf:4: [trigger#a] match: a trigger needs a match filter (like data.id=node_down)"},
		{"bad match", "[trigger#a]\nfire_command = /bin/true\nmatch = data.id=\n",
			"n.conf:6: [trigger#a] match: filter \"data.id=\" column 9: expected a value after \"=\""},
		{"bad fire_when", "[trigger#a]\nmatch = data.id\nfire_when = (a\nfire_command = /bin/true\n",
			"n.conf:6: [trigger#a] fire_when: filter \"(a\" column 1: unclosed \"(\""},
		{"zero window", "[trigger#a]\nmatch = data.id\nwindow = 0s\nfire_command = /bin/true\n",
			"n.conf:6: [trigger#a] window: \"0s\": must be positive"},
		{"negative timeout", "[trigger#a]\nmatch = data.id\ntimeout = -1s\nfire_command = /bin/true\n",
			"n.conf:6: [trigger#a] timeout: \"-1s\": must be positive"},
		{"bad window", "[trigger#a]\nmatch = data.id\nwindow = soon\nfire_command = /bin/true\n",
			"n.conf:6: [trigger#a] window: \"soon\" is not a duration (like 30s, 5m, 7d)"},
		{"zero count", "[trigger#a]\nmatch = data.id\ncount = 0\nfire_command = /bin/true\n",
			"n.conf:6: [trigger#a] count: 0: must be 1 to 100000"},
		{"bad count", "[trigger#a]\nmatch = data.id\ncount = four\nfire_command = /bin/true\n",
			"n.conf:6: [trigger#a] count: \"four\" is not a whole number"},
		{"negative retries", "[trigger#a]\nmatch = data.id\nretries = -1\nfire_command = /bin/true\n",
			"n.conf:6: [trigger#a] retries: -1: must be 0 to 20"},
		{"distinct twice", "[trigger#a]\nmatch = data.id\ndistinct = data.node data.node\nfire_command = /bin/true\n",
			"n.conf:6: [trigger#a] distinct: path \"data.node\" is listed twice"},
		{"bad command", "[trigger#a]\nmatch = data.id\nfire_command = /bin/echo \"a\n",
			"n.conf:6: [trigger#a] fire_command: "},
		{"unknown key", "[trigger#a]\nmatch = data.id\nfire_comand = /bin/true\n",
			"n.conf:6: [trigger#a] fire_comand: unknown key"},
		{"bad name", "[trigger#a b]\nmatch = data.id\n",
			"n.conf:4: [trigger#a b]: \"a b\" is not a valid trigger name"},
		{"no name", "[trigger]\nmatch = data.id\n",
			"n.conf:4: [trigger]: unknown section (a trigger is [trigger#NAME])"},
		{"duplicate", "[trigger#a]\nmatch = data.id\nfire_command = /bin/true\n[trigger#a]\nmatch = data.id\n",
			"n.conf:7: [trigger#a]: duplicate section (first at line 4)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNode("n.conf", []byte(head+tc.body), "h")
			if err == nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got  %q\nwant %q", err.Error(), tc.want)
			}
		})
	}
}

func TestTriggerValidateInCode(t *testing.T) {
	n := DefaultNode("h")
	tr := DefaultTrigger("x")
	tr.Match = "data.id=node_down"
	tr.ExpireCommand = []string{"/bin/true"}
	n.Triggers = []Trigger{tr, tr}
	err := n.Validate()
	if err == nil || err.Error() != "[trigger#x]: duplicate trigger name" {
		t.Fatalf("got %v", err)
	}
	n.Triggers = n.Triggers[:1]
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestTriggerProgramsChecked: node.conf is refused when a trigger command
// names a program others can write, as for hooks.
func TestTriggerProgramsChecked(t *testing.T) {
	prog := permFile(t, 0o777)
	for _, key := range []string{"fire_command", "expire_command"} {
		path := permFile(t, 0o600)
		text := "[trigger#t]\nmatch = data.id=x\n" + key + " = " + prog + " --flag\n"
		n, err := ParseNode(path, []byte(text), "h")
		if err != nil {
			t.Fatal(err)
		}
		err = n.checkFiles()
		if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "[trigger#t] "+key) {
			t.Errorf("%s naming a 0777 program: %v", key, err)
		}
	}
}
