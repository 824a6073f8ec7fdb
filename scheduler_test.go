package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/internal/failpoint"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

func TestSubmitAndRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"echo": func(_ context.Context, task *scheduler.Task) error {
			task.Result = append([]byte(`{"echo":`), append(task.Payload, '}')...)
			return nil
		},
	})
	id := submit(t, e.sched, "echo", `"hi"`)
	got := waitState(t, e.sched, id, scheduler.StateSucceeded)
	require.Equal(t, `{"echo":"hi"}`, string(got.Result))
	require.Equal(t, 1, got.Attempt)
	require.False(t, got.FinishedAt.IsZero())
	require.False(t, got.StartedAt.IsZero())
	require.NotEmpty(t, got.WorkerID)
}

func TestPriorityUnderBacklog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gate := make(chan struct{})
	var mu sync.Mutex
	var order []string
	record := func(_ context.Context, task *scheduler.Task) error {
		mu.Lock()
		order = append(order, string(task.Payload))
		mu.Unlock()
		return nil
	}
	started := make(chan struct{})
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"gate": func(ctx context.Context, _ *scheduler.Task) error {
			close(started)
			<-gate
			return nil
		},
		"work": record,
	}, scheduler.WithConcurrency(1))
	submit(t, e.sched, "gate", "")
	<-started
	var last string
	for i := range 30 {
		last = submit(t, e.sched, "work", fmt.Sprintf(`"low-%d"`, i), scheduler.WithPriority(scheduler.PriorityLow))
	}
	for i := range 5 {
		submit(t, e.sched, "work", fmt.Sprintf(`"high-%d"`, i), scheduler.WithPriority(scheduler.PriorityHigh))
	}
	close(gate)
	waitState(t, e.sched, last, scheduler.StateSucceeded)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, order, 35)
	for i := range 5 {
		require.Equal(t, fmt.Sprintf(`"high-%d"`, i), order[i], "high-priority tasks submitted after the backlog run first, in order")
	}
	for i := range 30 {
		require.Equal(t, fmt.Sprintf(`"low-%d"`, i), order[5+i])
	}
}

func TestRetryWithBackoffThenSuccess(t *testing.T) {
	t.Parallel()
	const step = 30 * time.Millisecond
	rec := &recorder{}
	e := newEnv(t, scheduler.WithRetryPolicy(func(attempt int, _ error) time.Duration {
		return time.Duration(attempt) * step
	}), scheduler.WithObserver(rec))
	var mu sync.Mutex
	var at []time.Time
	id := submit(t, e.sched, "flaky", "", scheduler.WithMaxRetries(5))
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"flaky": func(context.Context, *scheduler.Task) error {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Now())
			if len(at) < 3 {
				return fmt.Errorf("failure %d", len(at))
			}
			return nil
		},
	})
	got := waitState(t, e.sched, id, scheduler.StateSucceeded)
	require.Equal(t, 3, got.Attempt)
	require.Equal(t, "failure 2", got.LastError, "the last failure stays visible")
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(at); i++ {
		require.GreaterOrEqual(t, at[i].Sub(at[i-1]), time.Duration(i)*step, "attempt %d waited its backoff", i+1)
	}
	require.Equal(t, []string{"submitted", "started", "failed", "retried", "started", "failed", "retried", "started", "succeeded"}, rec.kinds(id))
}

func TestBackoffGrowsAndIsBounded(t *testing.T) {
	t.Parallel()
	p := scheduler.Backoff(100*time.Millisecond, time.Second)
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 10: time.Second} {
		for range 50 {
			d := p(attempt, nil)
			require.InDelta(t, float64(want), float64(d), float64(want)*0.2+1, "attempt %d", attempt)
		}
	}
}

func TestDeadAfterLastAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var runs atomic.Int32
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"bad": func(context.Context, *scheduler.Task) error {
			return fmt.Errorf("bad input #%d", runs.Add(1))
		},
	})
	id := submit(t, e.sched, "bad", "", scheduler.WithMaxRetries(2))
	got := waitState(t, e.sched, id, scheduler.StateDead)
	require.Equal(t, 3, got.Attempt, "one run plus two retries")
	require.Equal(t, "bad input #3", got.LastError)
	require.Equal(t, int32(3), runs.Load())
	require.Eventually(t, func() bool { return len(e.broker.DeadLetters()) == 1 }, wait, time.Millisecond)
	require.Equal(t, id, e.broker.DeadLetters()[0].Message.TaskID, "the dead task's message is dead-lettered")
}

func TestSkipRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"hopeless": func(context.Context, *scheduler.Task) error {
			return fmt.Errorf("account closed: %w", scheduler.SkipRetry)
		},
	})
	id := submit(t, e.sched, "hopeless", "", scheduler.WithMaxRetries(10))
	got := waitState(t, e.sched, id, scheduler.StateDead)
	require.Equal(t, 1, got.Attempt)
	require.Contains(t, got.LastError, "account closed")
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"slow": func(ctx context.Context, _ *scheduler.Task) error {
			<-ctx.Done()
			return ctx.Err()
		},
	})
	id := submit(t, e.sched, "slow", "", scheduler.WithTimeout(20*time.Millisecond), scheduler.WithMaxRetries(1))
	got := waitState(t, e.sched, id, scheduler.StateDead)
	require.Equal(t, 2, got.Attempt)
	require.Contains(t, got.LastError, "timeout")
	require.Contains(t, got.LastError, "deadline exceeded")
}

func TestPanicFailsAttemptAndWorkerLivesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"boom": func(context.Context, *scheduler.Task) error { panic("kaboom") },
		"ok":   ok,
	}, scheduler.WithConcurrency(1))
	id := submit(t, e.sched, "boom", "", scheduler.WithMaxRetries(1))
	got := waitState(t, e.sched, id, scheduler.StateDead)
	require.Equal(t, "panic: kaboom", got.LastError)
	require.Equal(t, 2, got.Attempt)
	waitState(t, e.sched, submit(t, e.sched, "ok", ""), scheduler.StateSucceeded)
}

func TestNoHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"ok": ok})
	id := submit(t, e.sched, "unknown.type", "", scheduler.WithMaxRetries(1))
	got := waitState(t, e.sched, id, scheduler.StateDead)
	require.Contains(t, got.LastError, `no handler for task type "unknown.type"`)
}

