package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
)

func TestNewOptions(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = rdb.Close() })

	s, err := New(rdb)
	require.NoError(t, err)
	require.Equal(t, "{sched}", s.ns)

	s, err = New(rdb, WithPrefix("app-1.prod"), WithReplayWindow(time.Minute), WithLogger(zap.NewNop()))
	require.NoError(t, err)
	require.Equal(t, "{app-1.prod}", s.ns)

	for name, opts := range map[string][]Option{
		"nil option":       {nil},
		"empty prefix":     {WithPrefix("")},
		"brace in prefix":  {WithPrefix("a}b")},
		"space in prefix":  {WithPrefix("a b")},
		"long prefix":      {WithPrefix(strings.Repeat("a", 65))},
		"zero replay":      {WithReplayWindow(0)},
		"short replay":     {WithReplayWindow(time.Millisecond)},
		"nil logger":       {WithLogger(nil)},
		"good then broken": {WithPrefix("ok"), WithReplayWindow(-time.Second)},
	} {
		_, err := New(rdb, opts...)
		require.ErrorIs(t, err, scheduler.ErrInvalidOption, name)
	}
	_, err = New(nil)
	require.ErrorIs(t, err, scheduler.ErrInvalidOption)
}

// The three scenarios of the original project: store a task and read it
// back, read a task never stored, store an invalid task.
func TestStoreAndReadBack(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		full := newTask(t, func(task *scheduler.Task) {
			task.State = scheduler.StateScheduled
			task.Priority = scheduler.PriorityMax
			task.Queue = "critical"
			task.Timeout = 90 * time.Second
			task.RunAt = now().Add(time.Hour)
			task.UniqueKey = `report:"monthly" <2025-03> \ é`
			task.MaxRetries = 7
		})
		binary := newTask(t, func(task *scheduler.Task) { task.Payload = []byte{0, 1, 2, 0xff, '"', '\\'} })
		big := newTask(t, func(task *scheduler.Task) {
			task.Payload = []byte(`{"n": 1.50, "big": 123456789012345678901234567890, "s": "\u00e9\/", "nested": [[[{"}": "{"}]]]}`)
		})
		empty := newTask(t, func(task *scheduler.Task) { task.Payload = nil })
		h.create(t, full, binary, big, empty)
		for _, want := range []*scheduler.Task{full, binary, big, empty} {
			require.Equal(t, want, h.get(t, want.ID))
		}

		// Transitions rewrite the record in a script; the payload must
		// stay byte for byte what was submitted.
		task := h.finish(t, big.ID, scheduler.StateSucceeded, now())
		require.Equal(t, big.Payload, task.Payload)
		require.Equal(t, big.Payload, h.get(t, big.ID).Payload)
		task, err := h.s.Cancel(ctx, full.ID, scheduler.CancelParams{Reason: `user said "stop"`, Now: now()})
		require.NoError(t, err)
		require.Equal(t, full.UniqueKey, task.UniqueKey)
		require.Equal(t, `user said "stop"`, task.LastError)
		require.Equal(t, task, h.get(t, full.ID))
		h.checkConsistent(t)
	})
}

func TestGetNeverStored(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		id := newID(t)
		_, err := h.s.Get(ctx, id)
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
		_, err = h.s.Start(ctx, id, scheduler.StartParams{Now: now()})
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
		_, err = h.s.Finish(ctx, id, scheduler.FinishParams{State: scheduler.StateSucceeded, Now: now()})
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
		_, err = h.s.Cancel(ctx, id, scheduler.CancelParams{Now: now()})
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
		_, err = h.s.Retry(ctx, id, now())
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
		require.Empty(t, h.keys(t))
	})
}

