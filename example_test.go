package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

// The whole life of a task: submit it, run it on a worker, read its state.
func Example() {
	ctx := context.Background()
	broker := membroker.New() // or rabbitmq.New(ctx, urls)
	defer broker.Close()
	sched, err := scheduler.New(broker, memstore.New()) // or redisstore.New(client)
	if err != nil {
		panic(err)
	}
	defer sched.Close()

	worker, err := sched.NewWorker(scheduler.WithConcurrency(4))
	if err != nil {
		panic(err)
	}
	worker.Handle("greet", func(ctx context.Context, t *scheduler.Task) error {
		fmt.Printf("hello, %s\n", t.Payload)
		t.Result = []byte(`"greeted"`)
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error)
	go func() { stopped <- worker.Run(runCtx) }()

	id, err := sched.Submit(ctx, "greet", []byte(`"world"`), scheduler.WithPriority(scheduler.PriorityHigh))
	if err != nil {
		panic(err)
	}
	waitTerminal(sched, id)
	stop() // Run drains: it waits for running tasks, then returns
	<-stopped

	task, err := sched.Status(ctx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println(task.State, task.Attempt, string(task.Result))
	// Output:
	// hello, "world"
	// succeeded 1 "greeted"
}

// Handlers fail by returning an error: the task is retried with backoff
// until its retries are used up, then it is dead with its last error.
// SkipRetry makes it dead at once.
func ExampleWorker_Handle() {
	ctx := context.Background()
	broker := membroker.New()
	defer broker.Close()
	sched, _ := scheduler.New(broker, memstore.New(),
		scheduler.WithRetryPolicy(scheduler.Backoff(time.Millisecond, 10*time.Millisecond)))
	defer sched.Close()
	worker, _ := sched.NewWorker()

	calls := 0
	worker.Handle("charge", func(ctx context.Context, t *scheduler.Task) error {
		calls++
		if calls < 3 {
			return errors.New("gateway timeout")
		}
		return nil
	})
	worker.Handle("refund", func(ctx context.Context, t *scheduler.Task) error {
		return fmt.Errorf("order already refunded: %w", scheduler.SkipRetry)
	})
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error)
	go func() { stopped <- worker.Run(runCtx) }()

	charge, _ := sched.Submit(ctx, "charge", nil, scheduler.WithMaxRetries(5))
	refund, _ := sched.Submit(ctx, "refund", nil, scheduler.WithMaxRetries(5))
	waitTerminal(sched, charge)
	waitTerminal(sched, refund)
	stop()
	<-stopped

	for _, id := range []string{charge, refund} {
		t, _ := sched.Status(ctx, id)
		fmt.Printf("%s: %s after %d attempt(s) %s\n", t.Type, t.State, t.Attempt, t.LastError)
	}
	// Output:
	// charge: succeeded after 3 attempt(s) gateway timeout
	// refund: dead after 1 attempt(s) order already refunded: scheduler: skip retry
}

// A unique key keeps a second task with the same key out while the first is
// unfinished; the duplicate error carries the first task's ID.
func ExampleWithUniqueKey() {
	ctx := context.Background()
	broker := membroker.New()
	defer broker.Close()
	sched, _ := scheduler.New(broker, memstore.New())
	defer sched.Close()

	first, _ := sched.Submit(ctx, "invoice.send", []byte(`{"invoice":7}`), scheduler.WithUniqueKey("invoice:7"))
	second, err := sched.Submit(ctx, "invoice.send", []byte(`{"invoice":7}`), scheduler.WithUniqueKey("invoice:7"))
	fmt.Println(errors.Is(err, scheduler.ErrDuplicateTask), second == first)
	// Output:
	// true true
}

// Tasks may wait before they run, and be canceled until they finish.
func ExampleScheduler_Cancel() {
	ctx := context.Background()
	broker := membroker.New()
	defer broker.Close()
	sched, _ := scheduler.New(broker, memstore.New())
	defer sched.Close()

	id, _ := sched.Submit(ctx, "reminder", nil, scheduler.WithDelay(24*time.Hour))
	t, _ := sched.Status(ctx, id)
	fmt.Println(t.State)
	if err := sched.Cancel(ctx, id); err != nil {
		panic(err)
	}
	t, _ = sched.Status(ctx, id)
	fmt.Println(t.State)
	fmt.Println(errors.Is(sched.Cancel(ctx, id), scheduler.ErrTaskFinished))
	// Output:
	// scheduled
	// canceled
	// true
}

// Bad input is refused with a typed error naming the field; nothing is
// stored.
func ExampleValidationError() {
	ctx := context.Background()
	broker := membroker.New()
	defer broker.Close()
	sched, _ := scheduler.New(broker, memstore.New())
	defer sched.Close()

	_, err := sched.Submit(ctx, "resize", nil, scheduler.WithPriority(12))
	var ve *scheduler.ValidationError
	fmt.Println(errors.Is(err, scheduler.ErrInvalidTask), errors.As(err, &ve) && ve.Field == "priority")
	fmt.Println(err)
	// Output:
	// true true
	// scheduler: invalid task: priority: must be 0 to 9, got 12
}

// SubmitMany stores and publishes a batch in one round trip each.
func ExampleScheduler_SubmitMany() {
	ctx := context.Background()
	broker := membroker.New()
	defer broker.Close()
	sched, _ := scheduler.New(broker, memstore.New())
	defer sched.Close()

	results, err := sched.SubmitMany(ctx, []scheduler.Request{
		{Type: "thumbnail", Payload: []byte(`{"img":1}`)},
		{Type: "thumbnail", Payload: []byte(`{"img":2}`), Options: []scheduler.SubmitOption{scheduler.WithPriority(9)}},
	})
	if err != nil {
		panic(err)
	}
	for _, r := range results {
		t, _ := sched.Status(ctx, r.ID)
		fmt.Println(r.Err, t.State, t.Priority)
	}
	depth, _ := sched.QueueDepth(ctx, scheduler.DefaultQueue)
	fmt.Println("ready in queue:", depth)
	// Output:
	// <nil> pending 5
	// <nil> pending 9
	// ready in queue: 2
}

// An Observer sees every task event; the metrics package is one.
func ExampleWithObserver() {
	ctx := context.Background()
	broker := membroker.New()
	defer broker.Close()
	events := make(chan string, 10)
	sched, _ := scheduler.New(broker, memstore.New(), scheduler.WithObserver(scheduler.ObserverFunc(func(e scheduler.Event) {
		events <- e.Kind.String() + " " + e.Task.Type
	})))
	defer sched.Close()
	id, _ := sched.Submit(ctx, "ping", nil)

	worker, _ := sched.NewWorker()
	worker.Handle("ping", func(context.Context, *scheduler.Task) error { return nil })
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error)
	go func() { stopped <- worker.Run(runCtx) }()
	waitTerminal(sched, id)
	stop()
	<-stopped
	close(events)
	for e := range events {
		fmt.Println(e)
	}
	// Output:
	// submitted ping
	// started ping
	// succeeded ping
}

// waitTerminal waits until the task with id has finished.
func waitTerminal(sched *scheduler.Scheduler, id string) {
	for {
		t, err := sched.Status(context.Background(), id)
		if err != nil {
			panic(err)
		}
		if t.State.Terminal() {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
