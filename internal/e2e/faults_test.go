package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/failpoint"
)

// A faultCase is one row of the reliability matrix: a fault, how the test
// injects it, what it checks, and the test itself.
type faultCase struct {
	name     string
	fault    string
	injected string
	checked  string
	// tasks is how many tasks the case submits.
	tasks int
	// maxDuplicates bounds the re-executions the fault may cause: runs of
	// a task that were neither its final attempt nor a failed attempt of
	// its own making.
	maxDuplicates int
	run           func(t *testing.T, fc *faultCase) outcome
}

// The fault cases, in the matrix's order.
var faultCases = []*faultCase{
	{
		name: "sigkill", fault: "worker killed mid-task",
		injected:      "SIGKILL to one of 3 worker processes while it runs tasks",
		checked:       "invariants; every task the killed worker had started finished on another worker",
		tasks:         600,
		maxDuplicates: 4, // the killed worker's concurrency
		run:           caseSigkill,
	},
	{
		name: "finish-crash", fault: "worker crash between handler and outcome write",
		injected:      "worker with -failpoint worker-before-finish exits (status 3) after a handler returned, before storing its outcome",
		checked:       "invariants; the task it was finishing ran again elsewhere under a later attempt and that outcome was stored",
		tasks:         200,
		maxDuplicates: 1, // the one run whose outcome was never stored
		run:           caseFinishCrash,
	},
	{
		name: "scale", fault: "scale in and out",
		injected:      "SIGTERM to a worker (drain, exit 0) and a new worker started mid-run; SIGTERM to a worker with a short shutdown timeout (hand-back)",
		checked:       "invariants; the drained worker finished every task it started; the handed-back task finished elsewhere; submitted over HTTP",
		tasks:         400,
		maxDuplicates: 4, // the handing-back worker's concurrency
		run:           caseScale,
	},
	{
		name: "amqp-cut", fault: "all AMQP connections closed",
		injected:      "TCP proxy between every process (and the submitter) and RabbitMQ, cut 3 times during submit and consume",
		checked:       "invariants; every Submit returned nil; every process reconnected, each worker counting 3 reconnections in its metrics",
		tasks:         600,
		maxDuplicates: 36, // 3 cuts × 3 workers × concurrency 4
		run:           caseAMQPCut,
	},
	{
		name: "redis-outage", fault: "Redis connections killed, Redis paused",
		injected:      "own redis-server: CLIENT KILL of every client and CLIENT PAUSE 3 s during submit, CLIENT KILL and CLIENT PAUSE 12 s during consume",
		checked:       "invariants; every Submit returned nil; clients reconnected; during the long pause store calls failed and the workers retried them",
		tasks:         600,
		maxDuplicates: 12, // 3 workers × concurrency 4
		run:           caseRedisOutage,
	},
	{
		name: "sigstop", fault: "worker frozen past its lease",
		injected:      "SIGSTOP to a worker until RabbitMQ drops its connection (AMQP heartbeat 1 s) and its tasks restart elsewhere, then SIGCONT",
		checked:       "invariants; the frozen worker's late outcomes were refused as stale (its log says so) while the new attempt ran; final state and finish time from the other worker",
		tasks:         150,
		maxDuplicates: 4, // the frozen worker's concurrency
		run:           caseSigstop,
	},
	{
		name: "panic", fault: "handler panics",
		injected:      "demo.panic tasks (max_retries 2) among demo.sleep tasks",
		checked:       "invariants; dead after 3 attempts with the panic as error; workers keep running and run new tasks",
		tasks:         60,
		maxDuplicates: 0,
		run:           casePanic,
	},
	{
		name: "always-fails", fault: "task always fails",
		injected:      "demo.flaky with fail_first 1000, max_retries 3",
		checked:       "invariants; dead with its error, attempt = max_retries+1, each retry after its backoff",
		tasks:         10,
		maxDuplicates: 0,
		run:           caseAlwaysFails,
	},
	{
		name: "submit-crash", fault: "crash between store write and publish",
		injected:      "api process with -failpoint submit-after-store exits (status 3) inside POST /submit, 3 times",
		checked:       "invariants; the tasks were stored with no message in the queue; the workers' sweep published them",
		tasks:         3,
		maxDuplicates: 0,
		run:           caseSubmitCrash,
	},
	{
		name: "priority", fault: "priority under backlog",
		injected:      "200 tasks queued with no worker, then 2 workers of concurrency 1; 20 priority-9 tasks submitted while they drain it",
		checked:       "invariants; no task started after more than 4 lower-priority tasks that were waiting with it (2 workers × (prefetch 1 + running 1))",
		tasks:         220,
		maxDuplicates: 0,
		run:           casePriority,
	},
}

