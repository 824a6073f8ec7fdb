package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

// TestSchedulerOnRabbitMQ runs the Scheduler and a Worker on the broker:
// every task reaches succeeded, the failing ones through a delayed retry.
func TestSchedulerOnRabbitMQ(t *testing.T) {
	t.Parallel()
	b := newTestBroker(t, amqpURL(t))
	sched, err := scheduler.New(b, memstore.New(),
		scheduler.WithRetryPolicy(func(int, error) time.Duration { return time.Second }))
	require.NoError(t, err)
	defer sched.Close()
	w, err := sched.NewWorker(scheduler.WithConcurrency(4), scheduler.WithQueues("jobs"))
	require.NoError(t, err)
	var mu sync.Mutex
	runs := map[string]int{}
	w.Handle("job", func(ctx context.Context, task *scheduler.Task) error {
		mu.Lock()
		defer mu.Unlock()
		runs[task.ID]++
		if string(task.Payload) == `"flaky"` && runs[task.ID] == 1 {
			return errors.New("first attempt fails")
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	sctx := ctxT(t, 30*time.Second)
	var ids []string
	for i := range 40 {
		payload := `"ok"`
		if i%4 == 0 {
			payload = `"flaky"`
		}
		id, err := sched.Submit(sctx, "job", []byte(payload), scheduler.WithQueue("jobs"),
			scheduler.WithPriority(scheduler.Priority(i%10)))
		require.NoError(t, err)
		ids = append(ids, id)
	}
	for _, id := range ids {
		require.Eventually(t, func() bool {
			task, err := sched.Status(sctx, id)
			return err == nil && task.State == scheduler.StateSucceeded
		}, 20*time.Second, 10*time.Millisecond, fmt.Sprintf("task %s succeeds", id))
	}
	mu.Lock()
	defer mu.Unlock()
	for i, id := range ids {
		want := 1
		if i%4 == 0 {
			want = 2
		}
		require.Equal(t, want, runs[id], "runs of task %d", i)
	}
}
