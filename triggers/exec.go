package triggers

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"agent/config"
	"agent/proc"
)

// Environment variables a command gets besides the clean environment of
// package proc (PATH, HOME, LANG, TZ).
const (
	EnvTrigger  = "AGENT_TRIGGER"
	EnvOutcome  = "AGENT_TRIGGER_OUTCOME"
	EnvKey      = "AGENT_TRIGGER_KEY"
	EnvCount    = "AGENT_TRIGGER_COUNT"
	EnvReason   = "AGENT_TRIGGER_REASON"
	EnvDropped  = "AGENT_TRIGGER_DROPPED"
	EnvLost     = "AGENT_TRIGGER_LOST"
	EnvNodename = "AGENT_NODENAME"
	EnvAttempt  = "AGENT_TRIGGER_ATTEMPT"
)

// executor runs one trigger's commands, one at a time, in the order their
// streams closed.
type executor struct {
	r       *Runner
	name    string
	results chan<- result
	stats   *triggerStats

	mu    sync.Mutex
	queue []*Action
	wake  chan struct{} // cap 1: the queue grew
}

func newExecutor(r *Runner, name string, results chan<- result) *executor {
	return &executor{r: r, name: name, results: results, stats: r.stats.get(name), wake: make(chan struct{}, 1)}
}

func (x *executor) enqueue(a *Action) {
	x.mu.Lock()
	x.queue = append(x.queue, a)
	x.mu.Unlock()
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

func (x *executor) next() *Action {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.queue) == 0 {
		return nil
	}
	a := x.queue[0]
	x.queue[0] = nil
	x.queue = x.queue[1:]
	return a
}

// run is the executor's goroutine; it ends when ctx does. An action it has
// not finished is not reported done: it runs again at the next start.
func (x *executor) run(ctx context.Context) {
	for {
		a := x.next()
		if a == nil {
			select {
			case <-ctx.Done():
				return
			case <-x.wake:
				continue
			}
		}
		done := x.execute(ctx, a)
		// The loop waits for every executor before it stops reading
		// results: this send cannot block for good.
		x.results <- result{id: a.ID, done: done}
		if !done {
			return
		}
	}
}

// execute runs a's command until it succeeds or its retries are spent
// (then trigger_failed is published). It returns false when ctx ended
// first.
func (x *executor) execute(ctx context.Context, a *Action) bool {
	r := x.r
	log := r.log.With(keyTrigger, a.Trigger, keyOutcome, a.Outcome, keyKey, a.Key)
	stdin := stdinOf(a.Events)
	var lastErr string
	attempts := 0
	for attempt := 0; attempt <= a.Retries; attempt++ {
		if attempt > 0 {
			wait := backoff(r.cfg.RetryBase, r.cfg.RetryMax, attempt)
			log.Warn("trigger command failed; running it again", keyAttempt, attempt+1, "in", wait, keyErr, lastErr)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				log.Warn("trigger command interrupted by shutdown: it runs again after a restart")
				return false
			case <-t.C:
			}
		}
		attempts++
		start := r.cfg.Now()
		res := x.runOnce(ctx, a, stdin, attempt+1)
		if res.Canceled {
			log.Warn("trigger command interrupted by shutdown: it runs again after a restart")
			return false
		}
		dur := r.cfg.Now().Sub(start)
		x.stats.addRun(dur, res.Failed())
		logRun(log, attempt+1, dur, res)
		if !res.Failed() {
			return true
		}
		lastErr = describe(res, a.Timeout)
	}
	x.stats.failed.Add(1)
	log.Error("trigger command failed, retries spent", "attempts", attempts, keyErr, lastErr)
	r.publish(failedEvent{ID: EventFailed, Trigger: a.Trigger, Key: a.Key, Outcome: a.Outcome, Error: truncate(lastErr, 200),
		Attempts: attempts, FirstSeq: a.FirstSeq, LastSeq: a.LastSeq})
	return true
}

// runOnce runs a's command once. The program passes the permission rules at
// each run: the config watcher checked it when it read node.conf, but it
// may have been loosened or replaced since; a refused one does not start.
func (x *executor) runOnce(ctx context.Context, a *Action, stdin []byte, attempt int) *proc.Result {
	if err := config.CheckProgram(a.Command[0]); err != nil {
		return &proc.Result{ExitCode: -1, Err: err}
	}
	return proc.Run(ctx, proc.Command{
		Argv:        a.Command,
		Env:         x.env(a, attempt),
		Stdin:       stdin,
		Timeout:     a.Timeout,
		KillGrace:   x.r.cfg.KillGrace,
		OutputLimit: x.r.cfg.OutputLimit,
	})
}

// env is the command's own variables.
func (x *executor) env(a *Action, attempt int) []string {
	env := []string{
		EnvTrigger + "=" + a.Trigger,
		EnvOutcome + "=" + a.Outcome,
		EnvReason + "=" + a.Reason,
		EnvKey + "=" + a.Key,
		EnvCount + "=" + strconv.Itoa(a.Count),
		EnvNodename + "=" + x.r.cfg.Nodename,
		EnvAttempt + "=" + strconv.Itoa(attempt),
	}
	if a.Dropped > 0 {
		env = append(env, EnvDropped+"="+strconv.Itoa(a.Dropped))
	}
	if a.Lost {
		env = append(env, EnvLost+"=1")
	}
	return env
}

// stdinOf is the stream's records, one per line, oldest first.
func stdinOf(evs [][]byte) []byte {
	n := 0
	for _, e := range evs {
		n += len(e) + 1
	}
	b := make([]byte, 0, n)
	for _, e := range evs {
		b = append(b, e...)
		b = append(b, '\n')
	}
	return b
}

// backoff is the pause before run number attempt+1: base, 2 base, 4
// base..., at most max.
func backoff(base, maxWait time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxWait; i++ {
		d *= 2
	}
	return min(d, maxWait)
}

// describe says in words why a run failed.
func describe(res *proc.Result, timeout time.Duration) string {
	switch {
	case !res.Started:
		return fmt.Sprintf("did not start: %v", res.Err)
	case res.TimedOut:
		return fmt.Sprintf("killed at its timeout (%s)", timeout)
	case res.Signal != "":
		return "killed by signal " + res.Signal
	case res.Err != nil:
		return res.Err.Error()
	}
	msg := fmt.Sprintf("exit status %d", res.ExitCode)
	if e := bytes.TrimSpace(res.Stderr.Data); len(e) > 0 {
		msg += ": " + string(e)
	}
	return msg
}

// logRun logs the outcome of one run with its output.
func logRun(log *slog.Logger, attempt int, dur time.Duration, res *proc.Result) {
	args := append([]any{keyAttempt, attempt, keyDuration, dur}, res.LogArgs()...)
	if res.Failed() {
		log.Warn("trigger command run failed", args...)
		return
	}
	log.Info("trigger command ran", args...)
}