// results collects the outcome of each case that ran, for the matrix.
var results struct {
	sync.Mutex
	m map[string]outcome
}

// TestFaults runs every fault case in parallel, then checks
// docs/RELIABILITY.md against what they found.
func TestFaults(t *testing.T) {
	servers(t)
	t.Run("case", func(t *testing.T) {
		for _, fc := range faultCases {
			t.Run(fc.name, func(t *testing.T) {
				t.Parallel()
				out := fc.run(t, fc)
				if out.Tasks != fc.tasks {
					t.Fatalf("the case checked %d tasks, its row says %d", out.Tasks, fc.tasks)
				}
				results.Lock()
				if results.m == nil {
					results.m = map[string]outcome{}
				}
				results.m[fc.name] = out
				results.Unlock()
			})
		}
	})
	if t.Failed() {
		return
	}
	checkMatrix(t)
}

// caseSigkill: a worker is killed with SIGKILL while it runs tasks; the
// broker redelivers its unacknowledged messages and the others take the
// tasks over.
func caseSigkill(t *testing.T, fc *faultCase) outcome {
	c := newCluster(t, clusterOpts{})
	victim := c.startWorker("w1", procOpts{})
	c.startWorker("w2", procOpts{})
	c.startWorker("w3", procOpts{})
	ctx := ctxFor(t, 3*time.Minute)

	subs := c.submit(ctx, mix(fc.tasks, 1), 8)
	// Kill the victim when it has run some tasks and holds some unfinished.
	var open []event
	waitUntil(t, 60*time.Second, "w1 to be running tasks", func() bool {
		evs := c.readLog()
		open = openRuns(evs, "w1")
		return runsOf(evs, "w1") >= 20 && len(open) >= 2
	})
	victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 10*time.Second)
	open = openRuns(c.readLog(), "w1") // what it really left unfinished
	require.NotEmpty(t, open, "w1 died with no task unfinished: the case tested nothing")

	c.waitFinished(2*time.Minute, len(subs))
	out := c.verify(subs, verifyOpts{live: []string{"w2", "w3"}, minShare: fc.tasks / 10, maxDuplicates: fc.maxDuplicates, maxWasted: 4})
	for _, e := range open {
		tk := out.tasks[e.ID]
		if tk.WorkerID == "w1" || tk.Attempt <= e.Attempt {
			t.Fatalf("task %s, left running by the killed w1 at attempt %d, ended %s at attempt %d on %s", e.ID, e.Attempt, tk.State, tk.Attempt, tk.WorkerID)
		}
	}
	t.Logf("w1 was killed with %d tasks unfinished; all finished elsewhere", len(open))
	return out
}

// caseFinishCrash: a worker exits after a handler returned and before it
// stored the outcome; the message, never acknowledged, goes to another
// worker, which runs the task again.
func caseFinishCrash(t *testing.T, fc *faultCase) outcome {
	c := newCluster(t, clusterOpts{})
	c.startWorker("w2", procOpts{})
	c.startWorker("w3", procOpts{})
	ctx := ctxFor(t, 3*time.Minute)
	subs := c.submit(ctx, mix(fc.tasks, 5), 8)
	victim := c.start("w1", procOpts{concurrency: 1, failpoint: failpoint.WorkerBeforeFinish}) // it may exit before a heartbeat
	require.Equal(t, 3, victim.wait(t, time.Minute), "exit status of the failpoint")
	var last *event
	for _, e := range c.readLog() {
		if e.Ev == "end" && e.Worker == "w1" {
			last = &e
		}
	}
	require.NotNil(t, last, "w1 exited at the failpoint without a handler having returned")

	c.waitFinished(2*time.Minute, len(subs))
	out := c.verify(subs, verifyOpts{live: []string{"w2", "w3"}, minShare: fc.tasks / 10, maxDuplicates: fc.maxDuplicates, maxWasted: 1})
	if tk := out.tasks[last.ID]; tk.WorkerID == "w1" || tk.Attempt <= last.Attempt {
		t.Fatalf("task %s, whose run on w1 returned at attempt %d before w1 crashed, ended %s at attempt %d on %s", last.ID, last.Attempt, tk.State, tk.Attempt, tk.WorkerID)
	}
	return out
}

