package orchestrator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"agent/config"
	"agent/internal/ride"
	"agent/internal/testutil"
	"agent/monitor"
)

var three = []string{"n1", "n2", "n3"}

func TestFailoverOnceOnLeaderLoss(t *testing.T) {
	leak := testutil.CheckGoroutines(t)
	func() {
		c := failoverCluster(t, three, clusterOpts{}, "web")
		testutil.Eventually(t, 5*time.Second, func() bool { return c.summary("n3", "web").Done }, "web never done")
		if s := c.summary("n2", "web"); s.Avail != AvailUp || s.Placement != "optimal" || len(s.Up) != 1 {
			t.Fatalf("summary on n2: %+v", s)
		}
		c.kill("n1")
		c.waitUp("web", "n2")
		c.waitChecks(5)
		if got := c.w.upNodes("web"); len(got) != 1 || !got["n2"] {
			t.Fatalf("up after failover: %v", got)
		}
		if n := c.w.count(c.w.starts, "n2", "web"); n != 1 {
			t.Errorf("n2 started web %d times, want 1", n)
		}
		if n := c.w.count(c.w.starts, "n3", "web"); n != 0 {
			t.Errorf("n3 started web %d times", n)
		}
		if evs := c.node("n2").bus.find(EventInstanceStart, ReasonFailover); len(evs) != 1 {
			t.Errorf("n2 instance_start failover events: %d", len(evs))
		} else {
			for _, k := range []string{"svcname", "instance", "service", "monitor"} {
				if _, ok := evs[0][k]; !ok {
					t.Errorf("event lacks %s: %v", k, evs[0])
				}
			}
		}
		if got := c.node("n2").orch.Stats().Failovers; got != 1 {
			t.Errorf("failovers stat %d", got)
		}
		if len(c.node("n3").bus.find(EventPlacementChange, "")) == 0 {
			t.Error("no placement_change on n3")
		}
		if v := c.w.violated(); len(v) > 0 {
			t.Fatalf("violations: %v", v)
		}
		s := c.summary("n3", "web")
		// n1 is dead: n2 is where the rules put it.
		if s.Placement != "optimal" || s.Avail != AvailUp {
			t.Errorf("summary after failover: %+v", s)
		}
		c.stop()
	}()
	leak()
}

func TestRestartOnLeader(t *testing.T) {
	c := failoverCluster(t, three, clusterOpts{}, "web")
	c.w.setUp("n1", "web", false)
	testutil.Eventually(t, 5*time.Second, func() bool { return c.w.count(c.w.starts, "n1", "web") == 2 }, "no restart")
	c.waitUp("web", "n1")
	if len(c.node("n1").bus.find(EventInstanceStart, ReasonRestart)) != 1 {
		t.Error("no instance_start restart on n1")
	}
	if len(c.node("n1").bus.find(EventInstanceStatusChange, ReasonCheck)) == 0 {
		t.Error("no instance_status_change")
	}
}

func TestFlexScalesUpAndDown(t *testing.T) {
	c, s := flexCluster(t, three, clusterOpts{}, "api", 2)
	s.FlexTarget = 3
	c.addService(s)
	c.waitUp("api", "n1", "n2", "n3")
	testutil.Eventually(t, 5*time.Second, func() bool {
		sum := c.summary("n1", "api")
		return sum.Avail == AvailUp && len(sum.Up) == 3 && sum.Done
	}, "summary never shows 3 up")
	s.FlexTarget = 1
	c.addService(s)
	c.waitUp("api", "n1")
	if len(c.node("n3").bus.find(EventInstanceStop, ReasonFlexThreshold)) != 1 {
		t.Errorf("no flex_threshold stop on n3: %v", c.node("n3").bus.find(EventInstanceStop, ""))
	}
	if len(c.node("n1").bus.find(EventServiceConfigChange, ReasonConfig)) != 2 {
		t.Error("want two service_config_change events")
	}
	// A node going away: another takes its share.
	s.FlexTarget = 2
	c.addService(s)
	c.waitUp("api", "n1", "n2")
	c.kill("n1")
	c.waitUp("api", "n2", "n3")
}