func TestInvalidTaskRejected(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		cases := map[string]*scheduler.Task{
			"malformed id":     newTask(t, func(task *scheduler.Task) { task.ID = "../etc/passwd" }),
			"wildcard id":      newTask(t, func(task *scheduler.Task) { task.ID = "abc*" }),
			"empty type":       newTask(t, func(task *scheduler.Task) { task.Type = "" }),
			"bad queue":        newTask(t, func(task *scheduler.Task) { task.Queue = "a:b" }),
			"priority":         newTask(t, func(task *scheduler.Task) { task.Priority = 42 }),
			"unknown state":    newTask(t, func(task *scheduler.Task) { task.State = "lost" }),
			"running state":    newTask(t, func(task *scheduler.Task) { task.State = scheduler.StateRunning }),
			"started attempt":  newTask(t, func(task *scheduler.Task) { task.Attempt = 2 }),
			"no created_at":    newTask(t, func(task *scheduler.Task) { task.CreatedAt = time.Time{} }),
			"control char key": newTask(t, func(task *scheduler.Task) { task.UniqueKey = "a\nb" }),
		}
		for name, bad := range cases {
			good := newTask(t)
			res, err := h.s.Create(ctx, []*scheduler.Task{good, bad})
			require.ErrorIs(t, err, scheduler.ErrInvalidTask, name)
			var ve *scheduler.ValidationError
			require.ErrorAs(t, err, &ve, name)
			require.Contains(t, err.Error(), "task 1", name)
			require.Nil(t, res, name)
		}
		twice := newTask(t)
		_, err := h.s.Create(ctx, []*scheduler.Task{twice, twice})
		require.ErrorIs(t, err, scheduler.ErrInvalidTask)
		_, err = h.s.Create(ctx, []*scheduler.Task{nil})
		require.ErrorIs(t, err, scheduler.ErrInvalidTask)
		require.Empty(t, h.keys(t), "nothing is written for a rejected batch")

		for _, id := range []string{"", "a b", "x/../y", "{other}:t:1", strings.Repeat("a", 65), "a*"} {
			_, err := h.s.Get(ctx, id)
			require.ErrorIs(t, err, scheduler.ErrInvalidTask, id)
			_, err = h.s.Start(ctx, id, scheduler.StartParams{})
			require.ErrorIs(t, err, scheduler.ErrInvalidTask, id)
			_, err = h.s.Cancel(ctx, id, scheduler.CancelParams{})
			require.ErrorIs(t, err, scheduler.ErrInvalidTask, id)
			require.ErrorIs(t, h.s.Published(ctx, scheduler.Message{TaskID: id}), scheduler.ErrInvalidTask, id)
		}
		_, err = h.s.List(ctx, scheduler.ListFilter{Cursor: "!!"})
		require.ErrorIs(t, err, scheduler.ErrInvalidTask)
		_, err = h.s.List(ctx, scheduler.ListFilter{State: "lost"})
		require.ErrorIs(t, err, scheduler.ErrInvalidTask)
		require.Empty(t, h.keys(t))
	})
}

func TestCorruptRecord(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		task := newTask(t)
		h.create(t, task)
		key := h.ns + ":t:" + task.ID
		for _, bad := range []string{"not json", `{"id":`, `{"id":"other","state":"pending"}`, `[1,2]`, `{"id":"` + task.ID + `","state":"weird"}`,
			`{"id":"` + task.ID + `","type":"t","queue":"q","priority":"high","state":"pending","attempt":0,"max_retries":3}`} {
			require.NoError(t, h.rdb.Set(ctx, key, bad, 0).Err())
			_, err := h.s.Get(ctx, task.ID)
			var ce *CorruptRecordError
			require.ErrorAs(t, err, &ce, bad)
			require.Equal(t, key, ce.Key)
			require.Contains(t, err.Error(), key)
			_, err = h.s.Start(ctx, task.ID, scheduler.StartParams{Now: now()})
			require.ErrorAs(t, err, &ce, bad)
			require.ErrorIs(t, err, scheduler.ErrCorruptTask, bad)
			require.Contains(t, err.Error(), key)
			_, err = h.s.List(ctx, scheduler.ListFilter{})
			require.ErrorAs(t, err, &ce, bad)
			_, err = h.s.Outbox(ctx, now().Add(time.Hour), 10)
			require.ErrorAs(t, err, &ce, bad)
		}
		require.NoError(t, h.rdb.Del(ctx, key).Err())
		require.NoError(t, h.rdb.RPush(ctx, key, "x").Err())
		_, err := h.s.Get(ctx, task.ID)
		var ce *CorruptRecordError
		require.ErrorAs(t, err, &ce)
		_, err = h.s.Cancel(ctx, task.ID, scheduler.CancelParams{Now: now()})
		require.ErrorAs(t, err, &ce)
	})
}

// The ID of the message driving a task stays in its record only while a
// redelivery of that message may take the task over: running or handed
// back. A finished record is as small as without it.
func TestMessageIDLivesWhileItMatters(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		raw := func(id string) string {
			s, err := h.rdb.Get(ctx, h.ns+":t:"+id).Result()
			require.NoError(t, err)
			return s
		}
		for _, to := range []scheduler.State{scheduler.StateSucceeded, scheduler.StateRetrying, scheduler.StatePending} {
			task := newTask(t)
			h.create(t, task)
			_, err := h.s.Start(ctx, task.ID, scheduler.StartParams{MessageID: "0123456789ab-1x", WorkerID: "w", Now: now()})
			require.NoError(t, err)
			require.Contains(t, raw(task.ID), `"mi":"0123456789ab-1x"`)
			p := scheduler.FinishParams{Attempt: 1, State: to, Now: now()}
			if to == scheduler.StateRetrying {
				p.RunAt = now().Add(time.Minute)
			}
			_, err = h.s.Finish(ctx, task.ID, p)
			require.NoError(t, err)
			if to == scheduler.StatePending {
				require.Contains(t, raw(task.ID), `"mi":`, "a handed-back task keeps it")
			} else {
				require.NotContains(t, raw(task.ID), `"mi":`, to)
			}
		}
		task := newTask(t)
		h.create(t, task)
		_, err := h.s.Start(ctx, task.ID, scheduler.StartParams{MessageID: "m", WorkerID: "w", Now: now()})
		require.NoError(t, err)
		_, err = h.s.Cancel(ctx, task.ID, scheduler.CancelParams{Now: now()})
		require.NoError(t, err)
		require.NotContains(t, raw(task.ID), `"mi":`, "canceled")
	})
}

