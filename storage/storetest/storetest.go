// Package storetest is the conformance suite for scheduler.Store
// implementations. Every store of this module runs it, and a third-party
// store proves itself the same way:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) scheduler.Store {
//			return newIsolatedStore(t) // fresh, empty; cleaned up with t.Cleanup
//		})
//	}
//
// The factory is called once per subtest, and subtests run in parallel, so
// each store it returns must be isolated from the others (a fresh instance,
// or a unique key prefix on a shared server).
package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
)

// Run runs the conformance suite against the stores newStore returns.
func Run(t *testing.T, newStore func(t *testing.T) scheduler.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s scheduler.Store)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"GetUnknown", testGetUnknown},
		{"RejectInvalid", testRejectInvalid},
		{"MalformedID", testMalformedID},
		{"DuplicateID", testDuplicateID},
		{"UniqueKey", testUniqueKey},
		{"StartFence", testStartFence},
		{"Takeover", testTakeover},
		{"FinishFence", testFinishFence},
		{"TerminalIsFinal", testTerminalIsFinal},
		{"RetryingAndSnooze", testRetryingAndSnooze},
		{"HandBack", testHandBack},
		{"Cancel", testCancel},
		{"CancelRunningNotifiesWorker", testCancelRunning},
		{"CancelOnlyUnstarted", testCancelOnlyUnstarted},
		{"Retry", testRetry},
		{"RetryIsDueNow", testRetryIsDueNow},
		{"Outbox", testOutbox},
		{"PublishedFence", testPublishedFence},
		{"Republished", testRepublished},
		{"HandBackIntoTheOutbox", testHandBackIntoTheOutbox},
		{"RepeatedTakeover", testRepeatedTakeover},
		{"OldMessageCannotTakeOver", testOldMessageCannotTakeOver},
		{"DuplicateCannotTakeOver", testDuplicateCannotTakeOver},
		{"NoTakeoverAfterRetry", testNoTakeoverAfterRetry},
		{"List", testList},
		{"ListPagination", testListPagination},
		{"Counts", testCounts},
		{"Purge", testPurge},
		{"Workers", testWorkers},
		{"Claim", testClaim},
		{"ConcurrentStart", testConcurrentStart},
		{"ConcurrentFinishAndCancel", testConcurrentFinishAndCancel},
		{"Ping", testPing},
		{"PeriodicTaskFields", testPeriodicTaskFields},
		{"ConcurrentCreateSameID", testConcurrentCreateSameID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// base is a fixed point in time, so that times compare exactly after any
// encoding that keeps milliseconds.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newID(t *testing.T) string {
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return id.String()
}

func newTask(t *testing.T) *scheduler.Task {
	return &scheduler.Task{
		ID:         newID(t),
		Type:       "email.send",
		Queue:      scheduler.DefaultQueue,
		Payload:    []byte(`{"to":"a@example.com"}`),
		Priority:   scheduler.PriorityDefault,
		State:      scheduler.StatePending,
		MaxRetries: 3,
		RunAt:      base,
		CreatedAt:  base,
	}
}

func create(t *testing.T, s scheduler.Store, tasks ...*scheduler.Task) {
	t.Helper()
	errs, err := s.Create(ctxFor(t), tasks)
	require.NoError(t, err)
	require.Len(t, errs, len(tasks))
	for i, e := range errs {
		require.NoError(t, e, "task %d", i)
	}
}

func get(t *testing.T, s scheduler.Store, id string) *scheduler.Task {
	t.Helper()
	got, err := s.Get(ctxFor(t), id)
	require.NoError(t, err)
	return got
}

func start(t *testing.T, s scheduler.Store, task *scheduler.Task, worker string) *scheduler.Task {
	t.Helper()
	got, err := s.Start(ctxFor(t), task.ID, scheduler.StartParams{Attempt: task.Attempt, WorkerID: worker, Now: base.Add(time.Second)})
	require.NoError(t, err)
	return got
}

func finish(t *testing.T, s scheduler.Store, task *scheduler.Task, st scheduler.State) *scheduler.Task {
	t.Helper()
	got, err := s.Finish(ctxFor(t), task.ID, scheduler.FinishParams{Attempt: task.Attempt, State: st, Now: base.Add(2 * time.Second), RunAt: base.Add(time.Minute)})
	require.NoError(t, err)
	return got
}

// requireSameTask compares every field, times by instant.
func requireSameTask(t *testing.T, want, got *scheduler.Task) {
	t.Helper()
	for _, p := range []struct {
		name string
		w, g time.Time
	}{
		{"RunAt", want.RunAt, got.RunAt}, {"CreatedAt", want.CreatedAt, got.CreatedAt},
		{"StartedAt", want.StartedAt, got.StartedAt}, {"FinishedAt", want.FinishedAt, got.FinishedAt},
	} {
		require.True(t, p.w.Equal(p.g), "%s: want %v, got %v", p.name, p.w, p.g)
	}
	w, g := *want, *got
	w.RunAt, w.CreatedAt, w.StartedAt, w.FinishedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	g.RunAt, g.CreatedAt, g.StartedAt, g.FinishedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if len(w.Payload) == 0 && len(g.Payload) == 0 {
		w.Payload, g.Payload = nil, nil
	}
	if len(w.Result) == 0 && len(g.Result) == 0 {
		w.Result, g.Result = nil, nil
	}
	require.Equal(t, w, g)
}

