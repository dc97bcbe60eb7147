package agent

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"agent/monitor"
)

// statsLoop samples load and memory and updates the local data only on a
// meaningful change, so that noise never becomes a patch storm.
func (a *Agent) statsLoop(ctx context.Context) {
	if a.opts.StatsInterval < 0 {
		return
	}
	sample := func() {
		st, err := readHostStats("/proc/loadavg", "/proc/meminfo")
		if err != nil {
			a.log.Debug("host stats unavailable", "err", err)
			return
		}
		_, _, err = a.store.UpdateLocal("stats", func(d *monitor.NodeData) {
			if meaningful(d.Stats, st) {
				d.Stats = st
			}
		})
		if err != nil {
			a.log.Error("update host stats", "err", err)
		}
	}
	sample()
	// Stats are sampled up to a quarter of the interval early, on a
	// wake-up the agent has anyway.
	t := a.bell.NewTimer()
	defer t.Stop()
	t.Reset(a.opts.StatsInterval, a.opts.StatsInterval/4)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sample()
			t.Next(a.opts.StatsInterval, a.opts.StatsInterval/4)
		}
	}
}

// meaningful reports whether new stats differ enough from old to be worth
// a patch: 0.1 of 15-minute load, 2 points of available memory.
func meaningful(old, new monitor.Stats) bool {
	return math.Abs(old.Load15m-new.Load15m) >= 0.1-1e-9 || absInt(old.MemAvailPct-new.MemAvailPct) >= 2
}

func absInt(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

// readHostStats reads the 15-minute load average and the available memory
// percentage, rounded.
func readHostStats(loadavg, meminfo string) (monitor.Stats, error) {
	var st monitor.Stats
	data, err := os.ReadFile(loadavg)
	if err != nil {
		return st, err
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return st, fmt.Errorf("%s: unexpected content", loadavg)
	}
	load, err := strconv.ParseFloat(f[2], 64)
	if err != nil {
		return st, fmt.Errorf("%s: %w", loadavg, err)
	}
	st.Load15m = math.Round(load*10) / 10

	mf, err := os.Open(meminfo)
	if err != nil {
		return st, err
	}
	defer mf.Close()
	var total, avail float64
	sc := bufio.NewScanner(mf)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		}
	}
	if total > 0 {
		st.MemAvailPct = int(math.Round(avail * 100 / total))
	}
	return st, nil
}
