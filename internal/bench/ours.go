package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/broker/rabbitmq"
	"github.com/dtsched/scheduler/internal/testenv"
	memstore "github.com/dtsched/scheduler/storage/memory"
	redisstore "github.com/dtsched/scheduler/storage/redis"
)

// ours is the scheduler on either backend pair, with one worker of the
// configured concurrency and a no-op handler. A task counts as done when
// the worker has stored it succeeded (EventSucceeded).
type ours struct {
	sched   *scheduler.Scheduler
	broker  scheduler.Broker
	rdb     *redis.Client
	prefix  string // RabbitMQ and Redis prefix (durable only)
	amqpURL string
	stop    context.CancelFunc
	stopped chan struct{}
}

// observer counts succeeded tasks into a recorder; the payload carries the
// submit time.
type observer struct{ rec *recorder }

func (o observer) Observe(e scheduler.Event) {
	if o.rec == nil {
		return
	}
	// Now, not e.Time: an event comes once its change is stored, and
	// e.Time is when the worker began it.
	switch e.Kind {
	case scheduler.EventStarted:
		if o.rec.breakdown {
			o.rec.started(submitTime(e.Task.Payload), e.Time, time.Now())
		}
	case scheduler.EventSucceeded:
		o.rec.add(submitTime(e.Task.Payload), time.Now())
	}
}

func startOursMemory(ctx context.Context, cfg *config, rec *recorder, work bool) (instance, error) {
	return startOurs(ctx, cfg, rec, work, false, membroker.New(), memstore.New())
}

func startOursDurable(transient bool) func(ctx context.Context, cfg *config, rec *recorder, work bool) (instance, error) {
	return func(ctx context.Context, cfg *config, rec *recorder, work bool) (instance, error) {
		var b [4]byte
		_, _ = rand.Read(b[:])
		prefix := "bench-" + hex.EncodeToString(b[:])
		opts := []rabbitmq.Option{rabbitmq.WithPrefix(prefix), rabbitmq.WithConnectionName(prefix)}
		if transient {
			opts = append(opts, rabbitmq.WithTransientMessages())
		}
		br, err := rabbitmq.New(ctx, []string{cfg.amqpURL}, opts...)
		if err != nil {
			return nil, err
		}
		rdb := redis.NewClient(&redis.Options{Addr: cfg.redisAddr})
		var in instance
		st, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
		if err == nil {
			in, err = startOurs(ctx, cfg, rec, work, true, br, st)
		}
		if err != nil {
			// Whatever the worker declared goes with the namespace.
			_ = br.Close()
			_ = testenv.DeleteNamespace(cfg.redisAddr, cfg.amqpURL, prefix, scheduler.DefaultQueue)
			_ = rdb.Close()
			return nil, err
		}
		o := in.(*ours)
		o.rdb, o.prefix, o.amqpURL = rdb, prefix, cfg.amqpURL
		return o, nil
	}
}

func startOurs(ctx context.Context, cfg *config, rec *recorder, work, durable bool, br scheduler.Broker, st scheduler.Store) (instance, error) {
	sched, err := scheduler.New(br, st, scheduler.WithObserver(observer{rec}))
	if err != nil {
		return nil, err
	}
	o := &ours{sched: sched, broker: br, stop: func() {}, stopped: make(chan struct{})}
	if !work {
		close(o.stopped)
		return o, nil
	}
	w, err := sched.NewWorker(scheduler.WithConcurrency(cfg.concurrency))
	if err != nil {
		_ = sched.Close()
		return nil, err
	}
	w.Handle("noop", func(context.Context, *scheduler.Task) error { return nil })
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o.stop = cancel
	go func() {
		defer close(o.stopped)
		if err := w.Run(wctx); err != nil {
			fmt.Println("worker:", err)
		}
	}()
	if durable {
		// The worker's consumer declares the queue: wait until it has.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := br.Depth(ctx, scheduler.DefaultQueue); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return o, nil
}

func (o *ours) submit(ctx context.Context, payload []byte) error {
	_, err := o.sched.Submit(ctx, "noop", payload)
	return err
}

func (o *ours) memory(ctx context.Context) (int64, error) {
	if o.rdb == nil {
		return heapInUse(), nil
	}
	return memoryUsage(ctx, o.rdb, "{"+o.prefix+"}:*")
}

func (o *ours) close() error {
	o.stop()
	<-o.stopped
	_ = o.sched.Close()
	_ = o.broker.Close()
	if o.rdb == nil {
		return nil
	}
	err := testenv.DeleteNamespace(o.rdb.Options().Addr, o.amqpURL, o.prefix, scheduler.DefaultQueue)
	_ = o.rdb.Close()
	return err
}

// heapInUse returns the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