func testCreateAndGet(t *testing.T, s scheduler.Store) {
	full := newTask(t)
	full.Type = "report:build.v2"
	full.Queue = "reports"
	full.Priority = scheduler.PriorityMax
	full.Timeout = 90 * time.Second
	full.UniqueKey = "report 2026-03 / ü"
	full.State = scheduler.StateScheduled
	full.RunAt = base.Add(time.Hour)

	binary := newTask(t)
	binary.Payload = []byte{0, 1, 2, 0xff, '<', '"'}
	binary.Priority = scheduler.PriorityMin
	binary.MaxRetries = 0

	spaced := newTask(t)
	spaced.Payload = []byte(`{ "html": "<b>&</b>" }`)

	empty := newTask(t)
	empty.Payload = nil

	create(t, s, full, binary, spaced, empty)
	for _, want := range []*scheduler.Task{full, binary, spaced, empty} {
		requireSameTask(t, want, get(t, s, want.ID))
	}
}

func testGetUnknown(t *testing.T, s scheduler.Store) {
	_, err := s.Get(ctxFor(t), newID(t))
	require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
	for _, op := range transitions(newID(t)) {
		_, err := op.call(ctxFor(t), s)
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound, op.name)
	}
}

type transition struct {
	name string
	call func(context.Context, scheduler.Store) (*scheduler.Task, error)
}

// transitions lists every state-changing call on id, each as the worker or
// scheduler would make it for a task at attempt 0.
func transitions(id string) []transition {
	return []transition{
		{"start", func(ctx context.Context, s scheduler.Store) (*scheduler.Task, error) {
			return s.Start(ctx, id, scheduler.StartParams{Attempt: 0, WorkerID: "w", Now: base})
		}},
		{"start redelivered", func(ctx context.Context, s scheduler.Store) (*scheduler.Task, error) {
			return s.Start(ctx, id, scheduler.StartParams{Attempt: 0, Redelivered: true, WorkerID: "w", Now: base})
		}},
		{"finish", func(ctx context.Context, s scheduler.Store) (*scheduler.Task, error) {
			return s.Finish(ctx, id, scheduler.FinishParams{Attempt: 1, State: scheduler.StateSucceeded, Now: base})
		}},
		{"cancel", func(ctx context.Context, s scheduler.Store) (*scheduler.Task, error) {
			return s.Cancel(ctx, id, scheduler.CancelParams{Now: base})
		}},
		{"retry", func(ctx context.Context, s scheduler.Store) (*scheduler.Task, error) {
			return s.Retry(ctx, id, base)
		}},
	}
}

func testRejectInvalid(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	cases := map[string]func(*scheduler.Task){
		"empty type":     func(x *scheduler.Task) { x.Type = "" },
		"bad type":       func(x *scheduler.Task) { x.Type = "a b" },
		"long type":      func(x *scheduler.Task) { x.Type = string(make([]byte, scheduler.MaxTypeLen+1)) },
		"priority":       func(x *scheduler.Task) { x.Priority = 10 },
		"negative prio":  func(x *scheduler.Task) { x.Priority = -1 },
		"retries":        func(x *scheduler.Task) { x.MaxRetries = -1 },
		"timeout":        func(x *scheduler.Task) { x.Timeout = -time.Second },
		"queue":          func(x *scheduler.Task) { x.Queue = "../etc" },
		"state":          func(x *scheduler.Task) { x.State = "bogus" },
		"running":        func(x *scheduler.Task) { x.State = scheduler.StateRunning },
		"attempt":        func(x *scheduler.Task) { x.Attempt = 2 },
		"id":             func(x *scheduler.Task) { x.ID = "a/b" },
		"empty id":       func(x *scheduler.Task) { x.ID = "" },
		"no created_at":  func(x *scheduler.Task) { x.CreatedAt = time.Time{} },
		"unique control": func(x *scheduler.Task) { x.UniqueKey = "a\x00b" },
	}
	for name, mutate := range cases {
		good, bad := newTask(t), newTask(t)
		mutate(bad)
		_, err := s.Create(ctx, []*scheduler.Task{good, bad})
		require.ErrorIs(t, err, scheduler.ErrInvalidTask, name)
		var ve *scheduler.ValidationError
		require.ErrorAs(t, err, &ve, name)
		require.NotEmpty(t, ve.Field, name)
		_, err = s.Get(ctx, good.ID)
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound, "%s: the valid task of the batch must not be stored", name)
	}
	counts, err := s.Counts(ctx)
	require.NoError(t, err)
	require.Zero(t, sum(counts), "nothing stored")
	out, err := s.Outbox(ctx, base.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, out)
}

