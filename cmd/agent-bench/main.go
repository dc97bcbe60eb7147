// Command agent-bench measures the agent against its performance targets
// and prints one markdown table: what was measured, the result, the target
// and whether it is met.
//
// Propagation, bytes per change and resyncs run in-process: a monitor
// store and a heartbeat per node on 127.0.0.1 with memberlist's real
// UDP/TCP transport and the `local` profile's timings. The membership rows
// (failure detection, two of five killed at once, repair of a lost last
// delta) run in-process too, with the default profile (--profile). The
// `wait` latency runs in-process agents and the real `agent wait` binary;
// idle RSS and CPU are those of real `agent daemon run` processes, and so
// is the throttle row (one agent held to a fifth of a core by a cgroup
// CPU quota; root only). `--only kills` SIGKILLs real agents (at the
// --detect-nodes sizes, and two of five) and times node_down on every
// survivor's event stream. Rows for other packages come from their `go test
// -bench` benchmarks when they exist.
//
// Run it from the module root:
//
//	go run ./cmd/agent-bench
//	go run ./cmd/agent-bench --quick --nodes 3,5
//	go run ./cmd/agent-bench --only membership,throttle
//	go run ./cmd/agent-bench --only kills --detect-nodes 5,30 --trials 30
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// row is one line of the table.
type row struct {
	metric, result, target, verdict string
}

// bench holds the flags and the rows gathered so far.
type bench struct {
	quick   bool
	nodes   []int
	idle    time.Duration
	agent   string
	only    map[string]bool // sections to run; empty: all
	fanout  []int           // subscriber counts of the fan-out rows
	scales  map[int]float64 // --scale: time scale by cluster size (0: every size above 300)
	grace   time.Duration   // --digest-grace: the simulated heartbeats' DigestGrace (0: default)
	bigFan  int             // subscribers of the fan-out row through a whole agent's listener
	cpuprof string          // CPU profile of this process (the child's gets ".child")
	// profile is the heartbeat profile of the membership rows and of the
	// idle agents; tune overrides memberlist's timings (--memberlist).
	profile     string
	tune        func(*memberlist.Config)
	detectNodes []int
	trials      int
	throttle    time.Duration
	rows        []row
	verbose     io.Writer
}