func TestStartFence(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		start := func(id string, attempt int, redelivered bool) (*scheduler.Task, error) {
			return h.s.Start(ctx, id, scheduler.StartParams{Attempt: attempt, Redelivered: redelivered, WorkerID: "w-" + fmt.Sprint(attempt), Now: now()})
		}
		a := newTask(t)
		sched := newTask(t, func(task *scheduler.Task) { task.State = scheduler.StateScheduled })
		h.create(t, a, sched)

		_, err := start(a.ID, 1, false)
		require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "attempt ahead of the task")
		got, err := start(a.ID, 0, false)
		require.NoError(t, err)
		require.Equal(t, scheduler.StateRunning, got.State)
		require.Equal(t, 1, got.Attempt)
		require.Equal(t, "w-0", got.WorkerID)
		require.Equal(t, now(), got.StartedAt)
		require.Equal(t, got, h.get(t, a.ID))

		_, err = start(a.ID, 0, false)
		require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "a duplicate message")
		got, err = start(a.ID, 0, true)
		require.NoError(t, err, "a redelivered message takes a running task over")
		require.Equal(t, 2, got.Attempt)
		_, err = start(a.ID, 1, true)
		require.ErrorIs(t, err, scheduler.ErrStaleAttempt, "only the message driving the task takes it over")

		// Handed back by a stopping worker, then redelivered.
		_, err = h.s.Finish(ctx, a.ID, scheduler.FinishParams{Attempt: 2, State: scheduler.StatePending, Now: now()})
		require.NoError(t, err)
		_, err = start(a.ID, 0, false)
		require.ErrorIs(t, err, scheduler.ErrStaleAttempt)
		got, err = start(a.ID, 0, true)
		require.NoError(t, err)
		require.Equal(t, 3, got.Attempt)

		got, err = start(sched.ID, 0, false)
		require.NoError(t, err)
		require.Equal(t, scheduler.StateRunning, got.State)

		_, err = h.s.Finish(ctx, a.ID, scheduler.FinishParams{Attempt: 3, State: scheduler.StateSucceeded, Now: now()})
		require.NoError(t, err)
		for _, redelivered := range []bool{false, true} {
			for _, attempt := range []int{2, 3} {
				_, err = start(a.ID, attempt, redelivered)
				require.ErrorIs(t, err, scheduler.ErrTaskFinished)
			}
		}
		h.checkConsistent(t)
	})
}