func TestFreezeBlocksOrchestration(t *testing.T) {
	c := failoverCluster(t, three, clusterOpts{}, "web")
	if err := c.node("n2").orch.Order("web", "freeze"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, n := range three {
			if c.instance(n, n, "web").Frozen == 0 {
				return false
			}
		}
		return c.summary("n1", "web").Frozen == "frozen" && c.node("n2").orch.Done("web")
	}, "instances never frozen")
	if len(c.node("n2").bus.find(EventGlobalExpectChange, ReasonCLI)) != 1 || len(c.node("n1").bus.find(EventInstanceFreeze, ReasonPeer)) != 1 {
		t.Error("missing global_expect_change cli on n2 or instance_freeze peer on n1")
	}
	// The service dies: nobody restarts it while frozen.
	c.w.setUp("n1", "web", false)
	testutil.Eventually(t, 5*time.Second, func() bool { return c.instance("n2", "n1", "web").Avail == AvailDown }, "down never seen")
	c.waitChecks(5)
	if got := c.w.upNodes("web"); len(got) != 0 {
		t.Fatalf("frozen service started: %v", got)
	}
	if err := c.node("n3").orch.Order("web", "thaw"); err != nil {
		t.Fatal(err)
	}
	c.waitUp("web", "n1")
	if len(c.node("n1").bus.find(EventInstanceStart, ReasonRestart)) != 1 {
		t.Error("thaw did not restart on n1")
	}

	// A frozen node is left alone and not chosen; the service stays where
	// it runs.
	_, _, _ = c.node("n1").store.UpdateLocal("cli", func(d *monitor.NodeData) { d.Frozen = time.Now().Unix() })
	c.w.setUp("n1", "web", false)
	// n1 frozen and its instance down: n2 is the leader now.
	c.waitUp("web", "n2")
	if n := c.w.count(c.w.starts, "n1", "web"); n != 2 {
		t.Errorf("frozen n1 started web: %d starts", n)
	}
}

func TestStopEverywhereAndStartAgain(t *testing.T) {
	c, _ := flexCluster(t, three, clusterOpts{}, "api", 2)
	if err := c.node("n3").orch.Order("api", "stop"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return len(c.w.upNodes("api")) == 0 && c.node("n3").orch.Done("api") && c.summary("n1", "api").Done
	}, "never stopped everywhere")
	c.waitChecks(5)
	if got := c.w.upNodes("api"); len(got) != 0 {
		t.Fatalf("restarted after stop: %v", got)
	}
	if sum := c.summary("n2", "api"); sum.Avail != AvailDown || sum.GlobalExpect != ExpectStopped {
		t.Errorf("summary: %+v", sum)
	}
	if len(c.node("n1").bus.find(EventInstanceStop, ReasonTarget)) != 1 {
		t.Error("no instance_stop target on n1")
	}
	if err := c.node("n1").orch.Order("api", "start"); err != nil {
		t.Fatal(err)
	}
	c.waitUp("api", "n1", "n2")
	testutil.Eventually(t, 5*time.Second, func() bool { return c.node("n3").orch.Done("api") }, "start never done")
}

func TestQuorumMinorityStops(t *testing.T) {
	c := newCluster(t, three, clusterOpts{quorum: true})
	c.addService(testService("db", config.Failover, "n3", "n1", "n2"))
	c.waitUp("db", "n3")
	c.partition([]string{"n3"}, []string{"n1", "n2"})
	// n3 alone stops its instance; the majority fails it over to n1.
	testutil.Eventually(t, 5*time.Second, func() bool {
		return len(c.node("n3").bus.find(EventQuorumLost, ReasonMembership)) == 1
	}, "n3 never lost quorum")
	c.waitUp("db", "n1")
	if len(c.node("n3").bus.find(EventInstanceStop, ReasonSplit)) != 1 {
		t.Error("no split stop on n3")
	}
	for _, n := range []string{"n1", "n2"} {
		if len(c.node(n).bus.find(EventQuorumLost, "")) != 0 {
			t.Errorf("%s lost quorum", n)
		}
	}
	if c.node("n3").orch.Stats().Quorum {
		t.Error("n3 stats say quorum")
	}
	c.heal([]string{"n3"}, []string{"n1", "n2"})
	testutil.Eventually(t, 5*time.Second, func() bool {
		return len(c.node("n3").bus.find(EventQuorumRegained, "")) == 1
	}, "n3 never regained quorum")
	c.waitChecks(5)
	c.waitUp("db", "n1")
}