// caseScale: a worker drains and exits on SIGTERM while a new one joins;
// later a worker with a short shutdown timeout is stopped mid-task and
// hands its task back.
func caseScale(t *testing.T, fc *faultCase) outcome {
	c := newCluster(t, clusterOpts{})
	api := c.start("api", procOpts{role: "api"})
	base := api.api(t)
	w1 := c.startWorker("w1", procOpts{shutdown: time.Minute})
	c.startWorker("w2", procOpts{})
	ctx := ctxFor(t, 3*time.Minute)

	// Mixed tasks, one in ten a long one, so a stopping worker has one.
	tasks := mix(fc.tasks, 2)
	long := sleepTask(3000, 0)
	for i := range tasks {
		if i%10 == 5 {
			tasks[i] = sleepTask(3000, tasks[i].priority)
		}
	}
	subs, failed := submitEach(tasks, 8, func(tk task) (string, error) { return submitHTTP(ctx, base, tk) })
	for _, err := range failed {
		t.Errorf("submit over HTTP: %v", err)
	}
	require.Empty(t, failed)
	longIDs := map[string]bool{}
	for _, s := range subs {
		if s.typ == long.typ && s.payload == long.payload {
			longIDs[s.id] = true
		}
	}

	finished := func() int {
		cs, _ := c.counts(context.Background())
		return int(cs[scheduler.StateSucceeded] + cs[scheduler.StateDead])
	}
	// Scale in and out at a third: w1 drains, w3 joins.
	waitUntil(t, 2*time.Minute, "a third of the tasks to finish", func() bool { return finished() >= fc.tasks/3 })
	w1.signal(t, syscall.SIGTERM)
	w3 := c.startWorker("w3", procOpts{shutdown: 200 * time.Millisecond})
	require.Equal(t, 0, w1.wait(t, time.Minute), "w1 must exit 0 after its drain")
	for _, x := range openRuns(c.readLog(), "w1") {
		t.Fatalf("w1 drained, yet its run of task %s attempt %d never returned", x.ID, x.Attempt)
	}

	// w3 stops with a 200 ms shutdown timeout while it runs a long task:
	// it hands the task back, and another worker takes it over.
	var handed event
	waitUntil(t, 2*time.Minute, "w3 to start a long task", func() bool {
		for _, e := range openRuns(c.readLog(), "w3") {
			// Started less than a second ago: two seconds from its end,
			// far beyond the 200 ms shutdown timeout.
			if longIDs[e.ID] && time.Since(e.T) < time.Second {
				handed = e
				return true
			}
		}
		return false
	})
	w3.signal(t, syscall.SIGTERM)
	w3.wait(t, 30*time.Second)

	c.waitFinished(2*time.Minute, len(subs))
	out := c.verify(subs, verifyOpts{live: []string{"w2"}, minShare: fc.tasks / 10, maxDuplicates: fc.maxDuplicates})
	for _, w := range []string{"w1", "w3"} {
		if out.PerWorker[w] == 0 {
			t.Fatalf("%s ran no task", w)
		}
	}
	if tk := out.tasks[handed.ID]; tk.WorkerID == "w3" || tk.Attempt <= handed.Attempt {
		t.Fatalf("task %s, handed back by w3 at attempt %d, ended %s at attempt %d on %s", handed.ID, handed.Attempt, tk.State, tk.Attempt, tk.WorkerID)
	}
	return out
}

// caseAMQPCut: every connection to RabbitMQ, the workers' and the
// submitter's, is cut three times while tasks are submitted and consumed.
func caseAMQPCut(t *testing.T, fc *faultCase) outcome {
	px, purl := amqpProxy(t)
	c := newCluster(t, clusterOpts{amqpURL: purl})
	var workers []*proc
	for _, id := range []string{"w1", "w2", "w3"} {
		workers = append(workers, c.startWorker(id, procOpts{serve: true}))
	}
	ctx := ctxFor(t, 3*time.Minute)
	conns := px.Open()
	require.GreaterOrEqual(t, conns, 4, "the workers and the submitter connect through the proxy")

	tasks := mix(fc.tasks, 3)
	var progress atomic.Int64
	var subs []submitted
	var failed []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		// In slices, so the cuts land while submitting.
		for i := 0; i < len(tasks); i += 50 {
			ok, bad := c.submitAllowingErrors(ctx, tasks[i:min(i+50, len(tasks))], 8)
			subs, failed = append(subs, ok...), append(failed, bad...)
			progress.Add(int64(len(ok) + len(bad)))
		}
	}()
	cut := func(what string) {
		n := px.Cut()
		require.Positive(t, n)
		t.Logf("cut %d connections %s", n, what)
		waitUntil(t, time.Minute, "every process to reconnect", func() bool { return px.Open() >= conns })
	}
	waitUntil(t, time.Minute, "a fifth submitted", func() bool { return progress.Load() >= int64(fc.tasks/5) })
	cut("during submit")
	waitUntil(t, time.Minute, "three fifths submitted", func() bool { return progress.Load() >= int64(fc.tasks*3/5) })
	cut("during submit")
	<-done
	require.Empty(t, failed, "Submit must survive a lost connection")
	waitUntil(t, time.Minute, "some tasks to run after the cuts", func() bool {
		cs, _ := c.counts(context.Background())
		return cs[scheduler.StateSucceeded] >= int64(fc.tasks/2)
	})
	cut("during consume")

	c.waitFinished(2*time.Minute, len(subs))
	out := c.verify(subs, verifyOpts{live: []string{"w1", "w2", "w3"}, minShare: fc.tasks / 10, maxDuplicates: fc.maxDuplicates})
	// Each lost connection is counted in the worker's metrics.
	for _, w := range workers {
		if n := w.metric(t, "scheduler_broker_reconnects_total"); n < 3 {
			t.Fatalf("%s counts %v reconnections after 3 cuts", w.id, n)
		}
	}
	return out
}

// caseRedisOutage: on a Redis of the test's own, every client connection
// is killed, then the server is paused for 3 s, then the connections are
// killed again, while tasks are submitted and consumed.
func caseRedisOutage(t *testing.T, fc *faultCase) outcome {
	addr := ownRedis(t)
	c := newCluster(t, clusterOpts{redisAddr: addr})
	admin := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = admin.Close() })
	var workers []*proc
	for _, id := range []string{"w1", "w2", "w3"} {
		workers = append(workers, c.startWorker(id, procOpts{}))
	}
	ctx := ctxFor(t, 3*time.Minute)

	tasks := mix(fc.tasks, 4)
	for i := len(tasks) - 60; i < len(tasks); i++ {
		tasks[i] = sleepTask(2000, tasks[i].priority) // still running during the long pause
	}
	var progress atomic.Int64
	var subs []submitted
	var failed []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(tasks); i += 50 {
			ok, bad := c.submitAllowingErrors(ctx, tasks[i:min(i+50, len(tasks))], 8)
			subs, failed = append(subs, ok...), append(failed, bad...)
			progress.Add(int64(len(ok) + len(bad)))
		}
	}()
	clients := func() int {
		n, err := admin.ClientList(ctx).Result()
		if err != nil {
			return 0
		}
		return strings.Count(n, "\n")
	}
	kill := func() {
		// Only this server's clients, all of them the test's and its
		// processes', except the admin connection itself.
		n, err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Int()
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, 4, "the workers and the submitter had connections")
		t.Logf("killed %d Redis client connections", n)
		waitUntil(t, time.Minute, "clients to reconnect", func() bool { return clients() >= 5 })
	}
	waitUntil(t, time.Minute, "a fifth submitted", func() bool { return progress.Load() >= int64(fc.tasks/5) })
	kill()
	waitUntil(t, time.Minute, "half submitted", func() bool { return progress.Load() >= int64(fc.tasks/2) })
	require.NoError(t, admin.Do(ctx, "CLIENT", "PAUSE", "3000", "ALL").Err())
	t.Log("Redis paused for 3 s")
	pausedAt := time.Now()
	<-done
	require.Empty(t, failed, "Submit must survive a Redis outage")
	require.Greater(t, time.Since(pausedAt), 3*time.Second, "submitting went on through the pause: it did not pause")
	kill()

	// A pause longer than go-redis retries on its own (3 tries of a 3 s
	// read timeout), while tasks run: the workers' store calls fail and
	// the worker must retry them itself.
	cs, err := c.counts(ctx)
	require.NoError(t, err)
	require.Greater(t, cs[scheduler.StatePending]+cs[scheduler.StateRunning]+cs[scheduler.StateRetrying], int64(20), "too little work left to pause: %v", cs)
	require.NoError(t, admin.Do(ctx, "CLIENT", "PAUSE", "12000", "ALL").Err())
	t.Log("Redis paused for 12 s")

	c.waitFinished(2*time.Minute, len(subs))
	out := c.verify(subs, verifyOpts{live: []string{"w1", "w2", "w3"}, minShare: fc.tasks / 10, maxDuplicates: fc.maxDuplicates})
	retried := false
	for _, w := range workers {
		retried = retried || strings.Contains(readFile(t, w.outPath), "store unavailable; retrying")
	}
	require.True(t, retried, "no worker saw a store call fail: the pause did not reach the workers")
	return out
}

