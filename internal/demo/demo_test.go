package demo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/demo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSleep(t *testing.T) {
	t.Parallel()
	task := &scheduler.Task{Payload: []byte(`{"ms":5}`)}
	start := time.Now()
	require.NoError(t, demo.Sleep(context.Background(), task))
	require.GreaterOrEqual(t, time.Since(start), 5*time.Millisecond)
	require.JSONEq(t, `{"slept_ms":5}`, string(task.Result))

	require.NoError(t, demo.Sleep(context.Background(), &scheduler.Task{}), "no payload: no sleep")

	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stop")
	cancel(stop)
	require.ErrorIs(t, demo.Sleep(ctx, &scheduler.Task{Payload: []byte(`{"ms":600000}`)}), stop)

	for _, p := range []string{`{"ms":-1}`, `{"ms":600001}`, `{"ms":"5"}`, `{"seconds":5}`, `[1]`, `{`} {
		err := demo.Sleep(context.Background(), &scheduler.Task{Payload: []byte(p)})
		require.ErrorIs(t, err, scheduler.SkipRetry, p)
	}
}

func TestFlaky(t *testing.T) {
	t.Parallel()
	for attempt := 1; attempt <= 3; attempt++ {
		task := &scheduler.Task{Attempt: attempt, Payload: []byte(`{"fail_first":2}`)}
		err := demo.Flaky(context.Background(), task)
		if attempt <= 2 {
			require.Error(t, err)
			require.NotErrorIs(t, err, scheduler.SkipRetry)
			continue
		}
		require.NoError(t, err)
		require.JSONEq(t, `{"attempts":3}`, string(task.Result))
	}
	require.NoError(t, demo.Flaky(context.Background(), &scheduler.Task{Attempt: 1}))
	require.ErrorIs(t, demo.Flaky(context.Background(), &scheduler.Task{Attempt: 1, Payload: []byte(`{"fail_first":true}`)}), scheduler.SkipRetry)
}

func TestPanic(t *testing.T) {
	t.Parallel()
	require.PanicsWithValue(t, "demo.panic: panicking as asked", func() { _ = demo.Panic(context.Background(), &scheduler.Task{}) })
}