func sum(m map[scheduler.State]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func testMalformedID(t *testing.T, s scheduler.Store) {
	for _, id := range []string{"", "../../etc/passwd", "a\x00b", "*", "task?x", string(make([]byte, 10<<10))} {
		_, err := s.Get(ctxFor(t), id)
		require.ErrorIs(t, err, scheduler.ErrInvalidTask, "%q", id)
		for _, op := range transitions(id) {
			_, err := op.call(ctxFor(t), s)
			require.ErrorIs(t, err, scheduler.ErrInvalidTask, "%s %q", op.name, id)
		}
	}
}

func testDuplicateID(t *testing.T, s scheduler.Store) {
	a := newTask(t)
	create(t, s, a)
	b := newTask(t)
	b.ID = a.ID
	b.Type = "other"
	errs, err := s.Create(ctxFor(t), []*scheduler.Task{b})
	require.NoError(t, err)
	require.ErrorIs(t, errs[0], scheduler.ErrDuplicateTask)
	require.Equal(t, "email.send", get(t, s, a.ID).Type, "an existing task is never overwritten")
}

func testUniqueKey(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	first := newTask(t)
	first.UniqueKey = "invoice-42"
	other := newTask(t)
	other.UniqueKey = "invoice-43"
	create(t, s, first, other)

	dup, dup2, free := newTask(t), newTask(t), newTask(t)
	dup.UniqueKey, dup2.UniqueKey = "invoice-42", "invoice-44"
	twin := newTask(t)
	twin.UniqueKey = "invoice-44"
	errs, err := s.Create(ctx, []*scheduler.Task{dup, free, dup2, twin})
	require.NoError(t, err)
	var de *scheduler.DuplicateError
	require.ErrorAs(t, errs[0], &de)
	require.ErrorIs(t, errs[0], scheduler.ErrDuplicateTask)
	require.Equal(t, first.ID, de.ExistingID)
	require.NoError(t, errs[1])
	require.NoError(t, errs[2])
	require.ErrorAs(t, errs[3], &de, "the second task with one key in a batch is a duplicate")
	require.Equal(t, dup2.ID, de.ExistingID)
	_, err = s.Get(ctx, dup.ID)
	require.ErrorIs(t, err, scheduler.ErrTaskNotFound)

	// Released when the holder succeeds, is canceled, or dies.
	running := start(t, s, first, "w1")
	finish(t, s, running, scheduler.StateSucceeded)
	again := newTask(t)
	again.UniqueKey = "invoice-42"
	create(t, s, again)

	_, err = s.Cancel(ctx, again.ID, scheduler.CancelParams{Now: base})
	require.NoError(t, err)
	third := newTask(t)
	third.UniqueKey = "invoice-42"
	create(t, s, third)
	finish(t, s, start(t, s, third, "w1"), scheduler.StateDead)
	fourth := newTask(t)
	fourth.UniqueKey = "invoice-42"
	create(t, s, fourth)

	// Not released by a retry or a hand-back.
	r := start(t, s, fourth, "w1")
	finish(t, s, r, scheduler.StateRetrying)
	fifth := newTask(t)
	fifth.UniqueKey = "invoice-42"
	errs, err = s.Create(ctx, []*scheduler.Task{fifth})
	require.NoError(t, err)
	require.ErrorIs(t, errs[0], scheduler.ErrDuplicateTask)
}

func testStartFence(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	create(t, s, task)
	got, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, WorkerID: "w1", Now: base.Add(time.Second)})
	require.NoError(t, err)
	require.Equal(t, scheduler.StateRunning, got.State)
	require.Equal(t, 1, got.Attempt)
	require.Equal(t, "w1", got.WorkerID)
	require.True(t, got.StartedAt.Equal(base.Add(time.Second)))
	require.Equal(t, task.Payload, got.Payload, "Start returns what the worker needs")
	requireSameTask(t, got, get(t, s, task.ID))

	// A duplicate of the same message (not redelivered) is stale.
	_, err = s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, WorkerID: "w2", Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt)
	// So is a message from the future or the past.
	_, err = s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 5, Redelivered: true, WorkerID: "w2", Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt)
	require.Equal(t, "w1", get(t, s, task.ID).WorkerID, "a refused start changes nothing")
}

func testTakeover(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	create(t, s, task)
	first := start(t, s, task, "w1")

	// The first worker lost its message: it is redelivered to w2.
	second, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, WorkerID: "w2", Now: base.Add(3 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, 2, second.Attempt)
	require.Equal(t, "w2", second.WorkerID)

	// The first worker's late result is refused.
	_, err = s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: first.Attempt, State: scheduler.StateSucceeded, Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt)
	// A duplicate of the message that was not redelivered does not.
	_, err = s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, WorkerID: "w3", Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt)

	done := finish(t, s, second, scheduler.StateSucceeded)
	require.Equal(t, scheduler.StateSucceeded, done.State)
	require.Equal(t, 2, done.Attempt, "the attempt count shows the task ran twice")
}

func testFinishFence(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	create(t, s, task)
	_, err := s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: 0, State: scheduler.StateSucceeded, Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "finishing a task that is not running")

	r := start(t, s, task, "w1")
	_, err = s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: r.Attempt + 1, State: scheduler.StateSucceeded, Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt)
	_, err = s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: r.Attempt, State: scheduler.StateRunning, Now: base})
	require.ErrorIs(t, err, scheduler.ErrInvalidTask, "running is not an outcome")

	got, err := s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: r.Attempt, State: scheduler.StateSucceeded, Result: []byte(`{"ok":true}`), Now: base.Add(5 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, scheduler.StateSucceeded, got.State)
	require.Equal(t, `{"ok":true}`, string(got.Result))
	require.True(t, got.FinishedAt.Equal(base.Add(5*time.Second)))
	requireSameTask(t, got, get(t, s, task.ID))
}

func testTerminalIsFinal(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	for _, final := range []scheduler.State{scheduler.StateSucceeded, scheduler.StateDead, scheduler.StateCanceled} {
		task := newTask(t)
		create(t, s, task)
		r := start(t, s, task, "w1")
		if final == scheduler.StateCanceled {
			_, err := s.Cancel(ctx, task.ID, scheduler.CancelParams{Now: base})
			require.NoError(t, err)
		} else {
			finish(t, s, r, final)
		}
		before := get(t, s, task.ID)
		for _, p := range []scheduler.StartParams{{Attempt: 0}, {Attempt: 0, Redelivered: true}, {Attempt: 1}, {Attempt: 1, Redelivered: true}} {
			p.WorkerID, p.Now = "w2", base
			_, err := s.Start(ctx, task.ID, p)
			require.ErrorIs(t, err, scheduler.ErrTaskFinished, "%s: start %+v", final, p)
		}
		for _, st := range []scheduler.State{scheduler.StateSucceeded, scheduler.StateDead, scheduler.StateRetrying, scheduler.StatePending} {
			_, err := s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: 1, State: st, Now: base})
			require.ErrorIs(t, err, scheduler.ErrTaskFinished, "%s: finish as %s", final, st)
		}
		_, err := s.Cancel(ctx, task.ID, scheduler.CancelParams{Now: base})
		require.ErrorIs(t, err, scheduler.ErrTaskFinished)
		requireSameTask(t, before, get(t, s, task.ID))
	}
}