func TestFinish(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		at := now().Add(time.Minute)

		ok := newTask(t)
		h.create(t, ok)
		running := h.start(t, ok.ID)
		_, err := h.s.Finish(ctx, ok.ID, scheduler.FinishParams{Attempt: running.Attempt + 1, State: scheduler.StateSucceeded, Now: at})
		require.ErrorIs(t, err, scheduler.ErrStaleAttempt)
		_, err = h.s.Finish(ctx, ok.ID, scheduler.FinishParams{Attempt: running.Attempt, State: scheduler.StateRunning, Now: at})
		require.ErrorIs(t, err, scheduler.ErrInvalidTask)
		got, err := h.s.Finish(ctx, ok.ID, scheduler.FinishParams{Attempt: running.Attempt, State: scheduler.StateSucceeded, Result: []byte(`{"sent":true}`), Now: at})
		require.NoError(t, err)
		require.Equal(t, scheduler.StateSucceeded, got.State)
		require.Equal(t, []byte(`{"sent":true}`), got.Result)
		require.Equal(t, at, got.FinishedAt)
		require.Equal(t, got, h.get(t, ok.ID))
		_, err = h.s.Finish(ctx, ok.ID, scheduler.FinishParams{Attempt: running.Attempt, State: scheduler.StateDead, Now: at})
		require.ErrorIs(t, err, scheduler.ErrTaskFinished)

		bin := newTask(t)
		h.create(t, bin)
		running = h.start(t, bin.ID)
		got, err = h.s.Finish(ctx, bin.ID, scheduler.FinishParams{Attempt: running.Attempt, State: scheduler.StateSucceeded, Result: []byte{0xff, 0}, Now: at})
		require.NoError(t, err)
		require.Equal(t, []byte{0xff, 0}, h.get(t, bin.ID).Result)
		require.Equal(t, got, h.get(t, bin.ID))

		retry := newTask(t)
		h.create(t, retry)
		require.NoError(t, h.s.Published(ctx, scheduler.Message{TaskID: retry.ID}))
		running = h.start(t, retry.ID)
		got, err = h.s.Finish(ctx, retry.ID, scheduler.FinishParams{
			Attempt: running.Attempt, State: scheduler.StateRetrying, Error: "smtp: 451", RunAt: at.Add(time.Minute), Now: at,
		})
		require.NoError(t, err)
		require.Equal(t, scheduler.StateRetrying, got.State)
		require.Equal(t, "smtp: 451", got.LastError)
		require.Equal(t, at.Add(time.Minute), got.RunAt)
		require.True(t, got.FinishedAt.IsZero())
		out, err := h.s.Outbox(ctx, at.Add(time.Minute+time.Microsecond), 10)
		require.NoError(t, err)
		require.Equal(t, []string{retry.ID}, ids(out), "a retrying task is in the outbox, due at its RunAt")
		out, err = h.s.Outbox(ctx, at.Add(time.Minute), 10)
		require.NoError(t, err)
		require.Empty(t, out)

		// Snoozed: scheduled with more retries.
		running = h.start(t, retry.ID)
		require.Equal(t, 2, running.Attempt)
		got, err = h.s.Finish(ctx, retry.ID, scheduler.FinishParams{Attempt: 2, State: scheduler.StateScheduled, AddRetries: 1, RunAt: at, Now: at})
		require.NoError(t, err)
		require.Equal(t, scheduler.StateScheduled, got.State)
		require.Equal(t, scheduler.DefaultMaxRetries+1, got.MaxRetries)
		require.Equal(t, "smtp: 451", got.LastError, "an empty error keeps the last one")

		running = h.start(t, retry.ID)
		got, err = h.s.Finish(ctx, retry.ID, scheduler.FinishParams{Attempt: running.Attempt, State: scheduler.StateDead, Error: "gave up", Now: at})
		require.NoError(t, err)
		require.Equal(t, scheduler.StateDead, got.State)
		require.Equal(t, at, got.FinishedAt)
		require.Equal(t, "gave up", got.LastError)
		h.checkConsistent(t)
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		w := scheduler.WorkerInfo{ID: "w1", Host: "h", PID: 1, Queues: []string{"default"}, Concurrency: 2, StartedAt: now(), LastBeat: now()}
		canceled, err := h.s.Heartbeat(ctx, w, time.Minute)
		require.NoError(t, err)
		require.Empty(t, canceled)

		pending := newTask(t, func(task *scheduler.Task) { task.UniqueKey = "k1" })
		running := newTask(t)
		unstarted := newTask(t, func(task *scheduler.Task) { task.State = scheduler.StateScheduled })
		h.create(t, pending, running, unstarted)
		h.start(t, running.ID)

		got, err := h.s.Cancel(ctx, pending.ID, scheduler.CancelParams{Reason: "not needed", Now: now()})
		require.NoError(t, err)
		require.Equal(t, scheduler.StateCanceled, got.State)
		require.Equal(t, "not needed", got.LastError)
		require.Equal(t, now(), got.FinishedAt)
		_, err = h.s.Cancel(ctx, pending.ID, scheduler.CancelParams{Now: now()})
		require.ErrorIs(t, err, scheduler.ErrTaskFinished)
		out, err := h.s.Outbox(ctx, now().Add(time.Hour), 10)
		require.NoError(t, err)
		require.NotContains(t, ids(out), pending.ID)
		h.create(t, newTask(t, func(task *scheduler.Task) { task.UniqueKey = "k1" }))

		_, err = h.s.Cancel(ctx, running.ID, scheduler.CancelParams{OnlyUnstarted: true, Now: now()})
		require.ErrorIs(t, err, scheduler.ErrStaleAttempt)
		_, err = h.s.Cancel(ctx, running.ID, scheduler.CancelParams{Now: now()})
		require.NoError(t, err)
		canceled, err = h.s.Heartbeat(ctx, w, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []string{running.ID}, canceled)
		canceled, err = h.s.Heartbeat(ctx, w, time.Minute)
		require.NoError(t, err)
		require.Empty(t, canceled, "a cancel request is returned once")

		got, err = h.s.Cancel(ctx, unstarted.ID, scheduler.CancelParams{OnlyUnstarted: true, Now: now()})
		require.NoError(t, err)
		require.Equal(t, scheduler.StateCanceled, got.State)
		h.checkConsistent(t)
	})
}

func TestRetry(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		dead := newTask(t, func(task *scheduler.Task) { task.UniqueKey = "once"; task.MaxRetries = 0 })
		h.create(t, dead)
		_, err := h.s.Retry(ctx, dead.ID, now())
		require.ErrorIs(t, err, scheduler.ErrNotRetryable)
		h.finish(t, dead.ID, scheduler.StateDead, now())
		other := newTask(t, func(task *scheduler.Task) { task.UniqueKey = "once" })
		h.create(t, other)

		got, err := h.s.Retry(ctx, dead.ID, now().Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, scheduler.StatePending, got.State)
		require.Equal(t, 1, got.MaxRetries, "the retry budget grows by the attempts made")
		require.Equal(t, 1, got.Attempt)
		require.True(t, got.FinishedAt.IsZero())
		require.Equal(t, got, h.get(t, dead.ID))
		out, err := h.s.Outbox(ctx, now().Add(2*time.Hour), 10)
		require.NoError(t, err)
		require.Contains(t, ids(out), dead.ID)
		n, err := h.s.Purge(ctx, now().Add(24*time.Hour), 10)
		require.NoError(t, err)
		require.Zero(t, n, "a retried task is no longer finished")

		succeeded := newTask(t)
		h.create(t, succeeded)
		h.finish(t, succeeded.ID, scheduler.StateSucceeded, now())
		_, err = h.s.Retry(ctx, succeeded.ID, now())
		require.ErrorIs(t, err, scheduler.ErrNotRetryable)

		canceled := newTask(t)
		h.create(t, canceled)
		_, err = h.s.Cancel(ctx, canceled.ID, scheduler.CancelParams{Now: now()})
		require.NoError(t, err)
		got, err = h.s.Retry(ctx, canceled.ID, now())
		require.NoError(t, err)
		require.Equal(t, scheduler.StatePending, got.State)
		h.checkConsistent(t)
	})
}