func main() {
	exit := 0
	defer func() { os.Exit(exit) }() // after the profile is written
	b := &bench{verbose: os.Stderr}
	var nodes, only, child, fanout, tune, detect, scale string
	flag.BoolVar(&b.quick, "quick", false, "fewer samples and shorter idle measurement")
	flag.StringVar(&nodes, "nodes", "3,5,10,30", "cluster sizes, comma separated: propagation (up to 250) and the simulation (--only scale; default 100,300,1000)")
	flag.StringVar(&scale, "scale", "", "time scale k of the simulation: K for every size above 300 nodes, or N=K,... per size (default: 1 up to 300 nodes, N/100 above)")
	flag.DurationVar(&b.grace, "digest-grace", 0, "experiments: the simulated heartbeats' digest grace, in real time (default: the heartbeat's, 100ms)")
	flag.DurationVar(&b.idle, "idle", 0, "how long to measure idle CPU (default 20s, 5s with --quick)")
	flag.StringVar(&b.agent, "agent", "", "agent binary to use (default: go build ./cmd/agent)")
	flag.StringVar(&only, "only", "", "run only these sections, comma separated: cluster, membership, throttle, wait, idle, fanout, history, gobench, scale, procs, kills (scale, procs and kills run only when named)")
	flag.StringVar(&fanout, "fanout", "1,100,1000", "subscriber counts of the stream fan-out rows (2000 records/s, each in batch=1 and default mode), comma separated")
	flag.IntVar(&b.bigFan, "fanout-listener", 10000, "subscribers of the fan-out row through a whole agent's TCP listener (100 records/s); 0: none")
	flag.StringVar(&b.cpuprof, "cpuprofile", "", "write a CPU profile of the benchmark to this file (the fan-out subscribers' to FILE.child)")
	flag.StringVar(&b.profile, "profile", "lan", "heartbeat profile of the membership rows and the idle agents: lan, wan or local")
	flag.StringVar(&tune, "memberlist", "", "experiments: override memberlist timings of the membership rows, e.g. probe_interval=500ms,suspicion_mult=2")
	flag.StringVar(&detect, "detect-nodes", "5,30", "cluster sizes for failure detection and delta repair, comma separated")
	flag.IntVar(&b.trials, "trials", 10, "kills (and lost deltas) per membership row")
	flag.DurationVar(&b.throttle, "throttle", 0, "how long the throttled agent runs at a fifth of a core (default 60s, 15s with --quick)")
	flag.StringVar(&child, fanoutChildFlag, "", "internal: run the fan-out subscribers (JSON arguments)")
	flag.Parse()
	if child != "" {
		fanoutChild(child, b.cpuprof)
		return
	}
	b.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case "cluster", "wait", "idle", "fanout", "history", "gobench", "membership", "throttle", "scale", "procs", "kills":
			b.only[s] = true
		default:
			fmt.Fprintf(os.Stderr, "agent-bench: --only %q: want cluster, membership, throttle, wait, idle, fanout, history, gobench, scale, procs or kills\n", s)
			os.Exit(2)
		}
	}
	nodesSet := false
	flag.Visit(func(f *flag.Flag) { nodesSet = nodesSet || f.Name == "nodes" })
	if !nodesSet && (b.only["scale"] || b.only["procs"]) {
		nodes = "100,300,1000"
		if !b.only["scale"] {
			nodes = "100"
		}
	}
	b.nodes = intList("--nodes", nodes, "sizes", 2, 5000)
	b.fanout = intList("--fanout", fanout, "subscriber counts", 1, 10000)
	if b.bigFan < 0 || b.bigFan > 50000 {
		fmt.Fprintf(os.Stderr, "agent-bench: --fanout-listener %d: want 0 (none) to 50000\n", b.bigFan)
		os.Exit(2)
	}
	b.detectNodes = intList("--detect-nodes", detect, "sizes", 3, 250)
	var err error
	if b.scales, err = parseScales(scale); err != nil {
		fmt.Fprintln(os.Stderr, "agent-bench: --scale", err)
		os.Exit(2)
	}
	if b.tune, err = parseTune(tune); err != nil {
		fmt.Fprintln(os.Stderr, "agent-bench: --memberlist:", err)
		os.Exit(2)
	}
	if b.throttle == 0 {
		b.throttle = time.Minute
		if b.quick {
			b.throttle = 15 * time.Second
		}
	}
	if b.cpuprof != "" {
		f, err := os.Create(b.cpuprof)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "agent-bench: --cpuprofile:", err)
			os.Exit(2)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if b.idle == 0 {
		b.idle = 20 * time.Second
		if b.quick {
			b.idle = 5 * time.Second
		}
	}
	if err := b.run(); err != nil {
		fmt.Fprintln(os.Stderr, "agent-bench:", err)
		exit = 1
	}
}