func testRetryingAndSnooze(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	create(t, s, task)
	published(t, s, task)
	r := start(t, s, task, "w1")
	runAt := base.Add(time.Minute)
	got, err := s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: r.Attempt, State: scheduler.StateRetrying, Error: "boom", RunAt: runAt, Now: base.Add(2 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, scheduler.StateRetrying, got.State)
	require.Equal(t, "boom", got.LastError)
	require.True(t, got.RunAt.Equal(runAt))
	require.Equal(t, []string{task.ID}, outboxIDs(t, s, base.Add(time.Hour)), "a retry needs a message")

	// The retry message carries attempt 1.
	_, err = s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, WorkerID: "w2", Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "the original message, redelivered, is stale")
	r2 := start(t, s, got, "w2")
	require.Equal(t, 2, r2.Attempt)
	require.Equal(t, "boom", r2.LastError, "the last error stays until a new outcome")

	// A snooze reschedules without using up the budget.
	snoozed, err := s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: r2.Attempt, State: scheduler.StateScheduled, RunAt: runAt, AddRetries: 1, Now: base})
	require.NoError(t, err)
	require.Equal(t, scheduler.StateScheduled, snoozed.State)
	require.Equal(t, task.MaxRetries+1, snoozed.MaxRetries)
	r3 := start(t, s, snoozed, "w3")
	require.Equal(t, 3, r3.Attempt)
}

func outboxIDs(t *testing.T, s scheduler.Store, before time.Time) []string {
	t.Helper()
	out, err := s.Outbox(ctxFor(t), before, 1000)
	require.NoError(t, err)
	return sortedIDs(out...)
}

func testHandBack(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	create(t, s, task)
	r := start(t, s, task, "w1")
	back := finish(t, s, r, scheduler.StatePending)
	require.Equal(t, scheduler.StatePending, back.State)
	require.Equal(t, 1, back.Attempt)

	// The requeued message comes back redelivered with its old attempt.
	_, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, WorkerID: "w2", Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "a copy that was not redelivered is a duplicate")
	again, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, WorkerID: "w2", Now: base})
	require.NoError(t, err)
	require.Equal(t, 2, again.Attempt)
}

func testCancel(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	pending, scheduled, retrying := newTask(t), newTask(t), newTask(t)
	scheduled.State = scheduler.StateScheduled
	create(t, s, pending, scheduled, retrying)
	finish(t, s, start(t, s, retrying, "w1"), scheduler.StateRetrying)
	for _, task := range []*scheduler.Task{pending, scheduled, retrying} {
		got, err := s.Cancel(ctx, task.ID, scheduler.CancelParams{Reason: "not needed", Now: base.Add(time.Minute)})
		require.NoError(t, err)
		require.Equal(t, scheduler.StateCanceled, got.State)
		require.Equal(t, "not needed", got.LastError)
		require.True(t, got.FinishedAt.Equal(base.Add(time.Minute)))
		_, err = s.Start(ctx, task.ID, scheduler.StartParams{Attempt: got.Attempt, WorkerID: "w2", Now: base})
		require.ErrorIs(t, err, scheduler.ErrTaskFinished, "a canceled task never starts")
	}
	require.Empty(t, outboxIDs(t, s, base.Add(time.Hour)), "a canceled task needs no message")
}

func testCancelRunning(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	a, b := newTask(t), newTask(t)
	create(t, s, a, b)
	ra := start(t, s, a, "w1")
	start(t, s, b, "w2")
	canceled, err := s.Cancel(ctx, a.ID, scheduler.CancelParams{Now: base})
	require.NoError(t, err)
	require.Equal(t, "w1", canceled.WorkerID, "the caller learns which worker runs it")

	ids, err := s.Heartbeat(ctx, scheduler.WorkerInfo{ID: "w2"}, time.Minute)
	require.NoError(t, err)
	require.Empty(t, ids, "w2's tasks were not canceled")
	ids, err = s.Heartbeat(ctx, scheduler.WorkerInfo{ID: "w1"}, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []string{a.ID}, ids)
	ids, err = s.Heartbeat(ctx, scheduler.WorkerInfo{ID: "w1"}, time.Minute)
	require.NoError(t, err)
	require.Empty(t, ids, "a cancellation is reported once")

	_, err = s.Finish(ctx, a.ID, scheduler.FinishParams{Attempt: ra.Attempt, State: scheduler.StateSucceeded, Now: base})
	require.ErrorIs(t, err, scheduler.ErrTaskFinished, "the canceled handler's result is refused")
}

func testCancelOnlyUnstarted(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	a, b := newTask(t), newTask(t)
	create(t, s, a, b)
	start(t, s, b, "w1")
	got, err := s.Cancel(ctx, a.ID, scheduler.CancelParams{OnlyUnstarted: true, Reason: "publish failed", Now: base})
	require.NoError(t, err)
	require.Equal(t, scheduler.StateCanceled, got.State)
	_, err = s.Cancel(ctx, b.ID, scheduler.CancelParams{OnlyUnstarted: true, Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt)
	require.Equal(t, scheduler.StateRunning, get(t, s, b.ID).State)
}

func testRetry(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	task.MaxRetries = 1
	task.UniqueKey = "once"
	create(t, s, task)
	published(t, s, task)
	r := start(t, s, task, "w1")
	_, err := s.Retry(ctx, task.ID, base)
	require.ErrorIs(t, err, scheduler.ErrNotRetryable, "running")
	dead, err := s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: r.Attempt, State: scheduler.StateDead, Error: "bad", Now: base})
	require.NoError(t, err)

	got, err := s.Retry(ctx, task.ID, base.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, scheduler.StatePending, got.State)
	require.Equal(t, dead.Attempt, got.Attempt, "attempts keep counting")
	require.Equal(t, 1+dead.Attempt, got.MaxRetries, "a fresh budget")
	require.True(t, got.FinishedAt.IsZero())
	require.Equal(t, []string{task.ID}, outboxIDs(t, s, base.Add(2*time.Hour)))
	_, err = s.Retry(ctx, task.ID, base)
	require.ErrorIs(t, err, scheduler.ErrNotRetryable, "pending")

	r2 := start(t, s, got, "w2")
	require.Equal(t, 2, r2.Attempt)
	c, err := s.Cancel(ctx, task.ID, scheduler.CancelParams{Now: base})
	require.NoError(t, err)
	got, err = s.Retry(ctx, c.ID, base)
	require.NoError(t, err, "canceled tasks can be retried too")
	require.Equal(t, scheduler.StatePending, got.State)
}