func TestUniqueKeys(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		a := newTask(t, func(task *scheduler.Task) { task.UniqueKey = "u" })
		b := newTask(t, func(task *scheduler.Task) { task.UniqueKey = "u" })
		c := newTask(t)
		res, err := h.s.Create(ctx, []*scheduler.Task{a, b, c})
		require.NoError(t, err)
		require.NoError(t, res[0])
		require.NoError(t, res[2])
		var de *scheduler.DuplicateError
		require.ErrorAs(t, res[1], &de)
		require.ErrorIs(t, res[1], scheduler.ErrDuplicateTask)
		require.Equal(t, a.ID, de.ExistingID)
		require.Equal(t, "u", de.UniqueKey)
		_, err = h.s.Get(ctx, b.ID)
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound, "a duplicate is not stored")

		changed := a.Clone()
		changed.Priority = scheduler.PriorityHigh
		res, err = h.s.Create(ctx, []*scheduler.Task{b, changed})
		require.NoError(t, err)
		require.ErrorAs(t, res[0], &de)
		require.Equal(t, a.ID, de.ExistingID)
		require.ErrorAs(t, res[1], &de, "an ID already stored")
		require.Equal(t, a.ID, de.ExistingID)
		res, err = h.s.Create(ctx, []*scheduler.Task{a})
		require.NoError(t, err)
		require.ErrorAs(t, res[0], &de, "creating the very task again is a duplicate too")
		require.Equal(t, a, h.get(t, a.ID))
		h.start(t, a.ID)

		_, err = h.s.Finish(ctx, a.ID, scheduler.FinishParams{Attempt: 1, State: scheduler.StateSucceeded, Now: now()})
		require.NoError(t, err)
		h.create(t, b)
		h.checkConsistent(t)
	})
}

func TestOutboxPublished(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		var tasks []*scheduler.Task
		for i := range 5 {
			tasks = append(tasks, newTask(t, func(task *scheduler.Task) {
				task.CreatedAt = now().Add(time.Duration(i) * time.Second)
				task.RunAt = task.CreatedAt
			}))
		}
		h.create(t, tasks...)
		out, err := h.s.Outbox(ctx, now().Add(3*time.Second), 10)
		require.NoError(t, err)
		require.Equal(t, ids(tasks[:3]), ids(out), "due before `before`, earliest first")
		out, err = h.s.Outbox(ctx, now().Add(time.Hour), 2)
		require.NoError(t, err)
		require.Equal(t, ids(tasks[:2]), ids(out))
		require.Equal(t, tasks[0], out[0])

		require.NoError(t, h.s.Published(ctx, scheduler.Message{TaskID: tasks[0].ID}, scheduler.Message{TaskID: tasks[1].ID}, scheduler.Message{TaskID: newID(t)}))
		require.NoError(t, h.s.Published(ctx))
		h.start(t, tasks[2].ID)
		out, err = h.s.Outbox(ctx, now().Add(time.Hour), 10)
		require.NoError(t, err)
		require.Equal(t, ids(tasks[3:]), ids(out), "published and started tasks left the outbox")
		h.checkConsistent(t)
	})
}