// intList parses a comma-separated flag value of numbers from lo to hi,
// exiting with status 2 and the reason when it cannot.
func intList(flagName, value, what string, lo, hi int) []int {
	var out []int
	for _, s := range strings.Split(value, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < lo || n > hi {
			fmt.Fprintf(os.Stderr, "agent-bench: %s %q: want %s from %d to %d\n", flagName, value, what, lo, hi)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.verbose, "agent-bench: "+format+"\n", args...)
}

func (b *bench) add(metric, result, target string, ok *bool) {
	verdict := ""
	if ok != nil {
		verdict = "no"
		if *ok {
			verdict = "yes"
		}
	}
	b.rows = append(b.rows, row{metric, result, target, verdict})
	// As it comes: a long run stopped half-way keeps what it measured.
	b.logf("row: %s | %s | %s | %s", metric, result, target, verdict)
}

// runs says whether a section is to run.
func (b *bench) runs(section string) bool { return len(b.only) == 0 || b.only[section] }

func ptr(v bool) *bool { return &v }

func (b *bench) run() error {
	dir, err := os.MkdirTemp("", "agent-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if b.agent == "" && (b.runs("throttle") || b.runs("wait") || b.runs("idle") || b.only["procs"] || b.only["kills"]) {
		b.agent = filepath.Join(dir, "agent")
		b.logf("building the agent")
		cmd := exec.Command("go", "build", "-o", b.agent, "agent/cmd/agent")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build agent/cmd/agent (run from the module root, or pass --agent): %w", err)
		}
	}

	if b.runs("cluster") {
		for _, n := range b.nodes {
			if n > 250 {
				b.add(fmt.Sprintf("propagation A→B, %d nodes", n), "not measured: the real-UDP cluster rows stop at 250 nodes (see --only scale)", "", nil)
				continue
			}
			b.clusterRows(n)
		}
	}
	if b.runs("membership") {
		b.membershipRows()
	}
	if b.runs("throttle") {
		b.throttleRow(dir)
	}
	if b.runs("wait") {
		b.waitRow(dir)
	}
	if b.runs("idle") {
		b.idleRow(dir)
	}
	if b.runs("fanout") {
		d := 10 * time.Second
		if b.quick {
			d = 3 * time.Second
		}
		for _, subs := range b.fanout {
			for _, batch := range []bool{true, false} {
				c := fanoutCase{subs: subs, rate: 2000, batch: batch, seconds: d}
				b.logf("fan-out: %d subscribers, %s", subs, c.mode())
				b.fanoutRow(c)
			}
		}
		if b.bigFan > 0 {
			c := fanoutCase{subs: b.bigFan, rate: 100, listener: true, seconds: d}
			b.logf("fan-out: %d subscribers through an agent's listener, %s", c.subs, c.mode())
			b.fanoutRow(c)
			c.listener, c.floor = false, true
			b.logf("fan-out: %d subscribers, the machine's floor (no agent)", c.subs)
			b.fanoutRow(c)
		}
	}
	if b.runs("history") {
		b.historyRows(dir)
	}
	if b.runs("gobench") {
		b.goBenchRows()
	}
	// The simulation and the real-process cluster take minutes and most of
	// the machine: only on demand.
	if b.only["scale"] {
		for _, n := range b.nodes {
			b.scaleRows(n)
		}
	}
	if b.only["procs"] {
		for _, n := range b.nodes {
			b.procRows(dir, n)
		}
	}
	if b.only["kills"] {
		for _, n := range b.detectNodes {
			b.killRows(dir, n, 1)
		}
		b.killRows(dir, 5, 2)
	}

	printTable(os.Stdout, b.rows)
	return nil
}

// clusterRows measures propagation, bytes, resyncs and failure detection
// in an in-process cluster of n nodes.
func (b *bench) clusterRows(n int) {
	samples := 200
	if n >= 30 {
		samples = 90
	}
	if b.quick {
		samples = 30
	}
	b.logf("%d nodes: starting", n)
	c, err := startHBCluster(n, nodeOpts{})
	if err != nil {
		b.add(fmt.Sprintf("propagation, %d nodes", n), "not measured: "+err.Error(), "", nil)
		return
	}
	defer c.close()
	// Let the join's full exchanges and push-pulls settle before counting.
	time.Sleep(time.Second)
	b.logf("%d nodes: %d changes", n, samples)
	p := c.measurePropagation(samples)
	p50, p99 := quantile(p.lat, 0.50), quantile(p.lat, 0.99)
	target, ok := "", (*bool)(nil)
	switch {
	case n <= 5:
		target, ok = "p99 ≤ 25 ms (set at 5 nodes)", ptr(p99 <= 25*time.Millisecond)
	case n >= 30:
		target, ok = "p99 ≤ 250 ms (set at 30 nodes)", ptr(p99 <= 250*time.Millisecond)
	}
	res := fmt.Sprintf("p50 %s, p99 %s (%d samples)", ms(p50), ms(p99), len(p.lat))
	if p.lost > 0 {
		res += fmt.Sprintf(", %d not applied within 5 s", p.lost)
		ok = ptr(false)
	}
	b.add(fmt.Sprintf("propagation A→B, %d nodes", n), res, target, ok)
	b.add(fmt.Sprintf("bytes sent per change, %d nodes", n),
		fmt.Sprintf("%.0f B (%.0f B per receiving peer)", p.bytesPerChange, p.bytesPerChange/float64(n-1)), "", nil)
	b.add(fmt.Sprintf("full resyncs in steady state, %d nodes", n),
		fmt.Sprintf("%d resyncs, %d full requests over %d changes", p.resyncs, p.fullRequests, p.changes), "0",
		ptr(p.resyncs == 0 && p.fullRequests == 0))
	d, err := c.measureDetection()
	if err != nil {
		b.add(fmt.Sprintf("failure detection, %d nodes", n), "not measured: "+err.Error(), "", nil)
		return
	}
	b.add(fmt.Sprintf("failure detection (kill without leave → dead everywhere), %d nodes", n), ms(d), "", nil)
}

