package triggers

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"agent/config"
)

// docExamples parses the ```ini blocks of the worked examples of
// docs/triggers.md, so that what the page shows is what runs.
func docExamples(t *testing.T) map[string]*Spec {
	t.Helper()
	b, err := os.ReadFile("../docs/triggers.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "## Worked examples")
	if start < 0 {
		t.Fatal("docs/triggers.md has no \"## Worked examples\" section")
	}
	section := text[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var conf strings.Builder
	for _, m := range regexp.MustCompile("(?s)```ini\n(.*?)```").FindAllStringSubmatch(section, -1) {
		conf.WriteString(m[1])
		conf.WriteString("\n")
	}
	n, err := config.ParseNode("docs/triggers.md", []byte(conf.String()), "n1")
	if err != nil {
		t.Fatalf("the worked examples do not parse: %v", err)
	}
	specs := map[string]*Spec{}
	for _, c := range n.Triggers {
		s, err := Compile(c)
		if err != nil {
			t.Fatalf("[trigger#%s]: %v", c.Name, err)
		}
		specs[c.Name] = s
	}
	for _, name := range []string{"flapping", "restarts", "start-not-up"} {
		if specs[name] == nil {
			t.Fatalf("docs/triggers.md lacks the worked example [trigger#%s] (has %d)", name, len(specs))
		}
	}
	return specs
}

// TestDocsWorkedExamples runs the three worked examples of docs/triggers.md
// as the page describes them.
func TestDocsWorkedExamples(t *testing.T) {
	specs := docExamples(t)

	t.Run("flapping", func(t *testing.T) {
		f := newFeed()
		e := newEngine(f, specs["flapping"])
		for i, id := range []string{"node_down", "node_up", "node_down"} {
			expect(t, id, e.Apply(f.event(id, "node", "n2")))
			expect(t, "another peer", e.Apply(f.event("node_down", "node", "n3")))
			f.advance(time.Duration(i+1) * time.Minute)
		}
		expect(t, "fourth of n2", e.Apply(f.event("node_up", "node", "n2")),
			"flapping fire/count [data.node=n2] n=4 seqs=1,3,5,7")
		// n3's stream, 3 events, ends silently ten minutes after its first.
		acts := e.Expire(t0.Add(10 * time.Minute))
		expect(t, "n3 expires", acts, "flapping expire/window [data.node=n3] n=3 seqs=2,4,6")
		if acts[0].Command != nil {
			t.Errorf("flapping has no expire_command, yet the expiry runs %q", acts[0].Command)
		}
	})

	t.Run("restarts", func(t *testing.T) {
		f := newFeed()
		e := newEngine(f, specs["restarts"])
		expect(t, "restart 1", e.Apply(f.event("instance_start", "svcname", "web", "reason", "restart")))
		expect(t, "a first start is not a restart", e.Apply(f.event("instance_start", "svcname", "web", "reason", "order")))
		expect(t, "another service", e.Apply(f.event("instance_start", "svcname", "db", "reason", "restart")))
		f.advance(4 * time.Minute)
		expect(t, "restart 2", e.Apply(f.event("instance_start", "svcname", "web", "reason", "restart")))
		f.advance(5 * time.Minute)
		acts := e.Apply(f.event("instance_start", "svcname", "web", "reason", "restart"))
		expect(t, "restart 3 within ten minutes", acts, "restarts fire/count [data.svcname=web] n=3 seqs=1,4,5")
		if len(acts[0].Command) == 0 || acts[0].Command[0] != "/usr/local/bin/page-oncall" {
			t.Errorf("fire command %q", acts[0].Command)
		}
		// db restarted once: its stream ends silently ten minutes after.
		f.advance(time.Minute)
		expect(t, "db's window ends", e.Expire(f.now), "restarts expire/window [data.svcname=db] n=1 seqs=3")
		expect(t, "db restart opens a new stream", e.Apply(f.event("instance_start", "svcname", "db", "reason", "restart")))
		expect(t, "db restart 2", e.Apply(f.event("instance_start", "svcname", "db", "reason", "restart")))
		expect(t, "db restart 3", e.Apply(f.event("instance_start", "svcname", "db", "reason", "restart")),
			"restarts fire/count [data.svcname=db] n=3 seqs=6,7,8")
	})

	t.Run("start-not-up", func(t *testing.T) {
		f := newFeed()
		e := newEngine(f, specs["start-not-up"])
		expect(t, "start web", e.Apply(f.event("instance_start", "svcname", "web")))
		f.advance(30 * time.Second)
		acts := e.Apply(f.event("instance_status_change", "svcname", "web", "avail", "up"))
		expect(t, "up within two minutes", acts, "start-not-up fire/fire_when [data.svcname=web] n=2 seqs=1,2")
		if acts[0].Command != nil {
			t.Errorf("a fire without fire_command runs %q", acts[0].Command)
		}
		expect(t, "start db", e.Apply(f.event("instance_start", "svcname", "db")))
		expect(t, "a second start does not satisfy fire_when", e.Apply(f.event("instance_start", "svcname", "db")))
		acts = e.Expire(f.now.Add(2 * time.Minute))
		expect(t, "no up: pages", acts, "start-not-up expire/window [data.svcname=db] n=2 seqs=3,4")
		if len(acts[0].Command) != 2 || acts[0].Command[1] != "start not followed by up" {
			t.Errorf("expire command %q", acts[0].Command)
		}
	})
}