func TestListAndCounts(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		var all []*scheduler.Task
		for i := range 30 {
			all = append(all, newTask(t, func(task *scheduler.Task) {
				task.Type = []string{"email.send", "report:build", "noop"}[i%3]
				task.Queue = []string{"default", "critical"}[i%2]
			}))
		}
		h.create(t, all...)
		for i, task := range all {
			switch i % 5 {
			case 1:
				h.start(t, task.ID)
			case 2:
				h.finish(t, task.ID, scheduler.StateSucceeded, now())
			case 3:
				h.finish(t, task.ID, scheduler.StateDead, now())
			}
		}
		byID := map[string]*scheduler.Task{}
		for _, task := range all {
			byID[task.ID] = h.get(t, task.ID)
		}
		want := func(f scheduler.ListFilter) []string {
			var out []string
			for id, task := range byID {
				if (f.State == "" || task.State == f.State) && (f.Type == "" || task.Type == f.Type) && (f.Queue == "" || task.Queue == f.Queue) {
					out = append(out, id)
				}
			}
			sort.Sort(sort.Reverse(sort.StringSlice(out)))
			return out
		}
		for _, f := range []scheduler.ListFilter{
			{}, {Limit: 7}, {Limit: 1}, {State: scheduler.StateSucceeded, Limit: 2}, {State: scheduler.StatePending},
			{Type: "report:build", Limit: 3}, {Queue: "critical", Limit: 4}, {Queue: "critical", Type: "noop", State: scheduler.StateDead},
			{Queue: "nope"}, {State: scheduler.StateRetrying},
		} {
			var got []string
			pages := 0
			for {
				page, err := h.s.List(ctx, f)
				require.NoError(t, err)
				require.LessOrEqual(t, len(page.Tasks), f.PageSize())
				for _, task := range page.Tasks {
					require.Equal(t, byID[task.ID], task)
					got = append(got, task.ID)
				}
				pages++
				if page.Next == "" {
					break
				}
				require.Len(t, page.Tasks, f.PageSize(), "only the last page is short")
				f.Cursor = page.Next
			}
			require.Equal(t, want(f), got, "filter %+v", f)
			require.LessOrEqual(t, pages, len(got)/f.PageSize()+1)
		}

		counts, err := h.s.Counts(ctx)
		require.NoError(t, err)
		require.Equal(t, map[scheduler.State]int64{
			scheduler.StatePending: 12, scheduler.StateRunning: 6, scheduler.StateSucceeded: 6, scheduler.StateDead: 6,
		}, counts)
		h.checkConsistent(t)
	})
}

func TestPurgeLeavesNoOrphans(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		old, recent := now(), now().Add(48*time.Hour)
		var keep []string
		for i := range 20 {
			task := newTask(t, func(task *scheduler.Task) {
				task.UniqueKey = fmt.Sprint("u", i)
				task.Type = fmt.Sprint("type", i%4)
			})
			h.create(t, task)
			switch i % 4 {
			case 0:
				h.finish(t, task.ID, scheduler.StateSucceeded, old)
			case 1:
				_, err := h.s.Cancel(ctx, task.ID, scheduler.CancelParams{Now: old})
				require.NoError(t, err)
			case 2:
				h.finish(t, task.ID, scheduler.StateSucceeded, recent)
				keep = append(keep, task.ID)
			default:
				keep = append(keep, task.ID)
			}
		}
		n, err := h.s.Purge(ctx, old.Add(time.Microsecond), 3)
		require.NoError(t, err)
		require.Equal(t, 3, n, "at most limit")
		n, err = h.s.Purge(ctx, old.Add(time.Microsecond), 100)
		require.NoError(t, err)
		require.Equal(t, 7, n)
		n, err = h.s.Purge(ctx, old.Add(time.Microsecond), 100)
		require.NoError(t, err)
		require.Zero(t, n)
		h.checkConsistent(t)
		page, err := h.s.List(ctx, scheduler.ListFilter{})
		require.NoError(t, err)
		require.ElementsMatch(t, keep, ids(page.Tasks))

		n, err = h.s.Purge(ctx, recent.Add(time.Second), 100)
		require.NoError(t, err)
		require.Equal(t, 5, n)
		h.checkConsistent(t)
		for _, task := range page.Tasks {
			if !task.State.Terminal() {
				require.NoError(t, h.s.Published(ctx, scheduler.Message{TaskID: task.ID, Attempt: task.Attempt}))
				_, err := h.s.Cancel(ctx, task.ID, scheduler.CancelParams{Now: recent})
				require.NoError(t, err)
			}
		}
		n, err = h.s.Purge(ctx, recent.Add(time.Second), 100)
		require.NoError(t, err)
		require.Equal(t, 5, n)
		require.Empty(t, h.keys(t), "nothing is left once every task is purged")

		// A corrupt record due for purging is removed with its index entries.
		task := newTask(t)
		h.create(t, task)
		h.finish(t, task.ID, scheduler.StateSucceeded, old)
		require.NoError(t, h.rdb.Set(ctx, h.ns+":t:"+task.ID, "garbage", 0).Err())
		n, err = h.s.Purge(ctx, recent, 100)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Empty(t, h.keys(t))
	})
}

// A retried task leaves its earlier finish log entry behind: Purge drops
// that entry without deleting the task, whether the task is waiting again
// or finished again later, and deletes it once its last finish is due.
func TestPurgeAfterRetry(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		old, recent := now(), now().Add(48*time.Hour)
		again, waiting := newTask(t), newTask(t)
		h.create(t, again, waiting)
		h.finish(t, again.ID, scheduler.StateDead, old)
		_, err := h.s.Cancel(ctx, waiting.ID, scheduler.CancelParams{Now: old})
		require.NoError(t, err)
		for _, id := range []string{again.ID, waiting.ID} {
			_, err := h.s.Retry(ctx, id, old)
			require.NoError(t, err)
		}
		h.finish(t, again.ID, scheduler.StateSucceeded, recent)
		h.checkConsistent(t)

		n, err := h.s.Purge(ctx, old.Add(time.Hour), 100)
		require.NoError(t, err)
		require.Zero(t, n, "neither task finished before the bound")
		require.Equal(t, scheduler.StateSucceeded, h.get(t, again.ID).State)
		require.Equal(t, scheduler.StatePending, h.get(t, waiting.ID).State)
		h.checkConsistent(t)

		n, err = h.s.Purge(ctx, recent.Add(time.Second), 100)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		_, err = h.s.Get(ctx, again.ID)
		require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
		h.checkConsistent(t)
	})
}