// waitRow measures remote change → `agent wait` exits.
func (b *bench) waitRow(dir string) {
	samples := 40
	if b.quick {
		samples = 10
	}
	b.logf("wait latency: %d samples", samples)
	ia, err := startAgents(filepath.Join(dir, "wait"), 3)
	if err != nil {
		b.add("remote change → `agent wait` exits", "not measured: "+err.Error(), "p99 ≤ 50 ms", nil)
		return
	}
	defer ia.close()
	lat, err := measureWait(b.agent, ia, samples)
	if err != nil {
		b.add("remote change → `agent wait` exits", "not measured: "+err.Error(), "p99 ≤ 50 ms", nil)
		return
	}
	p99 := quantile(lat, 0.99)
	b.add("remote change → `agent wait` exits, 3 nodes", fmt.Sprintf("p50 %s, p99 %s (%d samples)", ms(quantile(lat, 0.5)), ms(p99), len(lat)),
		"p99 ≤ 50 ms", ptr(p99 <= 50*time.Millisecond))
}

// idleRow measures the RSS and CPU of real idle agents.
func (b *bench) idleRow(dir string) {
	b.logf("idle usage: 5 real agents, %s profile, %v", b.profile, b.idle)
	pc, _, err := startProcs(b.agent, filepath.Join(dir, "idle"), 5, b.profile)
	if err != nil {
		b.add("idle agent, 5-node cluster", "not measured: "+err.Error(), "", nil)
		return
	}
	defer pc.stop()
	// Past the start-up work (joins, the first push/pulls, the rejoin
	// grace, the first stats and checks, the garbage collections after
	// them): an idle agent is one that has settled.
	time.Sleep(10 * time.Second)
	rss, cpus, switches, err := pc.idleUsage(b.idle)
	if err != nil {
		b.add("idle agent, 5-node cluster", "not measured: "+err.Error(), "", nil)
		return
	}
	b.add("idle RSS of a real agent, 5-node cluster (max of 5)", fmt.Sprintf("%.1f MB", float64(rss)/1024), "≤ 40 MB", ptr(rss <= 40*1024))
	each := make([]string, len(cpus))
	for i, c := range cpus {
		each[i] = fmt.Sprintf("%.2f", c)
	}
	cpu := cpus[len(cpus)-1]
	b.add(fmt.Sprintf("idle CPU of a real agent, 5-node cluster, %s profile (max of 5, over %v)", b.profile, b.idle),
		fmt.Sprintf("%.2f%% of a core (the five: %s); %.0f to %.0f context switches/s", cpu, strings.Join(each, ", "), switches[0], switches[len(switches)-1]),
		"≤ 0.5%", ptr(cpu <= 0.5))
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| metric | result | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", esc(r.metric), esc(r.result), esc(r.target), r.verdict)
	}
}

func esc(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }
