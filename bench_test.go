package scheduler_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/broker/rabbitmq"
	"github.com/dtsched/scheduler/internal/testenv"
	memstore "github.com/dtsched/scheduler/storage/memory"
	redisstore "github.com/dtsched/scheduler/storage/redis"
)

// Benchmarks of the whole path, submit to succeeded, with a no-op handler.
// Each reports tasks/s and latency percentiles in ms. The memory ones need
// no server; the durable ones (RabbitMQ with persistent messages and
// confirms, Redis) skip unless SCHEDULER_TEST_REDIS_ADDR and
// SCHEDULER_TEST_AMQP_URL are set, and use their own key and queue prefix,
// deleted afterwards:
//
//	SCHEDULER_TEST_REDIS_ADDR=127.0.0.1:6379 SCHEDULER_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ \
//	  go test -run '^$' -bench . -benchtime 5000x .
//
// Throughput on a shared machine swings from run to run; compare systems
// with the interleaved comparison program in internal/bench instead.

// backend builds a fresh, isolated broker and store pair.
type backend struct {
	name string
	new  func(b *testing.B) (scheduler.Broker, scheduler.Store)
}

func memoryBackend() backend {
	return backend{name: "memory", new: func(b *testing.B) (scheduler.Broker, scheduler.Store) {
		br := membroker.New()
		b.Cleanup(func() { _ = br.Close() })
		return br, memstore.New()
	}}
}

// durableBackend is RabbitMQ and Redis under a prefix of their own.
func durableBackend() backend {
	return backend{name: "durable", new: func(b *testing.B) (scheduler.Broker, scheduler.Store) {
		redisAddr, amqpURL := testenv.Servers(b)
		prefix := testenv.Namespace(b, redisAddr, amqpURL, "sched-bench")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		br, err := rabbitmq.New(ctx, []string{amqpURL}, rabbitmq.WithPrefix(prefix), rabbitmq.WithConnectionName(prefix))
		if err != nil {
			b.Fatal(err)
		}
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		st, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = br.Close()
			_ = rdb.Close()
		})
		return br, st
	}}
}

// latencies collects durations and reports their percentiles in ms.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	pct := func(p float64) float64 {
		return float64(l.d[min(len(l.d)-1, int(p*float64(len(l.d))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), name+"-p50-ms")
	b.ReportMetric(pct(0.99), name+"-p99-ms")
}

// doneCounter is an Observer that records submit-to-start and
// submit-to-done latencies and signals when want tasks succeeded.
type doneCounter struct {
	want  int64
	n     atomic.Int64
	done  chan struct{}
	start latencies
	lat   latencies
}

func newDoneCounter(want int) *doneCounter {
	return &doneCounter{want: int64(want), done: make(chan struct{})}
}

func (d *doneCounter) Observe(e scheduler.Event) {
	switch e.Kind {
	case scheduler.EventStarted:
		d.start.add(e.Time.Sub(e.Task.CreatedAt))
	case scheduler.EventSucceeded:
		d.lat.add(e.Time.Sub(e.Task.CreatedAt))
		if d.n.Add(1) == d.want {
			close(d.done)
		}
	}
}

// wait waits until every task succeeded.
func (d *doneCounter) wait(b *testing.B) {
	select {
	case <-d.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d tasks succeeded after 5 minutes", d.n.Load(), d.want)
	}
}

// report adds tasks/s and the latency percentiles to b.
func (d *doneCounter) report(b *testing.B, elapsed time.Duration) {
	b.ReportMetric(float64(d.want)/elapsed.Seconds(), "tasks/s")
	d.lat.report(b, "done")
	d.start.report(b, "start")
}

// setup returns a Scheduler on fresh backends of be with a worker of the
// given concurrency running a no-op handler (none when concurrency is 0),
// its observer, and a warmed-up path: the first tasks open connections,
// declare queues and load scripts, which is not what is measured.
func setup(b *testing.B, be backend, concurrency, want int) (*scheduler.Scheduler, *doneCounter) {
	warm := 0
	if concurrency > 0 {
		warm = 2 * concurrency
	}
	sched, dc := newBenchScheduler(b, be, warm+want)
	if concurrency == 0 {
		return sched, dc
	}
	runNoop(b, sched, concurrency)
	ctx := context.Background()
	for range warm {
		if _, err := sched.Submit(ctx, "noop", nil); err != nil {
			b.Fatal(err)
		}
	}
	for dc.n.Load() < int64(warm) {
		time.Sleep(time.Millisecond)
	}
	dc.start = latencies{}
	dc.lat = latencies{}
	return sched, dc
}

// newBenchScheduler returns a Scheduler on fresh backends of be, closed
// when the benchmark ends, and its observer, which waits for want tasks.
func newBenchScheduler(b *testing.B, be backend, want int) (*scheduler.Scheduler, *doneCounter) {
	br, st := be.new(b)
	dc := newDoneCounter(want)
	sched, err := scheduler.New(br, st, scheduler.WithObserver(dc), scheduler.WithRetention(0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sched.Close() })
	return sched, dc
}

// runNoop runs a worker of sched with the given concurrency and a no-op
// handler until the benchmark ends.
func runNoop(b *testing.B, sched *scheduler.Scheduler, concurrency int) {
	w, err := sched.NewWorker(scheduler.WithConcurrency(concurrency))
	if err != nil {
		b.Fatal(err)
	}
	w.Handle("noop", func(context.Context, *scheduler.Task) error { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = w.Run(ctx); close(stopped) }()
	b.Cleanup(func() { cancel(); <-stopped })
}

// submitters is the number of goroutines submitting in the end-to-end
// benchmarks, each one Submit at a time (many concurrent callers).
const submitters = 64

// BenchmarkEndToEndMemory measures submit-to-succeeded throughput on the
// memory backends with a no-op handler, for several worker concurrencies.
func BenchmarkEndToEndMemory(b *testing.B) { benchEndToEnd(b, memoryBackend()) }

// BenchmarkEndToEndDurable is BenchmarkEndToEndMemory on RabbitMQ
// (persistent messages, confirms) and Redis.
func BenchmarkEndToEndDurable(b *testing.B) { benchEndToEnd(b, durableBackend()) }

func benchEndToEnd(b *testing.B, be backend) {
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) { endToEnd(b, be, conc, 1) })
	}
	// The same with the tasks submitted by SubmitMany, 100 at a time.
	b.Run("concurrency=64/batch=100", func(b *testing.B) { endToEnd(b, be, 64, 100) })
}