// unreadable is a store that reads the tasks in bad as records something
// else wrote.
type unreadable struct {
	scheduler.Store
	bad sync.Map
}

func (s *unreadable) Start(ctx context.Context, id string, p scheduler.StartParams) (*scheduler.Task, error) {
	if _, ok := s.bad.Load(id); ok {
		return nil, fmt.Errorf("store: record of %s: %w", id, scheduler.ErrCorruptTask)
	}
	return s.Store.Start(ctx, id, p)
}

// A message whose task record cannot be read is dead-lettered at once,
// not retried while it holds a worker slot.
func TestUnreadableTaskIsDeadLettered(t *testing.T) {
	t.Parallel()
	b, s := newMemBroker(t), &unreadable{Store: memstore.New()}
	sched := newScheduler(t, b, s)
	bad := submit(t, sched, "job", "")
	s.bad.Store(bad, true)
	startWorker(t, sched, map[string]scheduler.HandlerFunc{"job": ok}, scheduler.WithConcurrency(1))
	require.Eventually(t, func() bool { return len(b.DeadLetters()) == 1 }, wait, time.Millisecond)
	require.Equal(t, bad, b.DeadLetters()[0].Message.TaskID)
	require.Contains(t, b.DeadLetters()[0].Reason, "unreadable task record")
	good := submit(t, sched, "job", "")
	waitState(t, sched, good, scheduler.StateSucceeded) // the one slot is free
}

func TestSnooze(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	e := newEnv(t, scheduler.WithObserver(rec))
	var runs atomic.Int32
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"poll": func(context.Context, *scheduler.Task) error {
			if runs.Add(1) < 3 {
				return scheduler.Snooze(10 * time.Millisecond)
			}
			return nil
		},
	})
	id := submit(t, e.sched, "poll", "", scheduler.WithMaxRetries(0))
	got := waitState(t, e.sched, id, scheduler.StateSucceeded)
	require.Equal(t, 3, got.Attempt)
	require.Equal(t, 2, got.MaxRetries, "snoozes do not use up the retry budget")
	require.Eventually(t, func() bool { return len(rec.kinds(id)) == 7 }, wait, time.Millisecond)
	// The submitter's event may come after the worker's first.
	kinds := slices.DeleteFunc(rec.kinds(id), func(k string) bool { return k == "submitted" })
	require.Equal(t, []string{"started", "snoozed", "started", "snoozed", "started", "succeeded"}, kinds,
		"every started attempt ends with one event")
}

func TestCancelPending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := submit(t, e.sched, "later", "", scheduler.WithDelay(time.Hour))
	require.Equal(t, scheduler.StateScheduled, waitState(t, e.sched, id, scheduler.StateScheduled).State)
	pending := submit(t, e.sched, "now", "")
	require.NoError(t, e.sched.Cancel(ctx, id))
	require.NoError(t, e.sched.Cancel(ctx, pending))
	require.Equal(t, "canceled", waitState(t, e.sched, id, scheduler.StateCanceled).LastError)
	require.ErrorIs(t, e.sched.Cancel(ctx, id), scheduler.ErrTaskFinished)

	var ran atomic.Bool
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"now": func(context.Context, *scheduler.Task) error {
		ran.Store(true)
		return nil
	}, "probe": ok})
	waitState(t, e.sched, submit(t, e.sched, "probe", ""), scheduler.StateSucceeded)
	require.False(t, ran.Load(), "a canceled task never runs")
	require.Equal(t, scheduler.StateCanceled, waitState(t, e.sched, pending, scheduler.StateCanceled).State)
}

func TestCancelRunning(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	e := newEnv(t, scheduler.WithObserver(rec))
	started := make(chan struct{})
	cause := make(chan error, 1)
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"long": func(ctx context.Context, _ *scheduler.Task) error {
			close(started)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return nil // pretends success: must be discarded
		},
	})
	id := submit(t, e.sched, "long", "")
	<-started
	require.NoError(t, e.sched.Cancel(context.Background(), id))
	select {
	case err := <-cause:
		require.ErrorContains(t, err, "canceled")
	case <-time.After(wait):
		t.Fatal("the running handler's context was not canceled")
	}
	got := waitState(t, e.sched, id, scheduler.StateCanceled)
	require.Empty(t, got.Result)
	require.Eventually(t, func() bool { return slices.Contains(rec.kinds(id), "aborted") },
		wait, time.Millisecond, "the interrupted attempt ends with an aborted event: %v", rec.kinds(id))
	require.Eventually(t, func() bool { n, _ := e.broker.Depth(context.Background(), "default"); return n == 0 }, wait, time.Millisecond)
}

func TestCancelRunningOnAnotherNode(t *testing.T) {
	t.Parallel()
	b, s := newMemBroker(t), memstore.New()
	nodeA := newScheduler(t, b, s)
	nodeB := newScheduler(t, b, s)

	started := make(chan struct{})
	stopped := make(chan struct{})
	startWorker(t, nodeB, map[string]scheduler.HandlerFunc{
		"long": func(ctx context.Context, _ *scheduler.Task) error {
			close(started)
			<-ctx.Done()
			close(stopped)
			return ctx.Err()
		},
	}, scheduler.WithHeartbeatInterval(20*time.Millisecond))
	id := submit(t, nodeA, "long", "")
	<-started
	require.NoError(t, nodeA.Cancel(context.Background(), id))
	select {
	case <-stopped:
	case <-time.After(wait):
		t.Fatal("the handler on the other node was not canceled by its heartbeat")
	}
	waitState(t, nodeA, id, scheduler.StateCanceled)
}

// heldNotices is a store whose heartbeats hold back the canceled tasks
// they report until release is set.
type heldNotices struct {
	scheduler.Store
	mu        sync.Mutex
	release   bool
	held      []string
	delivered []string // the IDs heartbeats returned
	after     int      // heartbeats since the first that returned IDs
}

func (s *heldNotices) Heartbeat(ctx context.Context, info scheduler.WorkerInfo, ttl time.Duration) ([]string, error) {
	ids, err := s.Store.Heartbeat(ctx, info, ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.delivered) > 0 {
		s.after++
	}
	s.held = append(s.held, ids...)
	if !s.release || len(s.held) == 0 {
		return nil, err
	}
	out := s.held
	s.held = nil
	s.delivered = append(s.delivered, out...)
	return out, err
}