// caseSigstop: a worker is frozen with SIGSTOP until RabbitMQ, missing its
// heartbeats, drops its connection and another worker takes its tasks
// over; then it is thawed, finishes its stale runs and tries to store
// them, and the attempt fence refuses them.
func caseSigstop(t *testing.T, fc *faultCase) outcome {
	c := newCluster(t, clusterOpts{})
	c.amqpHeartbeat = time.Second
	w1 := c.startWorker("w1", procOpts{})
	c.startWorker("w2", procOpts{})
	c.startWorker("w3", procOpts{})
	ctx := ctxFor(t, 3*time.Minute)

	// Long tasks first (higher priority), so the frozen worker holds some.
	var tasks []task
	for i := range fc.tasks {
		if i < 30 {
			tasks = append(tasks, sleepTask(4000, 8))
		} else {
			tasks = append(tasks, sleepTask(20+i%50, i%8))
		}
	}
	subs := c.submit(ctx, tasks, 8)
	var frozen []event
	waitUntil(t, time.Minute, "w1 to run long tasks", func() bool {
		frozen = openRuns(c.readLog(), "w1")
		return len(frozen) >= 2
	})
	w1.signal(t, syscall.SIGSTOP)
	stoppedAt := time.Now()
	frozen = openRuns(c.readLog(), "w1")
	t.Logf("w1 frozen with %d tasks running", len(frozen))

	// Wait until every frozen task runs again elsewhere under a new
	// attempt, then thaw w1 at once, while those attempts still run.
	waitUntil(t, time.Minute, "w1's tasks to be taken over", func() bool {
		taken := map[string]bool{}
		for _, e := range c.readLog() {
			if e.Ev == "start" && e.Worker != "w1" {
				for _, f := range frozen {
					if e.ID == f.ID && e.Attempt > f.Attempt {
						taken[e.ID] = true
					}
				}
			}
		}
		return len(taken) == len(frozen)
	})
	w1.signal(t, syscall.SIGCONT)
	t.Logf("w1 thawed after %s", time.Since(stoppedAt).Round(time.Millisecond))
	waitUntil(t, time.Minute, "w1's frozen runs to return", func() bool {
		for _, e := range openRuns(c.readLog(), "w1") {
			for _, f := range frozen {
				if e.ID == f.ID && e.Attempt == f.Attempt {
					return false
				}
			}
		}
		return true
	})

	c.waitFinished(2*time.Minute, len(subs))
	// w2 and w3 spend most of the case on the long tasks, so their share
	// of the short ones is small.
	out := c.verify(subs, verifyOpts{live: []string{"w1", "w2", "w3"}, minShare: 3, maxDuplicates: fc.maxDuplicates, maxWasted: 4})
	runs := executions(c.readLog())
	raced := 0
	for _, f := range frozen {
		tk := out.tasks[f.ID]
		var late, final *execution
		for _, x := range runs[f.ID] {
			switch x.start.Attempt {
			case f.Attempt:
				late = x
			case tk.Attempt:
				final = x
			}
		}
		if tk.WorkerID == "w1" || tk.Attempt <= f.Attempt || late == nil || late.end == nil || late.end.Err != "" {
			t.Fatalf("task %s, frozen on w1 at attempt %d: ended %s at attempt %d on %s; w1's run %+v", f.ID, f.Attempt, tk.State, tk.Attempt, tk.WorkerID, late)
		}
		// w1's run succeeded and returned while the new attempt still
		// ran: only the attempt fence could refuse its outcome.
		if late.end.line < final.end.line {
			raced++
		}
		// And w1 was told so: its Finish got ErrStaleAttempt.
		refused := false
		for _, l := range strings.Split(readFile(t, w1.outPath), "\n") {
			if strings.Contains(l, "attempt outcome discarded") && strings.Contains(l, f.ID) && strings.Contains(l, "stale attempt") {
				refused = true
			}
		}
		if !refused {
			t.Fatalf("w1 logged no refusal of its late outcome for task %s", f.ID)
		}
	}
	if raced == 0 {
		t.Fatal("no frozen run returned while its task's new attempt ran: the attempt fence was not exercised")
	}
	t.Logf("%d of w1's %d frozen runs returned while their new attempt ran; every late outcome was refused", raced, len(frozen))
	return out
}