func TestFailedStartMovesToNext(t *testing.T) {
	c := newCluster(t, three, clusterOpts{})
	c.w.setFailStart("n1", true)
	c.addService(testService("web", config.Failover, three...))
	testutil.Eventually(t, 10*time.Second, func() bool { return c.w.upNodes("web")["n2"] }, "not up on n2: %s", lazy(c.dump))
	if len(c.node("n1").bus.find(EventInstanceStartFailed, "")) != 1 {
		t.Error("no instance_start_failed on n1")
	}
	if st := c.instance("n3", "n1", "web").Monitor.Status; st != StatusStartFailed {
		t.Errorf("n1 status seen on n3: %q", st)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		sum := c.summary("n3", "web")
		return sum.Avail == AvailUp && sum.Overall == AvailWarn
	}, "overall with a failed instance: %+v", c.summary("n3", "web"))
	// An order clears the failure.
	c.w.setFailStart("n1", false)
	if err := c.node("n1").orch.Order("web", "start"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return c.instance("n3", "n1", "web").Monitor.Status == StatusIdle
	}, "failure not cleared")
	c.waitChecks(3)
	c.waitUp("web", "n2")
}

func TestInvalidServiceKeepsPrevious(t *testing.T) {
	c := newCluster(t, []string{"n1"}, clusterOpts{})
	c.addService(testService("web", config.Failover))
	c.waitUp("web", "n1")
	o := c.node("n1").orch
	o.InvalidService("/etc/agent/svc/web.conf", errors.New("web.conf:3: bad"))
	bad := testService("web", config.Failover)
	bad.Topology = "sideways"
	if err := o.SetService(&bad); err == nil {
		t.Fatal("SetService took an invalid service")
	}
	evs := c.node("n1").bus.find(EventServiceConfigChange, ReasonInvalid)
	if len(evs) != 1 || evs[0]["svcname"] != "web" {
		t.Fatalf("invalid events: %v", evs)
	}
	c.waitChecks(3)
	c.waitUp("web", "n1")
	if got := o.Services(); len(got) != 1 || got[0] != "web" {
		t.Fatalf("services: %v", got)
	}
}

func TestRemoveServiceStopsAndDrops(t *testing.T) {
	c := failoverCluster(t, []string{"n1", "n2"}, clusterOpts{}, "web")
	c.node("n1").orch.RemoveService("web")
	// n1 stops it and drops its instance: n2 takes over.
	c.waitUp("web", "n2")
	testutil.Eventually(t, 5*time.Second, func() bool {
		d, ok := c.node("n2").store.Node("n1")
		_, has := d.Services["web"]
		return ok && !has
	}, "n1 instance not dropped")
	if len(c.node("n1").bus.find(EventServiceRemove, ReasonConfig)) != 1 {
		t.Error("no service_remove")
	}
	c.node("n2").orch.RemoveService("web")
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, ok := c.node("n1").store.Document(), true
		return ok && c.summary("n1", "web").Avail == ""
	}, "summary not removed")
}

func TestOrderErrors(t *testing.T) {
	c := newCluster(t, []string{"n1"}, clusterOpts{})
	o := c.node("n1").orch
	if err := o.Order("nope", "start"); !errors.Is(err, ErrNoService) {
		t.Errorf("unknown service: %v", err)
	}
	c.addService(testService("web", config.Failover))
	if err := o.Order("web", "explode"); !errors.Is(err, ErrBadAction) {
		t.Errorf("bad action: %v", err)
	}
	noStart := testService("manual", config.Failover)
	noStart.Orchestrate = config.OrchestrateNo
	noStart.Start, noStart.Stop = nil, nil
	if err := o.SetService(&noStart); err != nil {
		t.Fatal(err)
	}
	if err := o.Order("manual", "start"); err == nil {
		t.Error("start without a start command accepted")
	}
	if err := o.SetService(nil); err == nil {
		t.Error("nil service accepted")
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without a store")
	}
	if _, err := New(Config{Store: c.node("n1").store, SplitAction: "explode"}); err == nil {
		t.Error("bad split action accepted")
	}
}

func TestOrchestrateNoActsOnOrdersOnly(t *testing.T) {
	c := newCluster(t, []string{"n1", "n2"}, clusterOpts{})
	s := testService("batch", config.Failover, "n1", "n2")
	s.Orchestrate = config.OrchestrateNo
	c.addService(s)
	c.waitChecks(5)
	if got := c.w.upNodes("batch"); len(got) != 0 {
		t.Fatalf("orchestrate=no started by itself: %v", got)
	}
	if err := c.node("n2").orch.Order("batch", "start"); err != nil {
		t.Fatal(err)
	}
	c.waitUp("batch", "n1")
	testutil.Eventually(t, 5*time.Second, func() bool { return c.node("n2").orch.Done("batch") }, "not done")
	// Once up after the order, a failure is not repaired.
	c.w.setUp("n1", "batch", false)
	testutil.Eventually(t, 5*time.Second, func() bool { return c.instance("n2", "n1", "batch").Avail == AvailDown }, "down not seen")
	c.waitChecks(5)
	if got := c.w.upNodes("batch"); len(got) != 0 {
		t.Fatalf("orchestrate=no restarted: %v", got)
	}
}