// A cancel notice that reaches the worker only after the task was retried
// and started there again stops nothing: it was for the earlier run.
func TestStaleCancelNoticeSparesLaterRun(t *testing.T) {
	t.Parallel()
	b := newMemBroker(t)
	s := &heldNotices{Store: memstore.New()}
	sched := newScheduler(t, b, s)

	started := make(chan int, 2)
	finishSecond := make(chan struct{})
	secondCause := make(chan error, 1)
	var runs atomic.Int32
	startWorker(t, sched, map[string]scheduler.HandlerFunc{
		"long": func(ctx context.Context, _ *scheduler.Task) error {
			n := int(runs.Add(1))
			started <- n
			if n == 1 {
				<-ctx.Done()
				return ctx.Err()
			}
			select {
			case <-ctx.Done():
				secondCause <- context.Cause(ctx)
				return ctx.Err()
			case <-finishSecond:
				secondCause <- nil
				return nil
			}
		},
	}, scheduler.WithHeartbeatInterval(10*time.Millisecond), scheduler.WithConcurrency(1))
	id := submit(t, sched, "long", "")
	require.Equal(t, 1, <-started)
	require.NoError(t, sched.Cancel(context.Background(), id)) // stops run 1 here at once
	waitState(t, sched, id, scheduler.StateCanceled)
	require.NoError(t, sched.Retry(context.Background(), id))
	require.Equal(t, 2, <-started)

	s.mu.Lock()
	s.release = true
	s.mu.Unlock()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.Contains(s.delivered, id) && s.after > 0 // the notice was returned and handled
	}, wait, time.Millisecond, "the held cancel notice never reached the worker")
	close(finishSecond)
	require.NoError(t, <-secondCause, "the notice of run 1 canceled run 2")
	got := waitState(t, sched, id, scheduler.StateSucceeded)
	require.Equal(t, 2, got.Attempt)
}

func TestUniqueKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	first := submit(t, e.sched, "report", "", scheduler.WithUniqueKey("report:2026-11"))
	id, err := e.sched.Submit(ctx, "report", nil, scheduler.WithUniqueKey("report:2026-11"))
	require.ErrorIs(t, err, scheduler.ErrDuplicateTask)
	require.Equal(t, first, id, "the duplicate answers with the unfinished task's ID")
	var dup *scheduler.DuplicateError
	require.ErrorAs(t, err, &dup)
	require.Equal(t, first, dup.ExistingID)

	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"report": ok})
	waitState(t, e.sched, first, scheduler.StateSucceeded)
	again := submit(t, e.sched, "report", "", scheduler.WithUniqueKey("report:2026-11"))
	require.NotEqual(t, first, again, "the key is free once the task finished")
}

func TestGracefulDrainFinishesInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	started := make(chan struct{})
	release := make(chan struct{})
	r := startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"job": func(context.Context, *scheduler.Task) error {
			close(started)
			<-release
			return nil
		},
	}, scheduler.WithShutdownTimeout(wait))
	id := submit(t, e.sched, "job", "")
	<-started
	r.stop()
	close(release)
	require.NoError(t, r.wait(t), "a clean drain returns nil")
	got, err := e.sched.Status(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, scheduler.StateSucceeded, got.State, "the in-flight task finished during the drain")
}

// A draining worker starts nothing new, even with prefetched deliveries
// ready: they go back to the queue. (A select between the deliveries and
// the stop signal would pick a ready delivery half the time.)
func TestDrainStartsNoNewTask(t *testing.T) {
	t.Parallel()
	for round := range 10 {
		core, logs := observer.New(zapcore.InfoLevel)
		e := newEnv(t, scheduler.WithLogger(zap.New(core)))
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		var runs atomic.Int32
		r := startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
			"job": func(context.Context, *scheduler.Task) error {
				if runs.Add(1) == 1 {
					started <- struct{}{}
					<-release
				}
				return nil
			},
		}, scheduler.WithConcurrency(1), scheduler.WithPrefetch(20), scheduler.WithShutdownTimeout(wait))
		for range 20 {
			submit(t, e.sched, "job", "")
		}
		<-started
		r.stop()
		require.Eventually(t, func() bool { return logs.FilterMessage("worker draining").Len() > 0 }, wait, time.Millisecond)
		close(release)
		require.NoError(t, r.wait(t))
		require.Equal(t, int32(1), runs.Load(), "round %d: the draining worker started new tasks", round)
	}
}

func TestDrainTimeoutHandsBackWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	started := make(chan struct{}, 1)
	var runs atomic.Int32
	slow := func(ctx context.Context, _ *scheduler.Task) error {
		if runs.Add(1) == 1 {
			started <- struct{}{}
			<-ctx.Done() // honours cancellation
			return ctx.Err()
		}
		return nil
	}
	first := startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": slow}, scheduler.WithShutdownTimeout(20*time.Millisecond))
	id := submit(t, e.sched, "job", "")
	<-started
	require.ErrorIs(t, first.Stop(t), scheduler.ErrShutdownTimeout)
	got, err := e.sched.Status(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, scheduler.StatePending, got.State, "handed back, waiting for another worker")

	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": slow})
	done := waitState(t, e.sched, id, scheduler.StateSucceeded)
	require.Equal(t, 2, done.Attempt, "the interrupted run counts")
}

func TestWorkerStuckMidTaskLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stuck := make(chan struct{})
	defer close(stuck)
	inStuck := make(chan struct{})
	var runs atomic.Int32
	handler := func(context.Context, *scheduler.Task) error {
		if runs.Add(1) == 1 {
			close(inStuck)
			<-stuck // ignores its context: a handler gone wrong
			return nil
		}
		return nil
	}
	a := startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": handler}, scheduler.WithWorkerID("a"), scheduler.WithShutdownTimeout(10*time.Millisecond))
	id := submit(t, e.sched, "job", "")
	<-inStuck
	require.ErrorIs(t, a.Stop(t), scheduler.ErrShutdownTimeout, "Run returns even though the handler does not")

	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": handler}, scheduler.WithWorkerID("b"))
	got := waitState(t, e.sched, id, scheduler.StateSucceeded)
	require.Equal(t, "b", got.WorkerID)
	require.Equal(t, 2, got.Attempt)
}

func TestCrashedConsumerTaskIsTakenOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := submit(t, e.sched, "job", "")

	// A worker process receives the message, starts the task, and dies.
	c, err := e.broker.Consume(ctx, scheduler.DefaultQueue, 1)
	require.NoError(t, err)
	d := <-c.Deliveries()
	_, err = e.store.Start(ctx, id, scheduler.StartParams{Attempt: d.Message().Attempt, WorkerID: "dead", Now: time.Now()})
	require.NoError(t, err)
	require.NoError(t, c.Close()) // the connection drops: unsettled work goes back

	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": ok}, scheduler.WithWorkerID("alive"))
	got := waitState(t, e.sched, id, scheduler.StateSucceeded)
	require.Equal(t, "alive", got.WorkerID)
	require.Equal(t, 2, got.Attempt)

	// The dead worker's late result is refused.
	_, err = e.store.Finish(ctx, id, scheduler.FinishParams{Attempt: 1, State: scheduler.StateDead, Now: time.Now()})
	require.ErrorIs(t, err, scheduler.ErrTaskFinished)
}

// lostStartReply is a store whose first Start applies but answers as if
// the connection dropped before the reply.
type lostStartReply struct {
	scheduler.Store
	lost atomic.Bool
}

func (s *lostStartReply) Start(ctx context.Context, id string, p scheduler.StartParams) (*scheduler.Task, error) {
	t, err := s.Store.Start(ctx, id, p)
	if err == nil && s.lost.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("read: connection reset by peer")
	}
	return t, err
}

// A Start whose reply was lost and whose retry is refused, because the
// first try applied, still runs the task: its message is the only one.
func TestLostStartReplyStillRunsTask(t *testing.T) {
	t.Parallel()
	b := newMemBroker(t)
	s := &lostStartReply{Store: memstore.New()}
	sched := newScheduler(t, b, s)
	var runs atomic.Int32
	startWorker(t, sched, map[string]scheduler.HandlerFunc{"job": func(context.Context, *scheduler.Task) error {
		runs.Add(1)
		return nil
	}}, scheduler.WithWorkerID("w"))
	id := submit(t, sched, "job", "")
	got := waitState(t, sched, id, scheduler.StateSucceeded)
	require.True(t, s.lost.Load(), "the first Start's reply was lost")
	require.Equal(t, 1, got.Attempt)
	require.Equal(t, "w", got.WorkerID)
	require.EqualValues(t, 1, runs.Load())
}

// startLog is a store that records the outcome of every Start by worker.
type startLog struct {
	scheduler.Store
	mu sync.Mutex
	by map[string][]error
}

func (s *startLog) Start(ctx context.Context, id string, p scheduler.StartParams) (*scheduler.Task, error) {
	t, err := s.Store.Start(ctx, id, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[string][]error{}
	}
	s.by[p.WorkerID] = append(s.by[p.WorkerID], err)
	return t, err
}

func (s *startLog) of(worker string) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.by[worker])
}

// A second copy of a task's message, redelivered because the process that
// received it went away, does not take over the task running fine under
// the first copy: the task does not run twice at once.
func TestRedeliveredDuplicateDoesNotTakeOver(t *testing.T) {
	t.Parallel()
	b, s := newMemBroker(t), &startLog{Store: memstore.New()}
	sched := newScheduler(t, b, s)
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan string, 4)
	h := func(ctx context.Context, t *scheduler.Task) error {
		started <- t.WorkerID
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	startWorker(t, sched, map[string]scheduler.HandlerFunc{"job": h}, scheduler.WithWorkerID("x"), scheduler.WithConcurrency(1))
	id := submit(t, sched, "job", "")
	require.Equal(t, "x", <-started)

	// A duplicate of the message (as the sweep publishes for a task that
	// waited long) reaches a process that dies before settling it.
	require.NoError(t, b.Publish(ctx, scheduler.Message{TaskID: id, Queue: scheduler.DefaultQueue, Priority: scheduler.PriorityDefault}))
	c, err := b.Consume(ctx, scheduler.DefaultQueue, 1)
	require.NoError(t, err)
	d := <-c.Deliveries()
	require.Equal(t, id, d.Message().TaskID)
	require.NoError(t, c.Close())

	startWorker(t, sched, map[string]scheduler.HandlerFunc{"job": h}, scheduler.WithWorkerID("z"))
	require.Eventually(t, func() bool { return len(s.of("z")) > 0 }, wait, time.Millisecond, "worker z never got the redelivered duplicate")
	require.ErrorIs(t, s.of("z")[0], scheduler.ErrStaleAttempt, "the duplicate took the running task over")
	close(release)
	got := waitState(t, sched, id, scheduler.StateSucceeded)
	require.Equal(t, "x", got.WorkerID)
	require.Equal(t, 1, got.Attempt)
	require.Empty(t, started, "the handler ran once")
}

func TestManyWorkersShareTheWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 300
	var mu sync.Mutex
	by := map[string]int{}
	runs := map[string]int{}
	for i := range 3 {
		id := fmt.Sprint("w", i)
		startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": func(_ context.Context, task *scheduler.Task) error {
			mu.Lock()
			by[id]++
			runs[task.ID]++
			mu.Unlock()
			time.Sleep(time.Millisecond) // some work, so that every worker gets a share
			return nil
		}}, scheduler.WithWorkerID(id), scheduler.WithConcurrency(4))
	}
	var ids []string
	for range n {
		ids = append(ids, submit(t, e.sched, "job", ""))
	}
	for _, id := range ids {
		waitState(t, e.sched, id, scheduler.StateSucceeded)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, runs, n)
	for id, k := range runs {
		require.Equal(t, 1, k, "task %s ran once", id)
	}
	for w, k := range by {
		require.Positive(t, k, "worker %s got work", w)
	}
	require.Len(t, by, 3)
}

func TestRetryDeadTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var fixed atomic.Bool
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": func(context.Context, *scheduler.Task) error {
		if !fixed.Load() {
			return errors.New("downstream down")
		}
		return nil
	}})
	id := submit(t, e.sched, "job", "", scheduler.WithMaxRetries(0))
	waitState(t, e.sched, id, scheduler.StateDead)
	ctx := context.Background()
	fixed.Store(true)
	require.NoError(t, e.sched.Retry(ctx, id))
	got := waitState(t, e.sched, id, scheduler.StateSucceeded)
	require.Equal(t, 2, got.Attempt)
	require.ErrorIs(t, e.sched.Retry(ctx, id), scheduler.ErrNotRetryable)
}

func TestBadInputIsRejectedAndNothingStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, scheduler.WithMaxPayload(16))
	ctx := context.Background()
	cases := []struct {
		name, typ, field string
		payload          string
		opts             []scheduler.SubmitOption
	}{
		{"empty type", "", "type", "", nil},
		{"bad type", "send email", "type", "", nil},
		{"long type", strings.Repeat("a", scheduler.MaxTypeLen+1), "type", "", nil},
		{"priority high", "t", "priority", "", []scheduler.SubmitOption{scheduler.WithPriority(10)}},
		{"priority low", "t", "priority", "", []scheduler.SubmitOption{scheduler.WithPriority(-1)}},
		{"retries", "t", "max_retries", "", []scheduler.SubmitOption{scheduler.WithMaxRetries(-1)}},
		{"too many retries", "t", "max_retries", "", []scheduler.SubmitOption{scheduler.WithMaxRetries(scheduler.MaxRetriesLimit + 1)}},
		{"timeout", "t", "timeout", "", []scheduler.SubmitOption{scheduler.WithTimeout(-time.Second)}},
		{"delay", "t", "delay", "", []scheduler.SubmitOption{scheduler.WithDelay(-time.Second)}},
		{"queue", "t", "queue", "", []scheduler.SubmitOption{scheduler.WithQueue("a/b")}},
		{"payload", "t", "payload", strings.Repeat("x", 17), nil},
		{"unique key", "t", "unique_key", "", []scheduler.SubmitOption{scheduler.WithUniqueKey("a\nb")}},
	}
	for _, tc := range cases {
		id, err := e.sched.Submit(ctx, tc.typ, []byte(tc.payload), tc.opts...)
		require.ErrorIs(t, err, scheduler.ErrInvalidTask, tc.name)
		var ve *scheduler.ValidationError
		require.ErrorAs(t, err, &ve, tc.name)
		require.Equal(t, tc.field, ve.Field, tc.name)
		require.Empty(t, id, tc.name)
	}
	_, err := e.sched.Submit(ctx, "t", nil, nil)
	require.ErrorIs(t, err, scheduler.ErrInvalidOption)

	_, err = e.sched.SubmitMany(ctx, []scheduler.Request{{Type: "ok"}, {Type: "bad type"}})
	require.ErrorIs(t, err, scheduler.ErrInvalidTask)
	require.ErrorContains(t, err, "request 1")

	counts, err := e.sched.Counts(ctx)
	require.NoError(t, err)
	require.Empty(t, counts, "nothing stored")
	depth, err := e.sched.QueueDepth(ctx, scheduler.DefaultQueue)
	require.NoError(t, err)
	require.Zero(t, depth, "nothing published")

	for _, id := range []string{"", "../../etc/passwd", "a\x00b", "*", strings.Repeat("a", 10<<10)} {
		_, err := e.sched.Status(ctx, id)
		require.ErrorIs(t, err, scheduler.ErrInvalidTask, "%q", id)
		require.ErrorIs(t, e.sched.Cancel(ctx, id), scheduler.ErrInvalidTask)
		require.ErrorIs(t, e.sched.Retry(ctx, id), scheduler.ErrInvalidTask)
	}
	_, err = e.sched.Status(ctx, "0190b5d8-0000-7000-8000-000000000000")
	require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
	_, err = e.sched.List(ctx, scheduler.ListFilter{State: "bogus"})
	require.ErrorIs(t, err, scheduler.ErrInvalidTask)
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	b, s := membroker.New(), memstore.New()
	defer b.Close()
	for name, opts := range map[string][]scheduler.Option{
		"nil option":     {nil},
		"nil logger":     {scheduler.WithLogger(nil)},
		"payload":        {scheduler.WithMaxPayload(0)},
		"retry":          {scheduler.WithRetryPolicy(nil)},
		"retention":      {scheduler.WithRetention(-1)},
		"sweep interval": {scheduler.WithSweepInterval(0)},
		"nil observer":   {scheduler.WithObserver(nil)},
	} {
		_, err := scheduler.New(b, s, opts...)
		require.ErrorIs(t, err, scheduler.ErrInvalidOption, name)
	}
	_, err := scheduler.New(nil, s)
	require.ErrorIs(t, err, scheduler.ErrInvalidOption)
	_, err = scheduler.New(b, nil)
	require.ErrorIs(t, err, scheduler.ErrInvalidOption)

	sched, err := scheduler.New(b, s)
	require.NoError(t, err)
	defer sched.Close()
	for name, opts := range map[string][]scheduler.WorkerOption{
		"concurrency": {scheduler.WithConcurrency(0)},
		"prefetch":    {scheduler.WithPrefetch(-1)},
		"queues":      {scheduler.WithQueues()},
		"bad queue":   {scheduler.WithQueues("a b")},
		"shutdown":    {scheduler.WithShutdownTimeout(-1)},
		"heartbeat":   {scheduler.WithHeartbeatInterval(0)},
		"worker id":   {scheduler.WithWorkerID("a/b")},
		"nil":         {nil},
	} {
		_, err := sched.NewWorker(opts...)
		require.ErrorIs(t, err, scheduler.ErrInvalidOption, name)
	}
}

func TestSubmitMany(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	held := submit(t, e.sched, "job", "", scheduler.WithUniqueKey("k"))
	res, err := e.sched.SubmitMany(ctx, []scheduler.Request{
		{Type: "job", Payload: []byte(`1`), Options: []scheduler.SubmitOption{scheduler.WithPriority(9)}},
		{Type: "job", Options: []scheduler.SubmitOption{scheduler.WithUniqueKey("k")}},
		{Type: "job", Payload: []byte(`3`), Options: []scheduler.SubmitOption{scheduler.WithQueue("other")}},
	})
	require.NoError(t, err)
	require.Len(t, res, 3)
	require.NoError(t, res[0].Err)
	require.ErrorIs(t, res[1].Err, scheduler.ErrDuplicateTask)
	require.Equal(t, held, res[1].ID)
	require.NoError(t, res[2].Err)
	got, err := e.sched.Status(ctx, res[2].ID)
	require.NoError(t, err)
	require.Equal(t, "other", got.Queue)
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": ok}, scheduler.WithQueues("default", "other"))
	waitState(t, e.sched, res[0].ID, scheduler.StateSucceeded)
	waitState(t, e.sched, res[2].ID, scheduler.StateSucceeded)
}

