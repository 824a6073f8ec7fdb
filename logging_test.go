package scheduler_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dtsched/scheduler"
)

// TestLogFieldsAndLevels checks the logging contract: debug for each start
// and finish, warn for a failed attempt, error for a dead task, info for
// worker start and stop and for operator actions, each task line carrying
// task_id, type, queue, attempt and worker_id (and duration once it ran).
func TestLogFieldsAndLevels(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	e := newEnv(t, scheduler.WithLogger(zap.New(core)))
	r := startWorker(t, e.sched, map[string]scheduler.HandlerFunc{
		"flaky": func(_ context.Context, t *scheduler.Task) error {
			if t.Attempt == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		},
		"bad": func(context.Context, *scheduler.Task) error { return errors.New("always") },
	}, scheduler.WithWorkerID("w-log"))
	flaky := submit(t, e.sched, "flaky", `{}`, scheduler.WithQueue("default"))
	dead := submit(t, e.sched, "bad", `{}`, scheduler.WithMaxRetries(0))
	waitState(t, e.sched, flaky, scheduler.StateSucceeded)
	waitState(t, e.sched, dead, scheduler.StateDead)
	later := submit(t, e.sched, "flaky", `{}`, scheduler.WithDelay(time.Hour))
	require.NoError(t, e.sched.Cancel(context.Background(), later))
	require.NoError(t, r.Stop(t))

	one := func(msg, id string) observer.LoggedEntry {
		t.Helper()
		var found []observer.LoggedEntry
		for _, le := range logs.FilterMessage(msg).All() {
			if le.ContextMap()["task_id"] == id {
				found = append(found, le)
			}
		}
		require.NotEmpty(t, found, "no %q line for task %s", msg, id)
		return found[len(found)-1]
	}
	check := func(le observer.LoggedEntry, level zapcore.Level, typ string, attempt int64, ran bool) {
		t.Helper()
		require.Equal(t, level, le.Level, le.Message)
		f := le.ContextMap()
		require.Equal(t, typ, f["type"], le.Message)
		require.Equal(t, "default", f["queue"], le.Message)
		require.Equal(t, attempt, f["attempt"], le.Message)
		if ran {
			require.Equal(t, "w-log", f["worker_id"], le.Message)
			require.Contains(t, f, "duration", le.Message)
		}
	}
	check(one("task submitted", flaky), zapcore.DebugLevel, "flaky", 0, false)
	check(one("task started", flaky), zapcore.DebugLevel, "flaky", 2, false)
	require.Equal(t, "w-log", one("task started", flaky).ContextMap()["worker_id"])
	check(one("task attempt failed; retrying", flaky), zapcore.WarnLevel, "flaky", 1, true)
	check(one("task succeeded", flaky), zapcore.DebugLevel, "flaky", 2, true)
	check(one("task dead", dead), zapcore.ErrorLevel, "bad", 1, true)
	check(one("task canceled", later), zapcore.InfoLevel, "flaky", 0, false)
	for _, msg := range []string{"worker started", "worker stopped"} {
		lines := logs.FilterMessage(msg).All()
		require.Len(t, lines, 1, msg)
		require.Equal(t, zapcore.InfoLevel, lines[0].Level)
		require.Equal(t, "w-log", lines[0].ContextMap()["worker_id"])
	}
}
