package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// readEnviron reads a file of NUL- or newline-separated KEY=VALUE entries
// (a copy of /proc/PID/environ) into a map; nil when it does not exist yet.
func readEnviron(t testing.TB, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) || len(b) == 0 {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.FieldsFunc(string(b), func(r rune) bool { return r == 0 || r == '\n' }) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}

// TestCommandsGetACleanEnvironment starts a real agent with the secrets and
// systemd variables a daemon may have in its environment, and shows that
// neither a hook nor a service check sees them, while the service's env
// values reach its check.
func TestCommandsGetACleanEnvironment(t *testing.T) {
	t.Parallel()
	// Each command copies its own initial environment (the shell adds
	// nothing to /proc/$$/environ) beside the node's root.
	copyEnv := func(name string) string {
		return `/bin/sh -c 'cat /proc/$$/environ > "$` + stateDirEnv + `/` + name + `.tmp" && mv "$` + stateDirEnv + `/` + name + `.tmp" "$` + stateDirEnv + `/` + name + `"'`
	}
	c := newCluster(t, clusterOpts{
		Nodes: 1,
		Env: []string{"AGENT_TOKEN=leaked-token", "NOTIFY_SOCKET=/nonexistent/notify", "LISTEN_PID=1",
			"LISTEN_FDS=1", "SOME_DAEMON_VAR=x"},
		Extra: func(n *node) string {
			return "[hook#env]\nevents = service_add\ncommand = " + copyEnv("hook.env") + "\ntimeout = 10s\n"
		},
	})
	n := c.node(1)
	writeService(t, []*node{n}, "envsvc", `[service]
nodes = n1
orchestrate = no
env = GREETING="hello world" DB_HOST=db1 PATH=/usr/bin:/bin
check = `+copyEnv("check.env")+`
check_interval = 200ms
timeout = 10s
`)

	var hook, check map[string]string
	deadline := time.Now().Add(svcTimeout)
	for hook == nil || check == nil {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: hook env %v, check env %v", svcTimeout, hook, check)
		}
		time.Sleep(pollEvery)
		hook = readEnviron(t, filepath.Join(n.root, "hook.env"))
		check = readEnviron(t, filepath.Join(n.root, "check.env"))
	}
	for who, env := range map[string]map[string]string{"hook": hook, "check": check} {
		for _, k := range []string{"AGENT_TOKEN", "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "SOME_DAEMON_VAR"} {
			if v, ok := env[k]; ok {
				t.Errorf("the %s command sees the daemon's %s=%s", who, k, v)
			}
		}
		if env["HOME"] != n.root {
			t.Errorf("the %s command has HOME=%q, want the daemon's %q", who, env["HOME"], n.root)
		}
	}
	if check["GREETING"] != "hello world" || check["DB_HOST"] != "db1" || check["PATH"] != "/usr/bin:/bin" {
		t.Errorf("the service's env values did not reach its check: %v", check)
	}
	if hook["AGENT_HOOK"] != "env" || hook["AGENT_EVENT_ID"] != "service_add" || hook["AGENT_NODENAME"] != "n1" ||
		hook["AGENT_SEQ"] == "" || hook["PATH"] == "" {
		t.Errorf("the hook's own variables: %v", hook)
	}
	if check["AGENT_NODENAME"] != "n1" || check["AGENT_SVCNAME"] != "envsvc" || check["AGENT_ACTION"] != "check" {
		t.Errorf("the check's own variables: %v", check)
	}
	allowed := []string{"PATH", "HOME", "LANG", "TZ", "AGENT_HOOK", "AGENT_EVENT_ID", "AGENT_NODENAME", "AGENT_SEQ",
		"AGENT_SVCNAME", "AGENT_ACTION", "GREETING", "DB_HOST"}
	for who, env := range map[string]map[string]string{"hook": hook, "check": check} {
		for k := range env {
			if !slices.Contains(allowed, k) {
				t.Errorf("the %s command got %s=%s from the daemon's environment", who, k, env[k])
			}
		}
	}
	// A graceful stop ends the check in flight; the harness's kill -9 would
	// leave it running (services outlive their agent), and its next write
	// into the node's root raced the removal of the test's directory.
	n.stop()
}