func TestDelayedTaskWaits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var startedAt atomic.Pointer[time.Time]
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": func(context.Context, *scheduler.Task) error {
		now := time.Now()
		startedAt.Store(&now)
		return nil
	}})
	before := time.Now()
	id := submit(t, e.sched, "job", "", scheduler.WithDelay(100*time.Millisecond))
	got := waitState(t, e.sched, id, scheduler.StateSucceeded)
	require.GreaterOrEqual(t, startedAt.Load().Sub(before), 100*time.Millisecond)
	require.True(t, got.RunAt.After(before))
}

func TestPublishFailureCancelsTheTask(t *testing.T) {
	t.Parallel()
	b, s := membroker.New(), memstore.New()
	defer b.Close()
	fb := &faultyBroker{Broker: b}
	sched, err := scheduler.New(fb, s)
	require.NoError(t, err)
	defer sched.Close()
	ctx := context.Background()

	fb.set(errInjected, nil)
	id, err := sched.Submit(ctx, "job", nil)
	require.ErrorIs(t, err, errInjected)
	require.NotEmpty(t, id, "the stored task's ID comes with the error")
	got, err := sched.Status(ctx, id)
	require.NoError(t, err)
	require.Equal(t, scheduler.StateCanceled, got.State, "a task whose publish failed is not left pending")
	require.Contains(t, got.LastError, "injected fault")

	// The publish errored, but the message got through and a worker started
	// the task before Submit could cancel it: it was delivered.
	fb.set(errInjected, func() {
		page, err := s.List(ctx, scheduler.ListFilter{State: scheduler.StatePending})
		require.NoError(t, err)
		for _, x := range page.Tasks {
			_, err := s.Start(ctx, x.ID, scheduler.StartParams{WorkerID: "w", Now: time.Now()})
			require.NoError(t, err)
		}
	})
	id, err = sched.Submit(ctx, "job", nil)
	require.NoError(t, err, "a task that started was delivered")
	got, err = sched.Status(ctx, id)
	require.NoError(t, err)
	require.Equal(t, scheduler.StateRunning, got.State)
}

func TestStoreFailureSubmitsNothing(t *testing.T) {
	t.Parallel()
	b := membroker.New()
	defer b.Close()
	fs := &faultyStore{Store: memstore.New(), fail: errInjected}
	sched, err := scheduler.New(b, fs)
	require.NoError(t, err)
	defer sched.Close()
	id, err := sched.Submit(context.Background(), "job", nil)
	require.ErrorIs(t, err, errInjected)
	require.Empty(t, id)
	depth, err := b.Depth(context.Background(), scheduler.DefaultQueue)
	require.NoError(t, err)
	require.Zero(t, depth)
}

// Not parallel: the failpoint is process-wide.
func TestCrashBetweenStoreAndPublishIsRecovered(t *testing.T) {
	e := newEnv(t, scheduler.WithSweepInterval(20*time.Millisecond))
	failpoint.Enable(failpoint.SubmitAfterStore, func() { panic("crash") })
	var id string
	func() {
		defer func() { require.Equal(t, "crash", recover()) }()
		_, _ = e.sched.Submit(context.Background(), "job", []byte(`"x"`))
	}()
	failpoint.Disable(failpoint.SubmitAfterStore)
	page, err := e.sched.List(context.Background(), scheduler.ListFilter{})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1, "the task was stored before the crash")
	id = page.Tasks[0].ID
	depth, err := e.sched.QueueDepth(context.Background(), scheduler.DefaultQueue)
	require.NoError(t, err)
	require.Zero(t, depth, "and never published")

	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": ok})
	got := waitState(t, e.sched, id, scheduler.StateSucceeded)
	require.Equal(t, 1, got.Attempt)
}

func TestWorkersAreListedWhileTheyRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	r := startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"job": ok},
		scheduler.WithWorkerID("node-1"), scheduler.WithQueues("b", "a"), scheduler.WithConcurrency(3))
	require.Eventually(t, func() bool {
		ws, err := e.sched.Workers(ctx)
		return err == nil && len(ws) == 1
	}, wait, time.Millisecond)
	ws, err := e.sched.Workers(ctx)
	require.NoError(t, err)
	require.Equal(t, "node-1", ws[0].ID)
	require.Equal(t, []string{"a", "b"}, ws[0].Queues)
	require.Equal(t, 3, ws[0].Concurrency)
	require.NotZero(t, ws[0].PID)
	require.NoError(t, r.Stop(t))
	ws, err = e.sched.Workers(ctx)
	require.NoError(t, err)
	require.Empty(t, ws, "a stopped worker is removed")
}

func TestRunTwiceAndAfterClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := startWorker(t, e.sched, nil)
	require.Eventually(t, func() bool {
		ws, _ := e.sched.Workers(context.Background())
		return len(ws) == 1
	}, wait, time.Millisecond)
	require.ErrorIs(t, r.w.Run(context.Background()), scheduler.ErrAlreadyRunning)
	require.NoError(t, r.Stop(t))
	require.NoError(t, e.sched.Close())
	require.NoError(t, e.sched.Close(), "a second Close is harmless")
	_, err := e.sched.Submit(context.Background(), "job", nil)
	require.ErrorIs(t, err, scheduler.ErrClosed)
	require.ErrorIs(t, r.w.Run(context.Background()), scheduler.ErrClosed)
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.True(t, e.sched.Health(context.Background()).OK())
	require.NoError(t, e.broker.Close())
	h := e.sched.Health(context.Background())
	require.False(t, h.OK())
	require.ErrorIs(t, h.Broker, scheduler.ErrClosed)
	require.NoError(t, h.Store)

	// A closed Scheduler is not healthy, though its store still answers.
	b2 := membroker.New()
	defer b2.Close()
	sched, err := scheduler.New(b2, e.store)
	require.NoError(t, err)
	require.True(t, sched.Health(context.Background()).OK())
	require.NoError(t, sched.Close())
	h = sched.Health(context.Background())
	require.True(t, h.Closed)
	require.False(t, h.OK())
}

