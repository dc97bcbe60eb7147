// Package netfault cuts and degrades the network between real agent
// processes, for fault tests: a network namespace of the test's own, with
// nft rules in an output chain of that namespace.
//
// The processes run inside the namespace on its loopback, node i on
// 127.0.0.i. Addresses alone identify a sender only if it sends from its
// own address: UDP from a bound socket does, and so does TCP from a socket
// bound before it connects (the agent binds its heartbeat address), but a
// TCP connection to 127.0.0.3 made without binding comes from 127.0.0.1,
// the route's source, whoever dials it (and is then taken for node 1's).
// So node i also runs with group id GID(i), and the rules match the
// sending socket's group (meta skgid) as well as the source address.
//
// Everything needs root, iproute2 (ip) and nftables (nft). Check says
// whether they are there; tests call Require, which skips loudly or, with
// AGENT_REQUIRE_FAULT_TESTS=1 (set by CI), fails.
//
// A NS is safe for use by several goroutines: each rule change is one nft
// command.
package netfault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// GIDBase is the group id of node 0; node i's process runs with GIDBase+i.
const GIDBase = 42000

// RequireEnv names the environment variable that, set to 1, turns a fault
// test that cannot run into a failure instead of a skip.
const RequireEnv = "AGENT_REQUIRE_FAULT_TESTS"

// ErrUnsupported means the kernel or the tools here cannot run the fault
// rules (no nft support in the kernel, not root, no ip or nft command).
var ErrUnsupported = errors.New("network fault injection unsupported here")

// GID is the group id node i's process runs with, so that rules can match
// what it sends.
func GID(i int) uint32 { return uint32(GIDBase + i) }

// Addr is node i's address inside the namespace: 127.0.0.i.
func Addr(i int) string { return fmt.Sprintf("127.0.0.%d", i) }

// Check returns nil when fault tests can run here, else an error wrapping
// ErrUnsupported that says what is missing.
func Check() error {
	switch {
	case os.Geteuid() != 0:
		return fmt.Errorf("%w: not root", ErrUnsupported)
	case !have("ip"):
		return fmt.Errorf("%w: no ip command (iproute2)", ErrUnsupported)
	case !have("nft"):
		return fmt.Errorf("%w: no nft command (nftables)", ErrUnsupported)
	}
	return nil
}

func have(cmd string) bool { _, err := exec.LookPath(cmd); return err == nil }

// NS is a network namespace with lo up and an nft table whose output chain
// holds the fault rules.
type NS struct {
	// Name is the namespace's name (ip netns).
	Name string
}

// New creates a namespace named prefix-PID-RANDOM (unique among tests run
// at once), brings its lo up and adds an empty output chain. Close deletes
// it.
func New(prefix string) (*NS, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	ns := &NS{Name: fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), rand.IntN(1e6))}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: ip netns add %s: %v: %s", ErrUnsupported, ns.Name, err, bytes.TrimSpace(out))
	}
	if out, err := exec.Command("ip", "-n", ns.Name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = ns.Close()
		return nil, fmt.Errorf("lo up in %s: %v: %s", ns.Name, err, bytes.TrimSpace(out))
	}
	for _, rule := range []string{
		"add table inet netfault",
		"add chain inet netfault out { type filter hook output priority 0 ; policy accept ; }",
	} {
		if err := ns.NFT(rule); err != nil {
			_ = ns.Close()
			return nil, err
		}
	}
	return ns, nil
}

// Close deletes the namespace. The processes still in it keep running, cut
// from everything: stop them first.
func (ns *NS) Close() error {
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", ns.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// NFT runs one nft command in the namespace. A kernel without the needed
// nft support gives an error wrapping ErrUnsupported.
func (ns *NS) NFT(rule string) error {
	args := append([]string{"netns", "exec", ns.Name, "nft"}, strings.Fields(rule)...)
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(msg, "Operation not supported") {
		return fmt.Errorf("%w: nft %s: %s", ErrUnsupported, rule, msg)
	}
	return fmt.Errorf("nft %s: %v: %s", rule, err, msg)
}

// Command builds a command run inside the namespace; with gid != 0 the
// process runs with that group id (GID(i) for node i) and the caller's
// user id.
func (ns *NS) Command(ctx context.Context, gid uint32, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	if gid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid: uint32(os.Geteuid()), Gid: gid, NoSetGroups: true,
		}}
	}
	return cmd
}

func addrSet(nodes []int) string {
	s := make([]string, len(nodes))
	for k, i := range nodes {
		s[k] = Addr(i)
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

func gidSet(nodes []int) string {
	s := make([]string, len(nodes))
	for k, i := range nodes {
		s[k] = fmt.Sprint(GID(i))
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// Drop drops what nodes from send to nodes to (one way); with pct < 100, a
// random pct percent of it. Rules add up until Heal.
func (ns *NS) Drop(from, to []int, pct int) error {
	if len(from) == 0 || len(to) == 0 {
		return nil
	}
	loss := ""
	if pct < 100 {
		loss = fmt.Sprintf("numgen random mod 100 < %d ", pct)
	}
	if err := ns.NFT(fmt.Sprintf("add rule inet netfault out ip saddr %s ip daddr %s %sdrop", addrSet(from), addrSet(to), loss)); err != nil {
		return err
	}
	return ns.NFT(fmt.Sprintf("add rule inet netfault out meta skgid %s ip daddr %s %sdrop", gidSet(from), addrSet(to), loss))
}

// Partition cuts a from b both ways.
func (ns *NS) Partition(a, b []int) error {
	if err := ns.Drop(a, b, 100); err != nil {
		return err
	}
	return ns.Drop(b, a, 100)
}

// Isolate cuts node i from every one of others, both ways.
func (ns *NS) Isolate(i int, others []int) error { return ns.Partition([]int{i}, others) }

// Heal removes every rule: the network is whole again.
func (ns *NS) Heal() error { return ns.NFT("flush chain inet netfault out") }
