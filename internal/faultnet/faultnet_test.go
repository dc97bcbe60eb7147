package faultnet

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"agent/internal/testutil"
)

// pair is two bare transports, a sending to b.
func pair(t *testing.T, seed uint64) (*Network, *Transport, *Transport) {
	t.Helper()
	n := New(seed, Options{PacketBuffer: 10000})
	t.Cleanup(n.Close)
	return n, n.NewTransport("a"), n.NewTransport("b")
}

// received drains what b got, as the sequence numbers of the packets.
func received(b *Transport) []int {
	var got []int
	for {
		select {
		case p := <-b.PacketCh():
			var i int
			fmt.Sscan(string(p.Buf), &i)
			got = append(got, i)
		default:
			return got
		}
	}
}

func send(t *testing.T, a *Transport, to string, count int) {
	t.Helper()
	for i := range count {
		if _, err := a.WriteTo([]byte(fmt.Sprint(i)), to); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLossFollowsSeed(t *testing.T) {
	run := func(seed uint64) []int {
		n, a, b := pair(t, seed)
		n.Set("a", "b", Fault{Loss: 0.3})
		send(t, a, b.Addr(), 1000)
		return received(b)
	}
	one, again, other := run(7), run(7), run(8)
	if len(one) < 600 || len(one) > 800 {
		t.Errorf("30%% loss delivered %d of 1000", len(one))
	}
	if !slices.Equal(one, again) {
		t.Error("the same seed lost different packets")
	}
	if slices.Equal(one, other) {
		t.Error("another seed lost the same packets")
	}
}

func TestOneWayCut(t *testing.T) {
	n, a, b := pair(t, 1)
	n.Cut("a", "b")
	send(t, a, b.Addr(), 10)
	send(t, b, a.Addr(), 10)
	if got := received(b); len(got) != 0 {
		t.Errorf("b got %d packets over a cut link", len(got))
	}
	if got := received(a); len(got) != 10 {
		t.Errorf("a got %d packets, want 10 (the other way is open)", len(got))
	}
	if s := n.Stats("a"); s.PacketsSent != 10 || s.PacketsLost != 10 || s.PacketsReceived != 10 {
		t.Errorf("a's counters %+v", s)
	}
	n.Heal()
	send(t, a, b.Addr(), 10)
	if got := received(b); len(got) != 10 {
		t.Errorf("after Heal b got %d packets, want 10", len(got))
	}
}

func TestJitterReordersAndDuplicateRepeats(t *testing.T) {
	n, a, b := pair(t, 3)
	n.Set("a", "b", Fault{Jitter: 20 * time.Millisecond, Duplicate: 0.5})
	send(t, a, b.Addr(), 200)
	var got []int
	seen := map[int]bool{}
	// deliverLoop takes due packets off the queue before it hands them
	// over: an empty queue does not mean every packet arrived. Wait for
	// every distinct packet instead; a late duplicate changes nothing.
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, i := range received(b) {
			got = append(got, i)
			seen[i] = true
		}
		return len(seen) == 200 && len(n.queueSnapshot()) == 0
	}, "delayed packets never all delivered")
	if len(got) <= 200 {
		t.Errorf("50%% duplication delivered %d packets for 200", len(got))
	}
	if slices.IsSorted(got) {
		t.Error("20 ms of jitter did not reorder 200 packets")
	}
	if len(seen) != 200 {
		t.Errorf("%d distinct packets delivered, want 200", len(seen))
	}
}

func (n *Network) queueSnapshot() []*delayed {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.queue)
}