// testRetryIsDueNow checks that Retry makes a task due at the retry time
// whatever its RunAt was: a task scheduled a day ahead, canceled and then
// retried, runs at once, not the next day.
func testRetryIsDueNow(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	task.State, task.RunAt = scheduler.StateScheduled, base.Add(24*time.Hour)
	create(t, s, task)
	_, err := s.Cancel(ctx, task.ID, scheduler.CancelParams{Reason: "not needed", Now: base.Add(time.Minute)})
	require.NoError(t, err)
	at := base.Add(2 * time.Minute)
	got, err := s.Retry(ctx, task.ID, at)
	require.NoError(t, err)

	want := *task
	want.State, want.RunAt, want.LastError = scheduler.StatePending, at, "not needed"
	requireSameTask(t, &want, got)
	requireSameTask(t, &want, get(t, s, task.ID))
	require.Empty(t, outboxIDs(t, s, at), "not due before the retry time")
	require.Equal(t, []string{task.ID}, outboxIDs(t, s, at.Add(time.Millisecond)), "due at the retry time")
}

// published reports the tasks' messages (at their current attempt)
// confirmed.
func published(t *testing.T, s scheduler.Store, tasks ...*scheduler.Task) {
	t.Helper()
	var msgs []scheduler.Message
	for _, x := range tasks {
		msgs = append(msgs, scheduler.Message{TaskID: x.ID, Attempt: x.Attempt, Queue: x.Queue, Priority: x.Priority})
	}
	require.NoError(t, s.Published(ctxFor(t), msgs...))
}

func testOutbox(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	early, late, started, confirmed := newTask(t), newTask(t), newTask(t), newTask(t)
	late.State, late.RunAt = scheduler.StateScheduled, base.Add(time.Minute)
	create(t, s, early, late, started, confirmed)
	require.Equal(t, sortedIDs(early, started, confirmed), outboxIDs(t, s, base.Add(time.Second)), "due by their RunAt")
	published(t, s, confirmed)
	require.NoError(t, s.Published(ctx, scheduler.Message{TaskID: newID(t)}), "unknown tasks are ignored")
	start(t, s, started, "w1")
	require.Equal(t, sortedIDs(early), outboxIDs(t, s, base.Add(time.Second)))
	require.Equal(t, sortedIDs(early, late), outboxIDs(t, s, base.Add(time.Hour)))

	out, err := s.Outbox(ctx, base.Add(time.Hour), 1)
	require.NoError(t, err)
	require.Len(t, out, 1, "limit")
	require.Equal(t, early.ID, out[0].ID, "earliest due first")
	requireSameTask(t, early, out[0])
}

func testPublishedFence(t *testing.T, s scheduler.Store) {
	task := newTask(t)
	create(t, s, task)
	stale := *task // the creation message, confirmed late
	r := start(t, s, task, "w1")
	retrying := finish(t, s, r, scheduler.StateRetrying) // due at base+1m
	require.Equal(t, []string{task.ID}, outboxIDs(t, s, base.Add(time.Hour)))
	published(t, s, &stale)
	require.Equal(t, []string{task.ID}, outboxIDs(t, s, base.Add(time.Hour)), "a late confirmation of attempt 0 keeps the retry's entry")
	require.Empty(t, outboxIDs(t, s, base.Add(time.Minute)), "the retry is due at its RunAt")
	published(t, s, retrying)
	require.Empty(t, outboxIDs(t, s, base.Add(time.Hour)))
}

func testRepublished(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task, started := newTask(t), newTask(t)
	create(t, s, task, started)
	start(t, s, started, "w1")
	later := base.Add(time.Hour)
	require.NoError(t, s.Republished(ctx, later, scheduler.Message{TaskID: task.ID, Attempt: 1}))
	require.Equal(t, []string{task.ID}, outboxIDs(t, s, base.Add(time.Second)), "a message of another attempt moves nothing")
	require.NoError(t, s.Republished(ctx, later,
		scheduler.Message{TaskID: task.ID}, scheduler.Message{TaskID: started.ID}, scheduler.Message{TaskID: newID(t)}))
	require.Empty(t, outboxIDs(t, s, base.Add(time.Second)), "due again later")
	require.Equal(t, []string{task.ID}, outboxIDs(t, s, later.Add(time.Millisecond)), "still in the outbox; a started task is not put back")
	requireSameTask(t, task, get(t, s, task.ID))
}

func testHandBackIntoTheOutbox(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	plain, covered := newTask(t), newTask(t)
	create(t, s, plain, covered)
	published(t, s, plain, covered)
	finish(t, s, start(t, s, plain, "w1"), scheduler.StatePending)
	r := start(t, s, covered, "w1")
	at := base.Add(5 * time.Second)
	got, err := s.Finish(ctx, covered.ID, scheduler.FinishParams{Attempt: r.Attempt, State: scheduler.StatePending, RunAt: at, Now: at})
	require.NoError(t, err)
	require.True(t, got.RunAt.Equal(at), "RunAt %s", got.RunAt)
	require.Equal(t, []string{covered.ID}, outboxIDs(t, s, at.Add(time.Millisecond)), "only the one handed back with a RunAt")
	require.Empty(t, outboxIDs(t, s, at))
}