func TestObserverSeesDeadAndCanceled(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	e := newEnv(t, scheduler.WithObserver(rec))
	dead := submit(t, e.sched, "bad", "", scheduler.WithMaxRetries(0))
	startWorker(t, e.sched, map[string]scheduler.HandlerFunc{"bad": func(context.Context, *scheduler.Task) error { return errors.New("no") }})
	waitState(t, e.sched, dead, scheduler.StateDead)
	canceled := submit(t, e.sched, "bad", "", scheduler.WithDelay(time.Hour))
	require.NoError(t, e.sched.Cancel(context.Background(), canceled))
	require.Eventually(t, func() bool { return len(rec.kinds(dead)) == 4 }, wait, time.Millisecond)
	require.Equal(t, []string{"submitted", "started", "failed", "dead"}, rec.kinds(dead))
	require.Equal(t, []string{"submitted", "canceled"}, rec.kinds(canceled))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, ev := range rec.events {
		assert.False(t, ev.Time.IsZero())
		if ev.Kind == scheduler.EventDead {
			assert.EqualError(t, ev.Err, "no")
		}
	}
}

// lossyBroker confirms delayed messages and drops them, as a broker node
// crashing mid dead-letter hop would.
type lossyBroker struct{ scheduler.Broker }

func (l lossyBroker) Publish(ctx context.Context, msgs ...scheduler.Message) error {
	var kept []scheduler.Message
	for _, m := range msgs {
		if m.Delay == 0 {
			kept = append(kept, m)
		}
	}
	return l.Broker.Publish(ctx, kept...)
}

func TestLostDelayedMessageIsRepublished(t *testing.T) {
	t.Parallel()
	b, s := membroker.New(), memstore.New()
	defer b.Close()
	sched, err := scheduler.New(lossyBroker{b}, s, scheduler.WithSweepInterval(20*time.Millisecond), scheduler.WithRetryPolicy(fastRetry))
	require.NoError(t, err)
	defer sched.Close()
	var runs atomic.Int32
	startWorker(t, sched, map[string]scheduler.HandlerFunc{"job": func(context.Context, *scheduler.Task) error {
		if runs.Add(1) == 1 {
			return errors.New("first attempt fails; its delayed retry is lost")
		}
		return nil
	}})
	delayed := submit(t, sched, "job", "", scheduler.WithDelay(30*time.Millisecond))
	got := waitState(t, sched, delayed, scheduler.StateSucceeded)
	require.Equal(t, 2, got.Attempt, "the lost delayed message and the lost retry were both republished once overdue")
}

// gatedBroker holds every Publish until its gate opens and counts the
// calls and messages.
type gatedBroker struct {
	scheduler.Broker
	gate  chan struct{}
	calls atomic.Int32
	msgs  atomic.Int32
}

func (g *gatedBroker) Publish(ctx context.Context, msgs ...scheduler.Message) error {
	g.calls.Add(1)
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.msgs.Add(int32(len(msgs)))
	return g.Broker.Publish(ctx, msgs...)
}

// Concurrent Submit calls share store writes and publishes, and each still
// gets its own answer: one task wins a unique key, the others learn its
// ID; a call whose context ends while it waits for a batch stores nothing.
func TestConcurrentSubmitsShareBatches(t *testing.T) {
	t.Parallel()
	b, s := membroker.New(), memstore.New()
	defer b.Close()
	gb := &gatedBroker{Broker: b, gate: make(chan struct{})}
	sched, err := scheduler.New(gb, s)
	require.NoError(t, err)
	defer sched.Close()
	ctx := context.Background()

	// The first calls hold every batch slot until the gate opens.
	const holders = 8
	var wg sync.WaitGroup
	for range holders {
		wg.Go(func() {
			_, err := sched.Submit(ctx, "job", nil)
			assert.NoError(t, err)
		})
	}
	require.Eventually(t, func() bool { return gb.calls.Load() >= 1 }, wait, time.Millisecond)

	canceled, cancel := context.WithCancel(ctx)
	const n = 50
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			c := ctx
			if i == 0 {
				c = canceled
			}
			ids[i], errs[i] = sched.Submit(c, "job", nil, scheduler.WithUniqueKey("one"))
		})
	}
	cancel()
	close(gb.gate)
	wg.Wait()

	winner := ""
	for i := range n {
		if errs[i] == nil {
			require.Empty(t, winner, "only one task holds the key")
			winner = ids[i]
		}
	}
	require.NotEmpty(t, winner)
	for i := range n {
		switch {
		case errs[i] == nil:
		case errors.Is(errs[i], context.Canceled):
			require.Empty(t, ids[i])
		default:
			require.ErrorIs(t, errs[i], scheduler.ErrDuplicateTask)
			require.Equal(t, winner, ids[i])
		}
	}
	require.Less(t, gb.calls.Load(), int32(holders+n), "calls shared publishes")
	counts, err := sched.Counts(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(gb.msgs.Load()), counts[scheduler.StatePending], "every stored task was published")
}

// transientBroker is a broker that says its confirmed messages may be lost.
type transientBroker struct{ scheduler.Broker }

func (transientBroker) Transient() bool { return true }

// With a transient broker a confirmed task stays in the outbox until it
// starts, so that the sweep can publish it again after a broker restart;
// with a durable one it leaves the outbox once confirmed.
func TestTransientBrokerKeepsTasksInTheOutbox(t *testing.T) {
	t.Parallel()
	for _, transient := range []bool{false, true} {
		b, s := membroker.New(), memstore.New()
		defer b.Close()
		var br scheduler.Broker = b
		if transient {
			br = transientBroker{b}
		}
		sched, err := scheduler.New(br, s)
		require.NoError(t, err)
		ctx := context.Background()
		id, err := sched.Submit(ctx, "job", nil)
		require.NoError(t, err)
		require.NoError(t, sched.Close()) // flushes the outbox batcher
		out, err := s.Outbox(ctx, time.Now().Add(time.Hour), 10)
		require.NoError(t, err)
		if !transient {
			require.Empty(t, out, "a confirmed message's task leaves the outbox")
			continue
		}
		require.Len(t, out, 1, "the transient broker may lose the message")
		require.Equal(t, id, out[0].ID)
		_, err = s.Start(ctx, id, scheduler.StartParams{WorkerID: "w", Now: time.Now()})
		require.NoError(t, err)
		out, err = s.Outbox(ctx, time.Now().Add(time.Hour), 10)
		require.NoError(t, err)
		require.Empty(t, out, "a started task leaves the outbox")
	}
}