func TestQuorumSplitFreezeByMembership(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	c, _ := flexCluster(t, names, clusterOpts{quorum: true, split: config.SplitFreeze, membershipQuorum: true}, "api", 5)
	// 2 against 3: the pair freezes, keeps its instances, starts nothing.
	c.partition([]string{"n4", "n5"}, []string{"n1", "n2", "n3"})
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, n := range []string{"n4", "n5"} {
			d, _ := c.node(n).store.Node(n)
			if d.Frozen == 0 || len(c.node(n).bus.find(EventQuorumLost, "")) != 1 {
				return false
			}
		}
		return true
	}, "minority not frozen")
	c.waitChecks(3)
	if got := c.w.upNodes("api"); len(got) != 5 {
		t.Fatalf("split freeze stopped instances: %v", got)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if len(c.node(n).bus.find(EventQuorumLost, "")) != 0 {
			t.Errorf("%s lost quorum", n)
		}
	}
}

// TestOrderOverMaxDataRefused: an order whose change would take this
// node's data over max_data is refused with an error, and nothing changes.
func TestOrderOverMaxDataRefused(t *testing.T) {
	size := func(max int) (int, *monitor.Store, *Orchestrator) {
		st, err := monitor.New(monitor.Config{Name: "n1", ClusterName: "test", Publish: (&bus{}).publish, Logger: quietLogger(), MaxData: max})
		if err != nil {
			t.Fatal(err)
		}
		o, err := New(Config{Store: st, Runner: &fakeRunner{w: newWorld(), node: "n1"}, Logger: quietLogger(), Tick: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		s := testService("web", config.Failover)
		if err := o.SetService(&s); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = o.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		testutil.Eventually(t, 5*time.Second, o.Checked, "first check never done")
		_, raw, _ := st.Local()
		return len(raw), st, o
	}
	n, _, _ := size(0)
	_, st, o := size(n + 20)
	_, before, _ := st.Local()
	err := o.Order("web", "freeze")
	if !errors.Is(err, monitor.ErrDataTooLarge) {
		t.Fatalf("order over max_data: %v", err)
	}
	if _, after, _ := st.Local(); string(after) != string(before) {
		t.Errorf("the refused order changed the data:\n%s\n%s", before, after)
	}
}

// TestBackstopRidesTheBell: with nothing due, the backstop evaluation runs
// on the bell's rings (the packets the heartbeat handles anyway) inside
// the last quarter of Tick, and on its own deadline when nothing rings.
func TestBackstopRidesTheBell(t *testing.T) {
	st, err := monitor.New(monitor.Config{Name: "n1", ClusterName: "test", Publish: (&bus{}).publish, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	bell := ride.New()
	o, err := New(Config{Store: st, Runner: &fakeRunner{w: newWorld(), node: "n1"}, Logger: quietLogger(),
		Tick: 100 * time.Millisecond, Bell: bell})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = o.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// No rings: the backstop keeps its deadline.
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, deadlines := bell.Stats()
		return deadlines >= 3
	}, "no backstop evaluation on its deadline")
	rides0, deadlines0 := bell.Stats()
	if rides0 != 0 {
		t.Fatalf("%d rides with no ring", rides0)
	}

	// Rings every few ms: evaluations ride them.
	stop := sync.OnceFunc(testutil.Repeat(1000, func() { bell.Ring(); time.Sleep(2 * time.Millisecond) }))
	defer stop()
	testutil.Eventually(t, 30*time.Second, func() bool {
		rides, _ := bell.Stats()
		return rides >= 5
	}, "no backstop evaluation rode the bell")
	stop()
	rides, deadlines := bell.Stats()
	if deadlines-deadlines0 >= rides-rides0 {
		t.Fatalf("with rings every 2 ms: %d rides, %d deadlines; want mostly rides", rides-rides0, deadlines-deadlines0)
	}
}