func testRepeatedTakeover(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	create(t, s, task)
	holder := start(t, s, task, "w1")
	for i, w := range []string{"w2", "w3", "w4"} {
		got, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, WorkerID: w, Now: base})
		require.NoError(t, err, "redelivery %d of the same message takes over", i+1)
		require.Equal(t, holder.Attempt+1, got.Attempt)
		_, err = s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: holder.Attempt, State: scheduler.StateSucceeded, Now: base})
		require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "the previous holder is fenced out")
		holder = got
	}
	done := finish(t, s, holder, scheduler.StateSucceeded)
	require.Equal(t, 4, done.Attempt)
}

func testOldMessageCannotTakeOver(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	create(t, s, task)
	r := start(t, s, task, "w1")
	retrying := finish(t, s, r, scheduler.StateRetrying)
	second := start(t, s, retrying, "w2") // driven by the retry message (attempt 1)
	_, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, WorkerID: "w3", Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "the first message, redelivered late, does not take over the retry's run")
	got, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 1, Redelivered: true, WorkerID: "w3", Now: base})
	require.NoError(t, err, "the retry message, redelivered, does")
	require.Equal(t, second.Attempt+1, got.Attempt)
}

// A message of a task's earlier life, redelivered after the task was
// retried, does not take the retried task over: the Retry's own message
// starts it.
func testNoTakeoverAfterRetry(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	create(t, s, task)
	_, err := s.Start(ctx, task.ID, scheduler.StartParams{MessageID: "m1", WorkerID: "w1", Now: base})
	require.NoError(t, err)
	_, err = s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: 1, State: scheduler.StateDead, Error: "boom", Now: base})
	require.NoError(t, err)
	retried, err := s.Retry(ctx, task.ID, base.Add(time.Minute))
	require.NoError(t, err)
	for _, id := range []string{"m1", "m2", ""} {
		_, err = s.Start(ctx, task.ID, scheduler.StartParams{Redelivered: true, MessageID: id, WorkerID: "w2", Now: base})
		require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "an attempt-0 copy %q", id)
	}
	got, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: retried.Attempt, MessageID: "m3", WorkerID: "w3", Now: base})
	require.NoError(t, err)
	require.Equal(t, "w3", got.WorkerID)
}

func testDuplicateCannotTakeOver(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	create(t, s, task)
	first, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, MessageID: "m1", WorkerID: "w1", Now: base})
	require.NoError(t, err)
	// A second copy of the message (the sweep published it again, say),
	// redelivered because its consumer went away, finds the task running
	// fine under the first copy.
	_, err = s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, MessageID: "m2", WorkerID: "w2", Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "a redelivered duplicate does not take over")
	require.Equal(t, "w1", get(t, s, task.ID).WorkerID)

	// The first copy, redelivered, does; and then only it again.
	second, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, MessageID: "m1", WorkerID: "w3", Now: base})
	require.NoError(t, err)
	require.Equal(t, first.Attempt+1, second.Attempt)
	_, err = s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, MessageID: "m2", WorkerID: "w2", Now: base})
	require.ErrorIs(t, err, scheduler.ErrStaleAttempt)
	// A message whose broker gives no ID is matched by its attempt alone.
	third, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, Redelivered: true, WorkerID: "w4", Now: base})
	require.NoError(t, err)
	require.Equal(t, second.Attempt+1, third.Attempt)
}

func sortedIDs(ts ...*scheduler.Task) []string {
	var ids []string
	for _, t := range ts {
		ids = append(ids, t.ID)
	}
	slices.Sort(ids)
	return ids
}

func testList(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	var all []*scheduler.Task
	for i := range 12 {
		task := newTask(t)
		task.Type = []string{"a", "b", "c"}[i%3]
		task.Queue = []string{"q1", "q2"}[i%2]
		all = append(all, task)
	}
	create(t, s, all...)
	finish(t, s, start(t, s, all[0], "w"), scheduler.StateSucceeded)
	start(t, s, all[1], "w")

	check := func(f scheduler.ListFilter, want func(*scheduler.Task, int) bool) {
		t.Helper()
		var ids []string
		for i := len(all) - 1; i >= 0; i-- {
			if want(all[i], i) {
				ids = append(ids, all[i].ID)
			}
		}
		require.Equal(t, ids, listAll(t, s, f), "%+v", f)
	}
	check(scheduler.ListFilter{}, func(*scheduler.Task, int) bool { return true })
	check(scheduler.ListFilter{Type: "b"}, func(x *scheduler.Task, _ int) bool { return x.Type == "b" })
	check(scheduler.ListFilter{Queue: "q2"}, func(x *scheduler.Task, _ int) bool { return x.Queue == "q2" })
	check(scheduler.ListFilter{Type: "a", Queue: "q1"}, func(x *scheduler.Task, _ int) bool { return x.Type == "a" && x.Queue == "q1" })
	check(scheduler.ListFilter{State: scheduler.StateSucceeded}, func(_ *scheduler.Task, i int) bool { return i == 0 })
	check(scheduler.ListFilter{State: scheduler.StateRunning, Queue: "q2"}, func(_ *scheduler.Task, i int) bool { return i == 1 })
	check(scheduler.ListFilter{State: scheduler.StatePending, Type: "a"}, func(x *scheduler.Task, i int) bool { return i > 1 && x.Type == "a" })
	check(scheduler.ListFilter{Type: "none"}, func(*scheduler.Task, int) bool { return false })

	page, err := s.List(ctx, scheduler.ListFilter{State: scheduler.StateSucceeded})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	requireSameTask(t, get(t, s, all[0].ID), page.Tasks[0])

	_, err = s.List(ctx, scheduler.ListFilter{Cursor: "../x"})
	require.Error(t, err, "a malformed cursor is rejected")
}

// listAll pages through f with a small page size and returns the IDs in order.
func listAll(t *testing.T, s scheduler.Store, f scheduler.ListFilter) []string {
	t.Helper()
	f.Limit = 5
	var ids []string
	for range 100 {
		page, err := s.List(ctxFor(t), f)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Tasks), 5)
		for _, x := range page.Tasks {
			ids = append(ids, x.ID)
		}
		if page.Next == "" {
			return ids
		}
		f.Cursor = page.Next
	}
	t.Fatal("pagination does not end")
	return nil
}

