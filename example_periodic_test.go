package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

// Register a schedule, run the periodic loop next to a worker, and handle
// a tick. Every node of a cluster does the same; each tick runs once.
func ExampleScheduler_RegisterPeriodic() {
	broker := membroker.New()
	defer broker.Close()
	sched, err := scheduler.New(broker, memstore.New())
	if err != nil {
		panic(err)
	}
	defer sched.Close()

	err = sched.RegisterPeriodic(scheduler.Periodic{
		Name:    "cache-refresh",
		Every:   time.Second,
		Type:    "cache.refresh",
		Payload: []byte(`{"region":"eu"}`),
		Options: []scheduler.SubmitOption{scheduler.WithPriority(scheduler.PriorityHigh), scheduler.WithTimeout(30 * time.Second)},
	})
	if err != nil {
		panic(err)
	}
	// A mistyped spec is refused when it is registered.
	err = sched.RegisterPeriodic(scheduler.Periodic{Name: "report", Spec: "0 25 * * *", Type: "report.build"})
	fmt.Println("invalid spec:", errors.Is(err, scheduler.ErrInvalidSchedule))

	ran := make(chan *scheduler.Task, 1)
	worker, err := sched.NewWorker()
	if err != nil {
		panic(err)
	}
	worker.Handle("cache.refresh", func(ctx context.Context, t *scheduler.Task) error {
		select {
		case ran <- t:
		default:
		}
		return nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = worker.Run(ctx) })
	wg.Go(func() { _ = sched.RunPeriodic(ctx) })

	t := <-ran
	fmt.Println("schedule:", t.Schedule, "payload:", string(t.Payload))
	fmt.Println("tick on a whole second:", t.Tick.Equal(t.Tick.Truncate(time.Second)))
	cancel()
	wg.Wait()

	for _, s := range sched.Schedules() {
		fmt.Println("registered:", s.Name, s.Spec)
	}
	// Output:
	// invalid spec: true
	// schedule: cache-refresh payload: {"region":"eu"}
	// tick on a whole second: true
	// registered: cache-refresh @every 1s
}