// casePanic: a handler that panics fails its attempt; after its retries
// the task is dead with the panic as its error, and the worker lives on.
func casePanic(t *testing.T, fc *faultCase) outcome {
	c := newCluster(t, clusterOpts{})
	w1 := c.startWorker("w1", procOpts{})
	w2 := c.startWorker("w2", procOpts{})
	ctx := ctxFor(t, 2*time.Minute)

	var tasks []task
	for i := range fc.tasks - 10 {
		if i%5 == 0 {
			tasks = append(tasks, panicTask(i%10, 2))
		} else {
			tasks = append(tasks, sleepTask(i%30, i%10))
		}
	}
	subs := c.submit(ctx, tasks, 4)
	c.waitFinished(time.Minute, len(subs))
	// The workers live on: they are still running and take new tasks.
	for _, p := range []*proc{w1, w2} {
		require.Equal(t, "running", p.state(), "%s exited after panics", p.id)
	}
	var more []task
	for i := range 10 {
		more = append(more, sleepTask(10, i))
	}
	subs = append(subs, c.submit(ctx, more, 4)...)
	c.waitFinished(time.Minute, len(subs))
	out := c.verify(subs, verifyOpts{live: []string{"w1", "w2"}, noFaults: true})
	for _, s := range subs {
		if tk := out.tasks[s.id]; s.typ == "demo.panic" && (tk.Attempt != 3 || !strings.HasPrefix(tk.LastError, "panic:")) {
			t.Fatalf("panicking task %s: attempt %d, error %q; want dead after 3 attempts with a panic: error", s.id, tk.Attempt, tk.LastError)
		}
	}
	return out
}

// caseAlwaysFails: a task that fails every attempt is retried with backoff
// and is dead after max_retries+1 attempts, with its error.
func caseAlwaysFails(t *testing.T, fc *faultCase) outcome {
	c := newCluster(t, clusterOpts{})
	c.retryBase, c.retryMax = 400*time.Millisecond, 2*time.Second
	c.startWorker("w1", procOpts{})
	c.startWorker("w2", procOpts{})
	ctx := ctxFor(t, 2*time.Minute)

	var tasks []task
	for i := range fc.tasks {
		tasks = append(tasks, flakyTask(1000, i%10, 3))
	}
	subs := c.submit(ctx, tasks, 4)
	c.waitFinished(time.Minute, len(subs))
	out := c.verify(subs, verifyOpts{live: []string{"w1", "w2"}, noFaults: true})
	runs := executions(c.readLog())
	for _, s := range subs {
		tk := out.tasks[s.id]
		if tk.Attempt != 4 || tk.LastError != "demo.flaky: attempt 4 of the first 1000 fails" {
			t.Fatalf("task %s: dead at attempt %d with %q; want attempt 4 and its own error", s.id, tk.Attempt, tk.LastError)
		}
		// Backoff, not a hot loop: attempt k+1 starts no sooner than the
		// policy's delay after attempt k failed (base·2^(k-1), capped,
		// less the 20% jitter).
		xs := runs[s.id]
		for k := 1; k < len(xs); k++ {
			prev, next := xs[k-1], xs[k]
			if prev.end == nil || prev.end.T.IsZero() || next.start.T.IsZero() {
				t.Fatalf("task %s: the execution log has no times", s.id)
			}
			want := min(c.retryBase<<(k-1), c.retryMax) * 8 / 10
			if gap := next.start.T.Sub(prev.end.T); gap < want {
				t.Fatalf("task %s: attempt %d started %s after attempt %d failed, want at least %s", s.id, k+1, gap, k, want)
			}
		}
	}
	return out
}

