package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// goBench names the benchmarks of another package that fill a row of the
// table, and what the row says while they do not exist.
type goBench struct {
	what    string // the quantity, for the row
	pkg     string // directory under the module root
	pattern string // -bench pattern
	needs   string // what is missing when there is no benchmark
}

var goBenches = []goBench{
	{"hooks latency", "hooks", ".", "hook benchmarks in hooks/"},
	{"failover time", "orchestrator", ".", "failover benchmarks in orchestrator/"},
	{"stream fan-out", "stream", "Fanout", "a fan-out benchmark in stream/"},
}

// goBenchRows runs each package's benchmarks with go test and adds one row
// per benchmark result line, or a "not measured" row.
func (b *bench) goBenchRows() {
	benchtime := "1s"
	if b.quick {
		benchtime = "200ms"
	}
	for _, g := range goBenches {
		if !hasBenchmarks(g.pkg) {
			b.add(g.what, "not measured: needs "+g.needs, "", nil)
			continue
		}
		b.logf("go test -bench %s ./%s/", g.pattern, g.pkg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		out, err := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", g.pattern,
			"-benchtime", benchtime, "./"+g.pkg+"/").CombinedOutput()
		cancel()
		n := 0
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
				continue
			}
			n++
			// name, iterations, then value-unit pairs.
			b.add(fmt.Sprintf("%s: %s/%s", g.what, g.pkg, f[0]), strings.Join(f[2:], " "), "", nil)
		}
		if err != nil || n == 0 {
			last := strings.TrimSpace(string(out))
			if i := strings.LastIndexByte(last, '\n'); i >= 0 {
				last = last[i+1:]
			}
			b.add(g.what, fmt.Sprintf("not measured: go test -bench ./%s/ failed: %v %s", g.pkg, err, last), "", nil)
		}
	}
}

// hasBenchmarks says whether dir holds a Benchmark function.
func hasBenchmarks(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), "\nfunc Benchmark") {
			return true
		}
	}
	return false
}
