// Command basic shows the scheduler on its in-memory backends, with no
// servers: priorities, retries with backoff, a task that dies, a canceled
// task, and a graceful shutdown.
//
//	go run ./examples/basic
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "basic:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	logCfg := zap.NewDevelopmentConfig()
	logCfg.DisableStacktrace = true
	logCfg.Level = zap.NewAtomicLevelAt(zap.InfoLevel)
	logger, err := logCfg.Build()
	if err != nil {
		return err
	}
	defer logger.Sync()

	broker := membroker.New()
	defer broker.Close()
	sched, err := scheduler.New(broker, memstore.New(),
		scheduler.WithLogger(logger),
		scheduler.WithRetryPolicy(scheduler.Backoff(100*time.Millisecond, time.Second)))
	if err != nil {
		return err
	}
	defer sched.Close()

	// The handlers record the order in which tasks run.
	var mu sync.Mutex
	var ran []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		ran = append(ran, s)
	}
	worker, err := sched.NewWorker(scheduler.WithConcurrency(1), scheduler.WithShutdownTimeout(5*time.Second))
	if err != nil {
		return err
	}
	worker.Handle("report.build", func(ctx context.Context, t *scheduler.Task) error {
		record(fmt.Sprintf("report.build %s (priority %d)", t.Payload, t.Priority))
		return nil
	})
	var flakyRuns atomic.Int32
	worker.Handle("payment.capture", func(ctx context.Context, t *scheduler.Task) error {
		n := flakyRuns.Add(1)
		record(fmt.Sprintf("payment.capture attempt %d", t.Attempt))
		if n <= 2 {
			return errors.New("gateway timeout")
		}
		t.Result = []byte(`{"captured":true}`)
		return nil
	})
	worker.Handle("email.send", func(ctx context.Context, t *scheduler.Task) error {
		record(fmt.Sprintf("email.send attempt %d", t.Attempt))
		return errors.New("mailbox does not exist")
	})

	// A backlog of low-priority work, then urgent work submitted after it.
	var ids []string
	for i := 1; i <= 4; i++ {
		id, err := sched.Submit(ctx, "report.build", fmt.Appendf(nil, `"low-%d"`, i), scheduler.WithPriority(scheduler.PriorityLow))
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	for i := 1; i <= 2; i++ {
		id, err := sched.Submit(ctx, "report.build", fmt.Appendf(nil, `"urgent-%d"`, i), scheduler.WithPriority(scheduler.PriorityMax))
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	payment, err := sched.Submit(ctx, "payment.capture", []byte(`{"order":42}`), scheduler.WithMaxRetries(3))
	if err != nil {
		return err
	}
	email, err := sched.Submit(ctx, "email.send", []byte(`{"to":"nobody@example.com"}`), scheduler.WithMaxRetries(1))
	if err != nil {
		return err
	}
	canceled, err := sched.Submit(ctx, "report.build", []byte(`"never"`), scheduler.WithDelay(time.Hour))
	if err != nil {
		return err
	}
	if err := sched.Cancel(ctx, canceled); err != nil {
		return err
	}
	ids = append(ids, payment, email, canceled)

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- worker.Run(runCtx) }()
	if err := waitFinished(ctx, sched, ids, 10*time.Second); err != nil {
		stop()
		<-done
		return err
	}
	stop()
	if err := <-done; err != nil {
		return err
	}

	fmt.Println("\nWhat ran, in order:")
	for i, s := range ran {
		fmt.Printf("%2d. %s\n", i+1, s)
	}
	p, err := sched.Status(ctx, payment)
	if err != nil {
		return err
	}
	fmt.Printf("\npayment.capture: %s after %d attempts, result %s\n", p.State, p.Attempt, p.Result)
	e, err := sched.Status(ctx, email)
	if err != nil {
		return err
	}
	fmt.Printf("email.send: %s after %d attempts, last error %q\n", e.State, e.Attempt, e.LastError)

	counts, err := sched.Counts(ctx)
	if err != nil {
		return err
	}
	fmt.Println("\nTasks by state:")
	for _, st := range scheduler.States {
		if counts[st] > 0 {
			fmt.Printf("  %-9s %d\n", st, counts[st])
		}
	}
	return nil
}

// waitFinished polls until every task is in a terminal state.
func waitFinished(ctx context.Context, sched *scheduler.Scheduler, ids []string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, id := range ids {
		for {
			t, err := sched.Status(ctx, id)
			if err != nil {
				return err
			}
			if t.State.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("task %s still %s after %s", id, t.State, limit)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}