// Purge steps over finish log entries not yet due (finish times come from
// the callers' clocks) to reach due ones behind them, up to purgeLook of
// them per call.
func TestPurgeOutOfOrder(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		old, ahead := now(), now().Add(time.Hour)
		var early, late []string
		for i := range 2*purgeLook + 10 {
			task := newTask(t)
			h.create(t, task)
			at := ahead
			if i%2 == 1 || i >= 2*purgeLook {
				at = old
				early = append(early, task.ID)
			} else {
				late = append(late, task.ID)
			}
			h.finish(t, task.ID, scheduler.StateSucceeded, at)
		}
		n, err := h.s.Purge(ctx, old.Add(time.Second), 1000)
		require.NoError(t, err)
		require.Equal(t, purgeLook-1, n, "the due tasks between the first %d not yet due ones", purgeLook)
		h.checkConsistent(t)
		n, err = h.s.Purge(ctx, old.Add(time.Second), 1000)
		require.NoError(t, err)
		require.Zero(t, n, "the due tasks behind them wait")
		n, err = h.s.Purge(ctx, ahead.Add(time.Second), 1000)
		require.NoError(t, err)
		require.Equal(t, len(early)+len(late)-(purgeLook-1), n, "the rest, once the head is due")
		require.Empty(t, h.keys(t))
	})
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		w1 := scheduler.WorkerInfo{ID: "host-1/1", Host: "host-1", PID: 1, Queues: []string{"default"}, Concurrency: 4, StartedAt: now(), LastBeat: now()}
		w2 := w1
		w2.ID, w2.PID = "host-1/2", 2
		_, err := h.s.Heartbeat(ctx, w1, time.Hour)
		require.NoError(t, err)
		_, err = h.s.Heartbeat(ctx, w2, 200*time.Millisecond)
		require.NoError(t, err)
		workers, err := h.s.Workers(ctx)
		require.NoError(t, err)
		require.ElementsMatch(t, []scheduler.WorkerInfo{w1, w2}, workers)

		if h.mr != nil {
			h.mr.FastForward(time.Second)
		}
		require.Eventually(t, func() bool {
			workers, err := h.s.Workers(ctx)
			return err == nil && len(workers) == 1 && workers[0].ID == w1.ID
		}, 5*time.Second, 10*time.Millisecond, "an expired heartbeat drops the worker")

		require.NoError(t, h.s.RemoveWorker(ctx, w1.ID))
		require.NoError(t, h.s.RemoveWorker(ctx, w1.ID))
		workers, err = h.s.Workers(ctx)
		require.NoError(t, err)
		require.Empty(t, workers)

		_, err = h.s.Heartbeat(ctx, scheduler.WorkerInfo{}, time.Second)
		require.ErrorIs(t, err, scheduler.ErrInvalidOption)
		_, err = h.s.Heartbeat(ctx, w1, 0)
		require.ErrorIs(t, err, scheduler.ErrInvalidOption)
	})
}

func TestClaim(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		var mu sync.Mutex
		winners := 0
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				ok, err := h.s.Claim(ctx, "purge", time.Hour)
				if err == nil && ok {
					mu.Lock()
					winners++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Equal(t, 1, winners)
		ok, err := h.s.Claim(ctx, "other", time.Hour)
		require.NoError(t, err)
		require.True(t, ok)

		ok, err = h.s.Claim(ctx, "short", 50*time.Millisecond)
		require.NoError(t, err)
		require.True(t, ok)
		if h.mr != nil {
			h.mr.FastForward(time.Second)
		}
		require.Eventually(t, func() bool {
			ok, err := h.s.Claim(ctx, "short", time.Hour)
			return err == nil && ok
		}, 5*time.Second, 10*time.Millisecond, "a claim can be taken again once its ttl ended")

		_, err = h.s.Claim(ctx, "", time.Second)
		require.ErrorIs(t, err, scheduler.ErrInvalidOption)
		_, err = h.s.Claim(ctx, "x", 0)
		require.ErrorIs(t, err, scheduler.ErrInvalidOption)
	})
}

func TestPing(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		require.NoError(t, h.s.Ping(context.Background()))
	})
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := New(rdb)
	require.NoError(t, err)
	require.Error(t, s.Ping(context.Background()))
	_, err = s.Get(context.Background(), newID(t))
	require.Error(t, err)
	require.False(t, errors.Is(err, scheduler.ErrTaskNotFound), "a lost connection is not a missing task")
}

func ids(tasks []*scheduler.Task) []string {
	out := make([]string, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID
	}
	return slices.Clip(out)
}