func TestDialFaults(t *testing.T) {
	n, a, b := pair(t, 1)
	go func() {
		for c := range b.StreamCh() {
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()
	t.Cleanup(func() { _ = b.Shutdown() })
	c, err := a.DialTimeout(b.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	c.Close()
	if c.RemoteAddr().String() != b.Addr() {
		t.Errorf("RemoteAddr %s, want %s", c.RemoteAddr(), b.Addr())
	}

	// A cut either way makes the dial hang until its timeout.
	n.Cut("b", "a")
	_, err = a.DialTimeout(b.Addr(), 30*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("dial over a link cut the other way: %v, want a timeout", err)
	}
	n.Heal()

	// Nobody there: refused at once.
	_, err = a.DialTimeout("10.9.9.9:7946", time.Hour)
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("dial to nobody: %v, want refused", err)
	}
	if s := n.Stats("a"); s.StreamsDialed != 3 || s.StreamsFailed != 2 || s.StreamBytesSent != 4 || s.StreamBytesReceived != 4 {
		t.Errorf("a's stream counters %+v", s)
	}
	// The echo went both ways: one exchange of 4 bytes each way.
	if s := n.Stats("a"); s.Exchanges != 1 || s.ExchangeBytes != 8 || s.ExchangeMax != 4 {
		t.Errorf("a's exchange counters %+v, want 1 exchange of 8 bytes, largest 4", s)
	}
}

func TestOneWayStreamIsNoExchange(t *testing.T) {
	n, a, b := pair(t, 1)
	go func() {
		for c := range b.StreamCh() {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	t.Cleanup(func() { _ = b.Shutdown() })
	before := n.Stats("a")
	c, err := a.DialTimeout(b.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("a user message")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
	if d := n.Stats("a").Sub(before); d.Exchanges != 0 || d.StreamBytesSent != 14 {
		t.Errorf("a one-way stream: counters moved by %+v, want 14 bytes sent and no exchange", d)
	}
}

func TestRestartKeepsAddress(t *testing.T) {
	n := New(1, Options{})
	defer n.Close()
	first := n.NewTransport("x")
	if twin := n.NewTransport("x"); twin.Addr() == first.Addr() {
		t.Error("a second live transport of one name got the same address")
	}
	_ = first.Shutdown()
	if again := n.NewTransport("x"); again.Addr() != first.Addr() {
		t.Errorf("restarted transport at %s, want %s", again.Addr(), first.Addr())
	}
}

func TestTransportsStartNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	n := New(1, Options{PacketBuffer: 16})
	for i := range 1000 {
		n.NewTransport(fmt.Sprint("n", i))
	}
	if after := runtime.NumGoroutine(); after > before+1 {
		t.Errorf("1000 transports: %d goroutines more, want at most 1", after-before)
	}
	n.Close()
}

func fastConfig(n *Network, name string) *memberlist.Config {
	c := memberlist.DefaultLocalConfig()
	c.Name = name
	// Not faster: under -race beside other tests a 25 ms probe timeout
	// made b and c, on the same side of a partition, judge each other dead.
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.GossipInterval = 10 * time.Millisecond
	c.PushPullInterval = 0
	c.SuspicionMult = 2
	// Joins are push/pulls over a stream: under -race on a loaded machine
	// one can take well over 100 ms, and a join has no retry of its own.
	c.TCPTimeout = 2 * time.Second
	c.Logger = log.New(io.Discard, "", 0)
	n.Install(c)
	return c
}

func alive(m *memberlist.Memberlist) int { return m.NumMembers() }

// views lists what each memberlist sees: its name and the members it counts
// alive, for failure messages.
func views(ms []*memberlist.Memberlist) []string {
	var out []string
	for _, m := range ms {
		v := m.LocalNode().Name + ":"
		for _, o := range m.Members() {
			v += " " + o.Name
		}
		out = append(out, v)
	}
	return out
}

func TestMemberlistPartitionAndHeal(t *testing.T) {
	leak := testutil.CheckGoroutines(t)
	n := New(42, Options{})
	var ms []*memberlist.Memberlist
	for _, name := range []string{"a", "b", "c"} {
		m, err := memberlist.Create(fastConfig(n, name))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	if _, err := ms[1].Join([]string{n.Addr("a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ms[2].Join([]string{n.Addr("a")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return alive(ms[0]) == 3 && alive(ms[2]) == 3 }, "never joined: %v", func() any { return views(ms) })
	n.Partition([]string{"a"}, []string{"b", "c"})
	testutil.Eventually(t, 30*time.Second, func() bool { return alive(ms[0]) == 1 && alive(ms[1]) == 2 }, "partition never seen: %v", func() any { return []int{alive(ms[0]), alive(ms[1]), alive(ms[2])} })
	n.Heal()
	if _, err := ms[0].Join([]string{n.Addr("b")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return alive(ms[0]) == 3 && alive(ms[2]) == 3 }, "never healed: %v", func() any { return views(ms) })
	if s := n.Total(); s.PacketsSent == 0 || s.StreamsAccepted == 0 || s.PacketsLost == 0 {
		t.Errorf("counters %+v", s)
	}
	for _, m := range ms {
		_ = m.Shutdown()
	}
	n.Close()
	leak()
}