func testListPagination(t *testing.T, s scheduler.Store) {
	var all []*scheduler.Task
	for range 23 {
		all = append(all, newTask(t))
	}
	create(t, s, all...)
	got := listAll(t, s, scheduler.ListFilter{})
	require.Len(t, got, 23, "every task exactly once")
	want := sortedIDs(all...)
	slices.Reverse(want)
	require.Equal(t, want, got, "newest first")

	// Tasks created during pagination do not disturb the pages already read.
	page, err := s.List(ctxFor(t), scheduler.ListFilter{Limit: 10})
	require.NoError(t, err)
	create(t, s, newTask(t))
	page2, err := s.List(ctxFor(t), scheduler.ListFilter{Limit: 100, Cursor: page.Next})
	require.NoError(t, err)
	require.Len(t, page2.Tasks, 13)
}

func testCounts(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	var ts []*scheduler.Task
	for range 6 {
		ts = append(ts, newTask(t))
	}
	ts[5].State = scheduler.StateScheduled
	create(t, s, ts...)
	finish(t, s, start(t, s, ts[0], "w"), scheduler.StateSucceeded)
	finish(t, s, start(t, s, ts[1], "w"), scheduler.StateDead)
	finish(t, s, start(t, s, ts[2], "w"), scheduler.StateRetrying)
	start(t, s, ts[3], "w")
	_, err := s.Cancel(ctx, ts[4].ID, scheduler.CancelParams{Now: base})
	require.NoError(t, err)
	counts, err := s.Counts(ctx)
	require.NoError(t, err)
	want := map[scheduler.State]int64{
		scheduler.StateSucceeded: 1, scheduler.StateDead: 1, scheduler.StateRetrying: 1,
		scheduler.StateRunning: 1, scheduler.StateCanceled: 1, scheduler.StateScheduled: 1,
	}
	for _, st := range scheduler.States {
		assert.Equal(t, want[st], counts[st], "%s", st)
	}
}

func testPurge(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	old, recent, dead, running, pending := newTask(t), newTask(t), newTask(t), newTask(t), newTask(t)
	old.UniqueKey = "k-old"
	create(t, s, old, recent, dead, running, pending)
	r := start(t, s, old, "w")
	_, err := s.Finish(ctx, old.ID, scheduler.FinishParams{Attempt: r.Attempt, State: scheduler.StateSucceeded, Now: base})
	require.NoError(t, err)
	r = start(t, s, dead, "w")
	_, err = s.Finish(ctx, dead.ID, scheduler.FinishParams{Attempt: r.Attempt, State: scheduler.StateDead, Now: base.Add(time.Second)})
	require.NoError(t, err)
	r = start(t, s, recent, "w")
	_, err = s.Finish(ctx, recent.ID, scheduler.FinishParams{Attempt: r.Attempt, State: scheduler.StateSucceeded, Now: base.Add(time.Hour)})
	require.NoError(t, err)
	start(t, s, running, "w")

	n, err := s.Purge(ctx, base.Add(time.Minute), 1)
	require.NoError(t, err)
	require.Equal(t, 1, n, "limit")
	n, err = s.Purge(ctx, base.Add(time.Minute), 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	for _, gone := range []*scheduler.Task{old, dead} {
		_, err := s.Get(ctx, gone.ID)
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
	}
	for _, kept := range []*scheduler.Task{recent, running, pending} {
		get(t, s, kept.ID)
	}
	require.Equal(t, sortedIDs(recent, running, pending), sortedIDs(tasksOf(t, s, scheduler.ListFilter{})...), "no index entry outlives its record")
	require.Empty(t, tasksOf(t, s, scheduler.ListFilter{State: scheduler.StateDead}))
	counts, err := s.Counts(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(3), sum(counts))
	n, err = s.Purge(ctx, base.Add(time.Minute), 100)
	require.NoError(t, err)
	require.Zero(t, n)
}

func tasksOf(t *testing.T, s scheduler.Store, f scheduler.ListFilter) []*scheduler.Task {
	t.Helper()
	f.Limit = scheduler.MaxListLimit
	page, err := s.List(ctxFor(t), f)
	require.NoError(t, err)
	return page.Tasks
}

func testWorkers(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	w1 := scheduler.WorkerInfo{ID: "w1", Host: "h1", PID: 10, Queues: []string{"a", "b"}, Concurrency: 4, InFlight: 2, StartedAt: base, LastBeat: base.Add(time.Second)}
	_, err := s.Heartbeat(ctx, w1, time.Minute)
	require.NoError(t, err)
	_, err = s.Heartbeat(ctx, scheduler.WorkerInfo{ID: "w2", StartedAt: base, LastBeat: base}, 300*time.Millisecond)
	require.NoError(t, err)
	ws, err := s.Workers(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 2)
	got := ws[slices.IndexFunc(ws, func(w scheduler.WorkerInfo) bool { return w.ID == "w1" })]
	require.True(t, got.LastBeat.Equal(w1.LastBeat))
	require.True(t, got.StartedAt.Equal(w1.StartedAt))
	got.LastBeat, got.StartedAt = w1.LastBeat, w1.StartedAt
	require.Equal(t, w1, got)

	require.Eventually(t, func() bool {
		ws, err := s.Workers(ctx)
		return err == nil && len(ws) == 1 && ws[0].ID == "w1"
	}, 10*time.Second, 20*time.Millisecond, "a worker whose heartbeat expired is gone")
	require.NoError(t, s.RemoveWorker(ctx, "w1"))
	ws, err = s.Workers(ctx)
	require.NoError(t, err)
	require.Empty(t, ws)
}

func testClaim(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	var won atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			ok, err := s.Claim(ctx, "sweep:1", time.Minute)
			assert.NoError(t, err)
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int32(1), won.Load(), "exactly one claimant wins")
	ok, err := s.Claim(ctx, "sweep:1", time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "taken until the ttl ends")
	ok, err = s.Claim(ctx, "sweep:2", 300*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok, "keys are independent")
	require.Eventually(t, func() bool {
		ok, err := s.Claim(ctx, "sweep:2", time.Minute)
		return err == nil && ok
	}, 10*time.Second, 20*time.Millisecond, "claimable again after the ttl")
}