// losingBroker is a transient broker that confirms and then loses the
// first lose publishes of every task, as broker restarts would.
type losingBroker struct {
	scheduler.Broker
	lose int
	mu   sync.Mutex
	seen map[string]int
}

func (b *losingBroker) Transient() bool { return true }

func (b *losingBroker) Publish(ctx context.Context, msgs ...scheduler.Message) error {
	b.mu.Lock()
	var kept []scheduler.Message
	for _, m := range msgs {
		b.seen[m.TaskID]++
		if b.seen[m.TaskID] > b.lose {
			kept = append(kept, m)
		}
	}
	b.mu.Unlock()
	return b.Broker.Publish(ctx, kept...)
}

func (b *losingBroker) publishes(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[id]
}

// With a transient broker, a task whose message the sweep sent again
// stays covered: when that message is lost too, a later sweep sends it
// once more.
func TestTransientLostTwiceStillRuns(t *testing.T) {
	t.Parallel()
	mb, s := newMemBroker(t), memstore.New()
	b := &losingBroker{Broker: mb, lose: 2, seen: map[string]int{}}
	sched := newScheduler(t, b, s, scheduler.WithSweepInterval(20*time.Millisecond))
	startWorker(t, sched, map[string]scheduler.HandlerFunc{"job": ok})
	id := submit(t, sched, "job", "")
	waitState(t, sched, id, scheduler.StateSucceeded)
	require.Equal(t, 3, b.publishes(id), "submitted, then sent again twice")
}

// With a transient broker, a task handed back by a stopping worker is in
// the outbox until it starts again: a broker restart may lose its requeued
// message.
func TestTransientHandBackIsInTheOutbox(t *testing.T) {
	t.Parallel()
	mb, s := newMemBroker(t), memstore.New()
	sched := newScheduler(t, transientBroker{mb}, s)
	started := make(chan struct{})
	w := startWorker(t, sched, map[string]scheduler.HandlerFunc{"job": func(ctx context.Context, _ *scheduler.Task) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}, scheduler.WithShutdownTimeout(10*time.Millisecond))
	id := submit(t, sched, "job", "")
	<-started
	require.ErrorIs(t, w.Stop(t), scheduler.ErrShutdownTimeout)
	got := waitState(t, sched, id, scheduler.StatePending)
	out, err := s.Outbox(context.Background(), got.RunAt.Add(time.Millisecond), 10)
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Equal(t, id, out[0].ID)
}

// A cancel notice stops the canceled run even when the task was retried
// and started on another worker before the notice arrived.
func TestCancelNoticeStopsRunRetriedElsewhere(t *testing.T) {
	t.Parallel()
	b, shared := newMemBroker(t), memstore.New()
	s := &heldNotices{Store: shared}
	nodeA := newScheduler(t, b, s)
	nodeB := newScheduler(t, b, shared)

	firstStopped := make(chan error, 1)
	secondStarted := make(chan struct{})
	var runs atomic.Int32
	h := func(ctx context.Context, _ *scheduler.Task) error {
		if runs.Add(1) == 1 {
			<-ctx.Done()
			firstStopped <- context.Cause(ctx)
			return ctx.Err()
		}
		close(secondStarted)
		<-ctx.Done()
		return ctx.Err()
	}
	startWorker(t, nodeA, map[string]scheduler.HandlerFunc{"long": h}, scheduler.WithWorkerID("a"),
		scheduler.WithConcurrency(1), scheduler.WithHeartbeatInterval(10*time.Millisecond))
	id := submit(t, nodeB, "long", "")
	require.Eventually(t, func() bool { return runs.Load() == 1 }, wait, time.Millisecond)
	require.NoError(t, nodeB.Cancel(context.Background(), id)) // no worker on B: A learns it by heartbeat
	require.NoError(t, nodeB.Retry(context.Background(), id))
	startWorker(t, nodeB, map[string]scheduler.HandlerFunc{"long": h}, scheduler.WithWorkerID("b"), scheduler.WithConcurrency(1),
		scheduler.WithShutdownTimeout(10*time.Millisecond))
	<-secondStarted

	s.mu.Lock()
	s.release = true
	s.mu.Unlock()
	select {
	case cause := <-firstStopped:
		require.ErrorContains(t, cause, "task canceled")
	case <-time.After(wait):
		t.Fatal("the canceled run on worker a goes on")
	}
}

// flakyGet is a store whose next fail Gets fail.
type flakyGet struct {
	scheduler.Store
	fail atomic.Int32
}

func (s *flakyGet) Get(ctx context.Context, id string) (*scheduler.Task, error) {
	if s.fail.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded
	}
	return s.Store.Get(ctx, id)
}

// A cancel notice is acted on even when the store cannot be read right
// after the heartbeat that delivered it: it comes only once.
func TestCancelNoticeSurvivesAFailedRead(t *testing.T) {
	t.Parallel()
	b, shared := newMemBroker(t), memstore.New()
	s := &flakyGet{Store: shared}
	nodeA := newScheduler(t, b, s)
	nodeB := newScheduler(t, b, shared)
	started, stopped := make(chan struct{}), make(chan struct{})
	startWorker(t, nodeA, map[string]scheduler.HandlerFunc{"long": func(ctx context.Context, _ *scheduler.Task) error {
		close(started)
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	}}, scheduler.WithHeartbeatInterval(10*time.Millisecond))
	id := submit(t, nodeB, "long", "")
	<-started
	s.fail.Store(1)
	require.NoError(t, nodeB.Cancel(context.Background(), id))
	select {
	case <-stopped:
	case <-time.After(wait):
		t.Fatal("the canceled handler was never stopped")
	}
}
