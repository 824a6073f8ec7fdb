package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/demo"
)

// event is one line of the execution log that the example's handlers
// append to: the start or the end of one execution of a task.
type event struct {
	demo.ExecEvent
	line   int   // position in the log: lines are appended, one write each, so this orders them
	offset int64 // byte offset of the line
}

// readLog returns the complete lines of the execution log.
func (c *cluster) readLog() []event {
	c.t.Helper()
	b, err := os.ReadFile(c.execLog)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		c.t.Fatalf("reading the execution log: %v", err)
	}
	var out []event
	var off int64
	for n := 0; ; n++ {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // a line being written
		}
		var e event
		if err := json.Unmarshal(b[:i], &e); err != nil {
			c.t.Fatalf("execution log line %d %q: %v", n+1, b[:i], err)
		}
		if (e.Ev != "start" && e.Ev != "end") || e.ID == "" || e.Attempt < 1 || e.Worker == "" {
			c.t.Fatalf("execution log line %d is malformed: %q", n+1, b[:i])
		}
		e.line, e.offset = n, off
		out = append(out, e)
		off += int64(i + 1)
		b = b[i+1:]
	}
	return out
}

// logSize returns the execution log's size: lines after this offset were
// written after the call.
func (c *cluster) logSize() int64 {
	fi, err := os.Stat(c.execLog)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// execution is one run of a handler: its start and, if it returned, its
// end.
type execution struct {
	start event
	end   *event
}

// executions groups the log by task, in log order.
func executions(evs []event) map[string][]*execution {
	out := map[string][]*execution{}
	open := map[string]*execution{} // id/attempt/worker -> open execution
	for _, e := range evs {
		k := fmt.Sprintf("%s/%d/%s", e.ID, e.Attempt, e.Worker)
		switch e.Ev {
		case "start":
			x := &execution{start: e}
			out[e.ID] = append(out[e.ID], x)
			open[k] = x
		case "end":
			if x := open[k]; x != nil && x.end == nil {
				e := e
				x.end = &e
				delete(open, k)
			}
		}
	}
	return out
}

// verifyOpts says what a case expects beyond the invariants that always
// hold.
type verifyOpts struct {
	// live are the workers that ran from the first submission to the end
	// of the work: each must have run a share of it.
	live []string
	// minShare is the least number of executions every live worker must
	// have; 0 means one.
	minShare int
	// noFaults: no execution may be lost, repeated or wasted: every
	// attempt the store counted ran exactly once, in order.
	noFaults bool
	// maxDuplicates bounds the re-executions the fault may cause.
	maxDuplicates int
	// maxWasted bounds the attempts the store counted with no run logged:
	// only a process that dies between its Start and its handler leaves
	// one (a kill, a crash), so it is 0 for every other fault.
	maxWasted int
}

// outcome is what verify found, for the case's row in the matrix.
type outcome struct {
	Tasks       int            // tasks checked
	Executions  int            // handler runs logged for them
	Duplicates  int            // runs that were neither the final one nor a failed attempt
	Wasted      int            // attempts the store counted that no handler run logged
	PerWorker   map[string]int // runs by worker
	Interrupted int            // runs with no end in the log (killed, stopped, handed back)

	tasks map[string]*scheduler.Task // as the store had them when checked
}

// verify checks the invariants of DESIGN.md for the tasks subs against the
// store and the execution log, then pauses and checks that nothing
// changed. It fails the test on the first broken invariant, naming it.
func (c *cluster) verify(subs []submitted, o verifyOpts) outcome {
	c.t.Helper()
	ctx := ctxFor(c.t, 60*time.Second)
	out := c.check(ctx, subs, o)

	// Terminal states never change: wait for everything that could still
	// happen (sweeps republishing, heartbeats, redeliveries) and read again.
	pause := 3*c.sweep + 3*c.heartbeat + time.Second
	size := c.logSize()
	time.Sleep(pause)
	tasks := c.getAll(ctx, subs)
	for id, before := range out.tasks {
		after := tasks[id]
		if after.State != before.State || after.Attempt != before.Attempt || !after.FinishedAt.Equal(before.FinishedAt) ||
			after.LastError != before.LastError || after.WorkerID != before.WorkerID {
			c.t.Fatalf("task %s changed after reaching %s: %s attempt %d by %s (was attempt %d by %s)",
				id, before.State, after.State, after.Attempt, after.WorkerID, before.Attempt, before.WorkerID)
		}
	}
	for _, e := range c.readLog() {
		if e.offset < size || e.Ev != "start" {
			continue
		}
		if t := out.tasks[e.ID]; t != nil && e.Attempt >= t.Attempt {
			c.t.Fatalf("task %s ran attempt %d on %s after it was %s at attempt %d", e.ID, e.Attempt, e.Worker, t.State, t.Attempt)
		}
	}
	return out
}

// getAll reads every task of subs from the store.
func (c *cluster) getAll(ctx context.Context, subs []submitted) map[string]*scheduler.Task {
	c.t.Helper()
	out := make(map[string]*scheduler.Task, len(subs))
	for _, s := range subs {
		t, err := c.sched.Status(ctx, s.id)
		if err != nil {
			c.t.Fatalf("lost: task %s (%s) is not in the store: %v", s.id, s.typ, err)
		}
		out[s.id] = t
	}
	return out
}

func (c *cluster) check(ctx context.Context, subs []submitted, o verifyOpts) outcome {
	c.t.Helper()
	fail := c.t.Fatalf

	// No task is stuck, and the namespace holds only the submitted ones.
	counts, err := c.counts(ctx)
	if err != nil {
		fail("counts: %v", err)
	}
	var total int64
	for s, n := range counts {
		total += n
		if !s.Terminal() && n > 0 {
			fail("stuck: %d tasks still %s: %v", n, s, counts)
		}
	}
	if total != int64(len(subs)) {
		fail("the store holds %d tasks, %d were submitted: %v", total, len(subs), counts)
	}

	tasks := c.getAll(ctx, subs)
	runs := executions(c.readLog())
	out := outcome{Tasks: len(subs), PerWorker: map[string]int{}, tasks: tasks}
	for _, s := range subs {
		t := tasks[s.id]
		xs := runs[s.id]
		// Exactly one terminal state, the one the task's type leads to.
		if !t.State.Terminal() {
			fail("stuck: task %s (%s) is %s", s.id, s.typ, t.State)
		}
		if t.State != s.want {
			fail("task %s (%s %s) ended %s (attempt %d, error %q), want %s", s.id, s.typ, s.payload, t.State, t.Attempt, t.LastError, s.want)
		}
		if s.wantErr != "" && !strings.Contains(t.LastError, s.wantErr) {
			fail("task %s (%s) is dead with error %q, want it to name %q", s.id, s.typ, t.LastError, s.wantErr)
		}
		if t.State == scheduler.StateDead && t.Attempt != t.MaxRetries+1 && o.noFaults {
			fail("task %s is dead after %d attempts, want max_retries+1 = %d", s.id, t.Attempt, t.MaxRetries+1)
		}
		out.Executions += len(xs)

		// Every execution is accounted for by the attempt count: each
		// run has its own attempt number, none above the task's, and the
		// final attempt is the run whose outcome the store holds.
		seen := map[int]*execution{}
		var final *execution
		for _, x := range xs {
			a := x.start.Attempt
			if prev := seen[a]; prev != nil {
				fail("task %s: attempt %d ran twice, on %s (log line %d) and on %s (line %d)",
					s.id, a, prev.start.Worker, prev.start.line+1, x.start.Worker, x.start.line+1)
			}
			seen[a] = x
			if a > t.Attempt {
				fail("task %s: attempt %d ran on %s but the store counts %d attempts", s.id, a, x.start.Worker, t.Attempt)
			}
			out.PerWorker[x.start.Worker]++
			switch {
			case a == t.Attempt:
				final = x
			case x.end == nil:
				out.Interrupted++
				out.Duplicates++
			case x.end.Err == "" || s.typ == "demo.sleep":
				// It succeeded but its outcome was refused (a later attempt
				// had taken over), or it was cut short (demo.sleep fails
				// only when its context ends): a re-execution, not a
				// failed attempt of the task's own making.
				out.Duplicates++
			}
		}
		out.Wasted += t.Attempt - len(xs)
		if final == nil {
			fail("task %s is %s at attempt %d, but no run of attempt %d is logged", s.id, t.State, t.Attempt, t.Attempt)
		}
		if final.start.Worker != t.WorkerID {
			fail("task %s: the store says attempt %d ran on %s, the log says on %s", s.id, t.Attempt, t.WorkerID, final.start.Worker)
		}
		if final.end == nil {
			fail("task %s is %s, but its final attempt %d on %s never returned", s.id, t.State, t.Attempt, final.start.Worker)
		}
		switch t.State {
		case scheduler.StateSucceeded:
			if final.end.Err != "" {
				fail("task %s succeeded, but its final attempt %d failed with %q", s.id, t.Attempt, final.end.Err)
			}
		case scheduler.StateDead:
			if final.end.Err == "" || !strings.Contains(t.LastError, firstLine(final.end.Err)) && !strings.Contains(final.end.Err, firstLine(t.LastError)) {
				fail("task %s is dead with %q, but its final attempt %d ended with %q", s.id, t.LastError, t.Attempt, final.end.Err)
			}
		}
		// The terminal write is the final attempt's: it comes after that
		// run returned (a late write of an older run would come before).
		if !final.end.T.IsZero() && t.FinishedAt.Before(final.end.T) {
			fail("task %s finished at %s, before its final attempt %d returned on %s at %s: an older run's outcome was stored",
				s.id, t.FinishedAt.Format(time.RFC3339Nano), t.Attempt, final.end.Worker, final.end.T.Format(time.RFC3339Nano))
		}
		if o.noFaults {
			if len(xs) != t.Attempt {
				fail("task %s: %d runs logged for %d attempts in a run without faults", s.id, len(xs), t.Attempt)
			}
			for i, x := range xs {
				if x.start.Attempt != i+1 || x.end == nil || (i+1 < t.Attempt && x.end.Err == "") {
					fail("task %s: run %d (attempt %d) is not a plain failed attempt followed by the next", s.id, i+1, x.start.Attempt)
				}
			}
		}
	}
	if out.Duplicates > o.maxDuplicates {
		fail("%d re-executions, more than the %d this fault can cause", out.Duplicates, o.maxDuplicates)
	}
	if out.Wasted > o.maxWasted {
		fail("%d attempts the store counted have no run in the log; this fault can cause at most %d", out.Wasted, o.maxWasted)
	}

	// Work spread over every live worker.
	least := max(o.minShare, 1)
	for _, w := range o.live {
		if out.PerWorker[w] < least {
			fail("worker %s ran %d tasks, want at least %d; runs by worker: %v", w, out.PerWorker[w], least, out.PerWorker)
		}
	}
	c.t.Logf("%d tasks, %d runs, %d re-executions, %d interrupted, %d attempts without a run; runs by worker %v",
		out.Tasks, out.Executions, out.Duplicates, out.Interrupted, out.Wasted, sortedCounts(out.PerWorker))
	return out
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// openRuns returns the runs of worker that have started and not ended.
func openRuns(evs []event, worker string) []event {
	var out []event
	for _, xs := range executions(evs) {
		for _, x := range xs {
			if x.start.Worker == worker && x.end == nil {
				out = append(out, x.start)
			}
		}
	}
	slices.SortFunc(out, func(a, b event) int { return a.line - b.line })
	return out
}

// runsOf counts the starts logged by worker.
func runsOf(evs []event, worker string) int {
	n := 0
	for _, e := range evs {
		if e.Ev == "start" && e.Worker == worker {
			n++
		}
	}
	return n
}