// Payloads, results, errors and keys that look like record members, or are
// not valid UTF-8, survive every transition unchanged and keep the unique
// key and cancel request keys consistent.
func TestRecordContentThatLooksLikeMembers(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		tricky := `{"state":"succeeded","attempt":99,"x":",\"payload\":1","result":{"a":[1,"]}"]},"unique_key":"k"}`
		payloads := [][]byte{
			[]byte(tricky),
			[]byte(`,"result":1,"state":"dead"`), // not JSON: stored as base64
			[]byte(`"just a string with ,\"result\": inside"`),
			[]byte(`[1,2,{"payload":null}]`),
			[]byte("<html>&amp;</html>"),
		}
		for i, p := range payloads {
			task := newTask(t, func(task *scheduler.Task) {
				task.Payload = p
				task.UniqueKey = fmt.Sprintf("bad utf8 \xff\xfe %d \u2028 \"q\" </>", i)
			})
			h.create(t, task)
			w := scheduler.WorkerInfo{ID: fmt.Sprintf("wörker \xff %d", i)}
			_, err := h.s.Heartbeat(ctx, w, time.Minute)
			require.NoError(t, err)
			got, err := h.s.Start(ctx, task.ID, scheduler.StartParams{WorkerID: w.ID, Now: now()})
			require.NoError(t, err)
			require.Equal(t, p, got.Payload)
			got, err = h.s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: 1, State: scheduler.StateRetrying,
				Error: tricky + "\n\t\x00 é", RunAt: now(), Now: now()})
			require.NoError(t, err)
			require.Equal(t, tricky+"\n\t\x00 é", got.LastError)
			got, err = h.s.Start(ctx, task.ID, scheduler.StartParams{Attempt: 1, WorkerID: w.ID, Now: now()})
			require.NoError(t, err)
			require.Equal(t, stored(w.ID), got.WorkerID)
			if i%2 == 0 {
				_, err = h.s.Cancel(ctx, task.ID, scheduler.CancelParams{Reason: `"stop"`, Now: now()})
				require.NoError(t, err)
				canceled, err := h.s.Heartbeat(ctx, w, time.Minute)
				require.NoError(t, err)
				require.Equal(t, []string{task.ID}, canceled, "the cancel request reaches a worker with an odd ID")
			} else {
				got, err = h.s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: 2, State: scheduler.StateSucceeded, Result: p, Now: now()})
				require.NoError(t, err)
				require.Equal(t, p, got.Result)
			}
			got = h.get(t, task.ID)
			require.Equal(t, p, got.Payload)
			require.Equal(t, strings.ToValidUTF8(task.UniqueKey, "\ufffd\ufffd"), got.UniqueKey, "only invalid UTF-8 is replaced")
			h.create(t, newTask(t, func(n *scheduler.Task) { n.UniqueKey = task.UniqueKey }))
			require.NoError(t, h.s.RemoveWorker(ctx, w.ID))
		}
		h.checkConsistent(t)
	})
}

// The Redis memory a finished small task takes, record plus index
// entries, measured with MEMORY USAGE over the namespace, stays under the
// store's target of 600 bytes; BenchmarkMemoryPerTask reports the figure.
func TestMemoryPerFinishedTask(t *testing.T) {
	t.Parallel()
	h := newReal(t)
	ctx := context.Background()
	const n = 1000
	tasks := make([]*scheduler.Task, n)
	for i := range tasks {
		tasks[i] = smallTask()
	}
	for start := 0; start < n; start += 100 {
		h.create(t, tasks[start:start+100]...)
	}
	for _, task := range tasks {
		_, err := h.s.Start(ctx, task.ID, scheduler.StartParams{WorkerID: "bench-host-1234-abcd", Now: time.Now()})
		require.NoError(t, err)
		_, err = h.s.Finish(ctx, task.ID, scheduler.FinishParams{Attempt: 1, State: scheduler.StateSucceeded, Now: time.Now()})
		require.NoError(t, err)
	}
	m := measureMemory(t, h)
	perTask := float64(m.total) / n
	t.Logf("finished small task: %.0f bytes (record %.0f, index entries %.0f); replay marker %.0f bytes while it lives",
		perTask, float64(m.records)/n, float64(m.indexes)/n, float64(m.markers)/float64(max(m.markerCount, 1)))
	require.Less(t, perTask, 600.0)
	h.checkConsistent(t)
}

// A record member this version does not know (written by a newer one)
// survives transitions.
func TestTransitionsKeepUnknownMembers(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		task := newTask(t)
		h.create(t, task)
		key := h.ns + ":t:" + task.ID
		rec, err := h.rdb.Get(ctx, key).Result()
		require.NoError(t, err)
		rec = strings.Replace(rec, `"s":`, `"future_field":"kept","future_n":7,"s":`, 1)
		require.NoError(t, h.rdb.Set(ctx, key, rec, 0).Err())
		h.finish(t, task.ID, scheduler.StateSucceeded, now())
		rec, err = h.rdb.Get(ctx, key).Result()
		require.NoError(t, err)
		require.Contains(t, rec, `"future_field":"kept"`)
		require.Contains(t, rec, `"future_n":7`)
		require.Equal(t, task.Payload, h.get(t, task.ID).Payload)
	})
}
