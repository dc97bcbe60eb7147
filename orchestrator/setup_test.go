package orchestrator

import (
	"testing"

	"agent/config"
)

// The set-ups most tests start from: a cluster already running one
// service where it belongs.

// failoverCluster starts a cluster of names with the failover service svc
// placed on names in that order, and waits until it runs on the first.
func failoverCluster(t testing.TB, names []string, o clusterOpts, svc string) *cluster {
	t.Helper()
	c := newCluster(t, names, o)
	c.addService(testService(svc, config.Failover, names...))
	c.waitUp(svc, names[0])
	return c
}

// flexCluster starts a cluster of names with the flex service svc of
// flex_target target, and waits until it runs on the first target nodes.
// It returns the service for the test to change and declare again.
func flexCluster(t testing.TB, names []string, o clusterOpts, svc string, target int) (*cluster, config.Service) {
	t.Helper()
	c := newCluster(t, names, o)
	s := testService(svc, config.Flex)
	s.FlexTarget = target
	c.addService(s)
	c.waitUp(svc, names[:target]...)
	return c, s
}

// leftWithWeb starts three nodes with the failover service web on n1,
// waits until every node sees it there, then stops n1's agent gracefully
// (web keeps running).
func leftWithWeb(t testing.TB) *cluster {
	t.Helper()
	c := newCluster(t, three, clusterOpts{})
	c.addService(testService("web", config.Failover, three...))
	c.waitSeenUp("web", "n1")
	c.leave("n1")
	return c
}

// cutLinks cuts the links between the two groups, leaving each side's
// membership view as it is.
func (c *cluster) cutLinks(a, b []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			c.cut[[2]string{x, y}] = true
		}
	}
}

// noViolations fails the test if the world saw two failover instances up
// at once or a flex count below its target.
func (c *cluster) noViolations() {
	c.t.Helper()
	if v := c.w.violated(); len(v) > 0 {
		c.t.Fatalf("violations: %v", v)
	}
}