// caseSubmitCrash: an api process exits inside Submit, after the store
// write and before the publish; the task waits in the outbox and a
// worker's sweep publishes it.
func caseSubmitCrash(t *testing.T, fc *faultCase) outcome {
	c := newCluster(t, clusterOpts{})
	ctx := ctxFor(t, 2*time.Minute)
	for i := range fc.tasks {
		api := c.start(fmt.Sprintf("api%d", i+1), procOpts{role: "api", failpoint: failpoint.SubmitAfterStore})
		_, err := submitHTTP(ctx, api.api(t), sleepTask(10, i))
		require.Error(t, err, "the api process must crash inside the submit")
		require.Equal(t, 3, api.wait(t, 30*time.Second), "exit status of the failpoint")
	}
	// The tasks are stored, and no message exists: only the sweep can
	// deliver them.
	page, err := c.sched.List(ctx, scheduler.ListFilter{})
	require.NoError(t, err)
	require.Len(t, page.Tasks, fc.tasks)
	depth, err := c.sched.QueueDepth(ctx, scheduler.DefaultQueue)
	require.NoError(t, err)
	require.Zero(t, depth, "a message was published despite the crash")
	var subs []submitted
	for _, tk := range page.Tasks {
		require.Equal(t, scheduler.StatePending, tk.State)
		subs = append(subs, submitted{task: sleepTask(10, int(tk.Priority)), id: tk.ID})
	}

	c.startWorker("w1", procOpts{})
	c.startWorker("w2", procOpts{})
	c.waitFinished(time.Minute, len(subs))
	return c.verify(subs, verifyOpts{noFaults: true})
}

// casePriority: with a backlog queued before any worker runs, and more
// urgent tasks arriving while workers of concurrency (and prefetch) 1
// drain it, a task never starts after more than a few lower-priority ones
// that were waiting with it.
func casePriority(t *testing.T, fc *faultCase) outcome {
	c := newCluster(t, clusterOpts{})
	ctx := ctxFor(t, 2*time.Minute)
	const workers, prefetch, concurrency = 2, 1, 1
	const slack = workers * (prefetch + concurrency)
	const urgent = 20

	var backlog []task
	for i := range fc.tasks - urgent {
		backlog = append(backlog, sleepTask(20, (i*7)%9)) // priorities 0..8, shuffled
	}
	subs := c.submit(ctx, backlog, 8)
	c.startWorker("w1", procOpts{concurrency: concurrency})
	c.startWorker("w2", procOpts{concurrency: concurrency})

	// Urgent tasks, one at a time, spread over the first 80% of the
	// backlog, so lower-priority tasks are always waiting with them.
	starts := func() int {
		n := 0
		for _, e := range c.readLog() {
			if e.Ev == "start" {
				n++
			}
		}
		return n
	}
	submittedAt := map[string]int64{} // log offset when its Submit returned
	for k := range urgent {
		waitUntil(t, time.Minute, "the workers to drain the backlog", func() bool { return starts() >= 10+k*8 })
		s := c.submit(ctx, []task{sleepTask(20, 9)}, 1)
		submittedAt[s[0].id] = c.logSize()
		subs = append(subs, s...)
	}
	c.waitFinished(time.Minute, len(subs))
	prio := map[string]int{}
	for _, s := range subs {
		prio[s.id] = s.priority
	}
	var started []event
	for _, e := range c.readLog() {
		if e.Ev == "start" {
			started = append(started, e)
		}
	}
	// A task waits from the start of the log (the backlog) or from its
	// Submit (an urgent task). While it waits, at most slack tasks of
	// lower priority may start: those already prefetched or running.
	worst := 0
	for i, e := range started {
		since := submittedAt[e.ID]
		overtaken := 0
		for _, o := range started[:i] {
			if o.offset >= since && prio[o.ID] < prio[e.ID] {
				overtaken++
			}
		}
		worst = max(worst, overtaken)
		if overtaken > slack {
			t.Fatalf("task %s (priority %d) started after %d lower-priority tasks that started while it waited; at most %d may (prefetched or running)",
				e.ID, prio[e.ID], overtaken, slack)
		}
		// An urgent task really overtook a waiting backlog: lower
		// tasks start after it.
		if _, urgent := submittedAt[e.ID]; urgent && !slices.ContainsFunc(started[i+1:], func(o event) bool { return prio[o.ID] < 9 }) {
			t.Fatalf("urgent task %s started after the whole backlog: the case did not test priority", e.ID)
		}
	}
	t.Logf("at most %d lower-priority tasks started while a task waited (bound %d)", worst, slack)
	out := c.verify(subs, verifyOpts{live: []string{"w1", "w2"}, minShare: fc.tasks / 5, noFaults: true})
	return out
}