func testConcurrentStart(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	const tasks, racers = 20, 8
	var ts []*scheduler.Task
	for range tasks {
		ts = append(ts, newTask(t))
	}
	create(t, s, ts...)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for _, task := range ts {
		for r := range racers {
			wg.Go(func() {
				_, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 0, WorkerID: fmt.Sprint("w", r), Now: base})
				if err == nil {
					wins.Add(1)
					return
				}
				assert.ErrorIs(t, err, scheduler.ErrStaleAttempt)
			})
		}
	}
	wg.Wait()
	require.Equal(t, int32(tasks), wins.Load(), "one start per message")
	for _, task := range ts {
		require.Equal(t, 1, get(t, s, task.ID).Attempt)
	}
}

func testConcurrentFinishAndCancel(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	const n = 30
	var ts []*scheduler.Task
	for range n {
		ts = append(ts, newTask(t))
	}
	create(t, s, ts...)
	var finished, canceled [n]atomic.Bool
	var wg sync.WaitGroup
	for i, task := range ts {
		r := start(t, s, task, "w")
		wg.Go(func() {
			_, err := s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: r.Attempt, State: scheduler.StateSucceeded, Now: base})
			finished[i].Store(err == nil)
			if err != nil {
				assert.ErrorIs(t, err, scheduler.ErrTaskFinished)
			}
		})
		wg.Go(func() {
			_, err := s.Cancel(ctx, task.ID, scheduler.CancelParams{Now: base})
			canceled[i].Store(err == nil)
			if err != nil {
				assert.ErrorIs(t, err, scheduler.ErrTaskFinished)
			}
		})
	}
	wg.Wait()
	for i := range ts {
		require.NotEqual(t, finished[i].Load(), canceled[i].Load(), "task %d: exactly one of finish and cancel wins", i)
	}
	counts, err := s.Counts(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(n), counts[scheduler.StateSucceeded]+counts[scheduler.StateCanceled])
	require.Zero(t, counts[scheduler.StateRunning])
}

func testPing(t *testing.T, s scheduler.Store) {
	require.NoError(t, s.Ping(ctxFor(t)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.Ping(ctx), context.Canceled, "a canceled context fails")
}

// testPeriodicTaskFields checks that a periodic task's Schedule and Tick
// survive every transition.
func testPeriodicTaskFields(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	task := newTask(t)
	task.Schedule = "nightly:report.v2"
	task.Tick = base.Add(-time.Hour)
	create(t, s, task)
	requireSameTask(t, task, get(t, s, task.ID))

	check := func(got *scheduler.Task, step string) {
		t.Helper()
		require.Equal(t, task.Schedule, got.Schedule, step)
		require.True(t, task.Tick.Equal(got.Tick), "%s: tick %v", step, got.Tick)
	}
	r := start(t, s, task, "w1")
	check(r, "start")
	check(finish(t, s, r, scheduler.StateRetrying), "finish retrying")
	r2, err := s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 1, WorkerID: "w1", Now: base})
	require.NoError(t, err)
	check(finish(t, s, r2, scheduler.StateDead), "finish dead")
	retried, err := s.Retry(ctx, task.ID, base)
	require.NoError(t, err)
	check(retried, "retry")
	canceled, err := s.Cancel(ctx, task.ID, scheduler.CancelParams{Now: base})
	require.NoError(t, err)
	check(canceled, "cancel")
	check(get(t, s, task.ID), "get")
	page, err := s.List(ctx, scheduler.ListFilter{})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	check(page.Tasks[0], "list")

	plain := newTask(t)
	create(t, s, plain)
	got := get(t, s, plain.ID)
	require.Empty(t, got.Schedule)
	require.True(t, got.Tick.IsZero(), "a task submitted directly has no tick")

	bad := newTask(t)
	bad.Schedule = "a/b"
	_, err = s.Create(ctx, []*scheduler.Task{bad})
	require.ErrorIs(t, err, scheduler.ErrInvalidTask)
}

// testConcurrentCreateSameID checks what periodic tasks rely on: of any
// number of concurrent Creates of one ID, exactly one stores its task and
// every other gets a *DuplicateError naming that ID.
func testConcurrentCreateSameID(t *testing.T, s scheduler.Store) {
	ctx := ctxFor(t)
	const racers = 20
	id := newID(t)
	var winner atomic.Int32
	winner.Store(-1)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for r := range racers {
		wg.Go(func() {
			task := newTask(t)
			task.ID = id
			task.Payload = []byte(fmt.Sprint(r))
			errs, err := s.Create(ctx, []*scheduler.Task{task})
			if !assert.NoError(t, err) || !assert.Len(t, errs, 1) {
				return
			}
			if errs[0] == nil {
				wins.Add(1)
				winner.Store(int32(r))
				return
			}
			var dup *scheduler.DuplicateError
			if assert.ErrorAs(t, errs[0], &dup) {
				assert.Equal(t, id, dup.ExistingID)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int32(1), wins.Load(), "exactly one Create of an ID stores its task")
	require.Equal(t, fmt.Sprint(winner.Load()), string(get(t, s, id).Payload), "the stored task is the winner's")
	out, err := s.Outbox(ctx, base.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Len(t, out, 1, "one outbox entry")
	counts, err := s.Counts(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), sum(counts))
}