func endToEnd(b *testing.B, be backend, conc, batch int) {
	sched, dc := setup(b, be, conc, b.N)
	payload := []byte(`{"n":1}`)
	reqs := make([]scheduler.Request, batch)
	for i := range reqs {
		reqs[i] = scheduler.Request{Type: "noop", Payload: payload}
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range submitters {
		wg.Go(func() {
			for {
				n := min(int64(batch), int64(b.N)-next.Add(int64(batch))+int64(batch))
				if n <= 0 {
					return
				}
				if batch == 1 {
					if _, err := sched.Submit(ctx, "noop", payload); err != nil {
						b.Error(err)
						return
					}
					continue
				}
				res, err := sched.SubmitMany(ctx, reqs[:n])
				if err != nil {
					b.Error(err)
					return
				}
				for _, r := range res {
					if r.Err != nil {
						b.Error(r.Err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	dc.wait(b)
	elapsed := time.Since(start)
	b.StopTimer()
	dc.report(b, elapsed)
}

// BenchmarkSubmitMemory measures Submit alone (store write and publish, no
// worker) from many goroutines, and the latency of each call.
func BenchmarkSubmitMemory(b *testing.B) { benchSubmit(b, memoryBackend()) }

// BenchmarkSubmitDurable is BenchmarkSubmitMemory on RabbitMQ and Redis.
func BenchmarkSubmitDurable(b *testing.B) { benchSubmit(b, durableBackend()) }

func benchSubmit(b *testing.B, be backend) {
	for _, callers := range []int{1, submitters} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			sched, _ := setup(b, be, 0, 0)
			payload := []byte(`{"n":1}`)
			ctx := context.Background()
			var lat latencies
			b.ResetTimer()
			start := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						if _, err := sched.Submit(ctx, "noop", payload); err != nil {
							b.Error(err)
							return
						}
						lat.add(time.Since(t0))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
			lat.report(b, "submit")
		})
	}
}

// BenchmarkSubmitManyMemory measures SubmitMany with batches of 100 from
// one goroutine.
func BenchmarkSubmitManyMemory(b *testing.B) { benchSubmitMany(b, memoryBackend()) }

// BenchmarkSubmitManyDurable is BenchmarkSubmitManyMemory on RabbitMQ and
// Redis.
func BenchmarkSubmitManyDurable(b *testing.B) { benchSubmitMany(b, durableBackend()) }

func benchSubmitMany(b *testing.B, be backend) {
	sched, _ := setup(b, be, 0, 0)
	const batch = 100
	reqs := make([]scheduler.Request, batch)
	for i := range reqs {
		reqs[i] = scheduler.Request{Type: "noop", Payload: []byte(`{"n":1}`)}
	}
	ctx := context.Background()
	var lat latencies
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += batch {
		t0 := time.Now()
		res, err := sched.SubmitMany(ctx, reqs[:min(batch, b.N-i)])
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		lat.add(time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	lat.report(b, "batch")
}

// steadyRate is the submission rate of the steady-rate benchmarks.
const steadyRate = 500

// BenchmarkSteadyRateMemory submits b.N tasks at a steady 500 tasks/s to a
// worker of concurrency 16 and reports the submit-to-start and
// submit-to-done latencies: what a task sees when the system is not
// saturated.
func BenchmarkSteadyRateMemory(b *testing.B) { benchSteady(b, memoryBackend()) }

// BenchmarkSteadyRateDurable is BenchmarkSteadyRateMemory on RabbitMQ and
// Redis.
func BenchmarkSteadyRateDurable(b *testing.B) { benchSteady(b, durableBackend()) }

func benchSteady(b *testing.B, be backend) {
	sched, dc := setup(b, be, 16, b.N)
	ctx := context.Background()
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	every := time.Second / steadyRate
	for i := range b.N {
		time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
		wg.Go(func() {
			if _, err := sched.Submit(ctx, "noop", nil); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	dc.wait(b)
	elapsed := time.Since(start)
	b.StopTimer()
	dc.report(b, elapsed)
}

// BenchmarkDrainMemory measures the worker side alone: b.N tasks wait in
// the queue (submitted with SubmitMany before the clock starts), then a
// worker of concurrency 64 runs them all.
func BenchmarkDrainMemory(b *testing.B) { benchDrain(b, memoryBackend()) }

// BenchmarkDrainDurable is BenchmarkDrainMemory on RabbitMQ and Redis.
func BenchmarkDrainDurable(b *testing.B) { benchDrain(b, durableBackend()) }

func benchDrain(b *testing.B, be backend) {
	sched, dc := newBenchScheduler(b, be, b.N)
	ctx := context.Background()
	reqs := make([]scheduler.Request, 500)
	for i := range reqs {
		reqs[i] = scheduler.Request{Type: "noop"}
	}
	for i := 0; i < b.N; i += len(reqs) {
		if _, err := sched.SubmitMany(ctx, reqs[:min(len(reqs), b.N-i)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	runNoop(b, sched, 64)
	dc.wait(b)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
}
