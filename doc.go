// Package scheduler is an embeddable, distributed task scheduler: a service
// submits prioritized tasks, workers in any number of processes run them,
// and every task reaches exactly one final state whatever crashes in
// between.
//
// # Backends
//
// A Scheduler needs a Broker, which moves tasks to workers in priority
// order, and a Store, which keeps every task's state. In one process both
// can live in memory:
//
//	broker := membroker.New()      // github.com/dtsched/scheduler/broker/memory
//	store := memstore.New()        // github.com/dtsched/scheduler/storage/memory
//
// When work spans machines, RabbitMQ is the broker and Redis the store:
//
//	broker, err := rabbitmq.New(ctx, []string{"amqp://guest:guest@rabbit:5672/"})
//	store, err := redisstore.New(redis.NewClient(&redis.Options{Addr: "redis:6379"}))
//
// # Submitting
//
//	sched, err := scheduler.New(broker, store, scheduler.WithLogger(logger))
//	defer sched.Close()
//	id, err := sched.Submit(ctx, "email.send", payload,
//		scheduler.WithPriority(scheduler.PriorityHigh), // 0..9, 9 runs first
//		scheduler.WithMaxRetries(5),
//		scheduler.WithTimeout(time.Minute),
//		scheduler.WithDelay(10*time.Second),
//		scheduler.WithUniqueKey("welcome:"+userID))
//
// Submit returns nil only when the task is durable in the store and
// confirmed by the broker. Bad input returns a *ValidationError
// (errors.Is(err, ErrInvalidTask)) naming the field, and stores nothing.
// Status, List, Cancel, Retry, Counts, QueueDepth and Workers inspect and
// steer tasks afterwards.
//
// # Working
//
//	worker, err := sched.NewWorker(scheduler.WithConcurrency(16), scheduler.WithQueues("default", "mail"))
//	worker.Handle("email.send", func(ctx context.Context, t *scheduler.Task) error {
//		return send(ctx, t.Payload) // nil: succeeded; an error: retried with backoff
//	})
//	err = worker.Run(ctx) // until ctx ends, then a graceful drain
//
// A handler's context ends at the task's timeout, when the task is
// canceled, and when the worker gives up draining. Returning SkipRetry makes
// a task dead at once; Snooze puts it back to wait without counting a
// failure; a panic fails the attempt and the worker lives on.
//
// # Periodic tasks
//
//	err = sched.RegisterPeriodic(scheduler.Periodic{
//		Name: "nightly-report", Spec: "30 2 * * *", Location: newYork,
//		Type: "report.build", Options: []scheduler.SubmitOption{scheduler.WithQueue("reports")},
//	})
//	err = sched.RunPeriodic(ctx) // on any number of nodes; until ctx ends
//
// Each tick is submitted once across all nodes running RunPeriodic: its
// task ID is derived from the schedule's name and the tick, and the store
// admits one task per ID. The task carries Schedule and Tick. After
// downtime only the most recent missed tick runs, if it is at most
// Periodic.CatchUp old. See docs/PERIODIC.md.
//
// # Guarantees
//
// Execution is at least once. A message is acknowledged only after the
// task's new state is stored, so a worker that dies mid-task loses nothing:
// its task is delivered again and taken over by another worker, and
// Task.Attempt shows that it ran twice. Every state change is fenced by
// the attempt number, so a duplicate or late message, or a worker that
// was presumed dead, can never move a task out of a final state or
// overwrite a newer attempt. A crash between the store write and the
// publish of a Submit leaves the task in the store's outbox, from which a
// worker's periodic sweep publishes it.
//
// The task states and their transitions are described at State.
package scheduler
