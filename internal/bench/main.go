// Command bench compares, in one run, the end-to-end throughput, latency
// and memory of the scheduler with a hand-written pipeline on the raw
// clients and with hibiken/asynq, on the same RabbitMQ and Redis servers.
// It lives in a module of its own so that asynq never enters the library's
// go.mod.
//
//	go run . -short                      # a few seconds, a smoke test
//	go run .                             # the figures of docs/PERFORMANCE.md
//
// The systems (-systems):
//
//	raw        a hand-written pipeline on the bare clients: producer SETs the
//	           record pending, publishes a persistent message to a priority
//	           queue and waits for its confirm; consumer SETs running, SETs
//	           succeeded, acks
//	rabbitmq   the same without the Redis writes: RabbitMQ alone, the ceiling
//	           of any design that sends one message per task
//	asynq      hibiken/asynq v0.26 on the same Redis (its own database)
//	durable    the scheduler on RabbitMQ (persistent messages) and Redis
//	transient  the same with rabbitmq.WithTransientMessages
//	memory     the scheduler on the memory backends
//
// Every system runs the same number of tasks with the same no-op handler
// and the same worker concurrency, submitted by the same number of
// concurrent producers; the systems take turns, in a rotating order, for
// several rounds, and the table shows medians and the median of the
// per-round ratios. Each run is isolated: its own Redis key prefix (asynq:
// its own queue in its own database), its own RabbitMQ queues, all deleted
// afterwards.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type config struct {
	redisAddr    string
	amqpURL      string
	asynqDB      int
	tasks        int
	rounds       int
	steadyRounds int
	producers    int
	concurrency  int
	rate         int
	steady       time.Duration
	memTasks     int
	systems      string
	cpuprofile   string
	short        bool
}

// instance is one running system.
type instance interface {
	// submit submits one task with payload, durably.
	submit(ctx context.Context, payload []byte) error
	// memory returns the bytes the system's stored tasks take.
	memory(ctx context.Context) (int64, error)
	// close stops the system and deletes everything it stored.
	close() error
}

// system starts a fresh instance; work says whether to run workers, whose
// finished tasks go to rec.
type system struct {
	name  string
	key   string
	start func(ctx context.Context, cfg *config, rec *recorder, work bool) (instance, error)
	redis bool // stores tasks in Redis (memory in MEMORY USAGE)
}

func main() {
	cfg := &config{}
	flag.StringVar(&cfg.redisAddr, "redis", envOr("SCHEDULER_TEST_REDIS_ADDR", "127.0.0.1:6379"), "Redis address")
	flag.StringVar(&cfg.amqpURL, "amqp", envOr("SCHEDULER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ URL")
	flag.IntVar(&cfg.asynqDB, "asynq-db", 15, "Redis database for asynq (its key names are fixed); never flushed")
	flag.IntVar(&cfg.tasks, "n", 20000, "tasks per run")
	flag.IntVar(&cfg.rounds, "rounds", 5, "rounds (each runs every system once)")
	flag.IntVar(&cfg.producers, "producers", 128, "concurrent submitting goroutines")
	flag.IntVar(&cfg.concurrency, "concurrency", 64, "worker concurrency")
	flag.IntVar(&cfg.rate, "rate", 500, "tasks/s of the steady-rate latency run")
	flag.DurationVar(&cfg.steady, "steady", 10*time.Second, "length of each steady-rate run")
	flag.IntVar(&cfg.steadyRounds, "steady-rounds", 3, "rounds of steady-rate runs")
	flag.IntVar(&cfg.memTasks, "mem-tasks", 10000, "queued tasks for the memory figures")
	flag.StringVar(&cfg.systems, "systems", "raw,rabbitmq,asynq,durable,transient,memory", "systems to run, of: raw, rabbitmq, asynq, durable, transient, memory")
	flag.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of this process to the file")
	flag.BoolVar(&cfg.short, "short", false, "a few seconds: 1 round of 1000 tasks, 1 s steady run, 1000 queued tasks")
	flag.Parse()
	if cfg.short {
		cfg.tasks, cfg.rounds, cfg.steady, cfg.steadyRounds, cfg.memTasks = 1000, 1, time.Second, 1, 1000
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func allSystems() []system {
	return []system{
		{name: "raw pipeline (RabbitMQ + Redis)", key: "raw", start: startRaw, redis: true},
		{name: "RabbitMQ alone (no store)", key: "rabbitmq", start: startRabbitMQOnly, redis: true},
		{name: "asynq v0.26 (Redis)", key: "asynq", start: startAsynq, redis: true},
		{name: "scheduler, RabbitMQ + Redis (durable)", key: "durable", start: startOursDurable(false), redis: true},
		{name: "scheduler, RabbitMQ transient + Redis", key: "transient", start: startOursDurable(true), redis: true},
		{name: "scheduler, memory backends", key: "memory", start: startOursMemory},
	}
}

func run(cfg *config) error {
	var systems []system
	for _, s := range allSystems() {
		for _, k := range strings.Split(cfg.systems, ",") {
			if strings.TrimSpace(k) == s.key {
				systems = append(systems, s)
			}
		}
	}
	if len(systems) == 0 {
		return errors.New("no known system in -systems")
	}
	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	fmt.Printf("# %d tasks per run, %d rounds, %d producers, worker concurrency %d, no-op handler\n\n",
		cfg.tasks, cfg.rounds, cfg.producers, cfg.concurrency)

	// Throughput: every round runs every system, in a rotating order.
	res := make(map[string][]result)
	err := eachRound(cfg.rounds, systems, func(r int, s system) error {
		out, err := throughput(ctx, cfg, s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		res[s.key] = append(res[s.key], out)
		fmt.Fprintf(os.Stderr, "round %d %-40s %8.0f tasks/s  p50 %7.2f ms  p99 %7.2f ms  cpu/task µs: go %.0f redis %.0f rabbitmq %.0f\n",
			r+1, s.name, out.rate(), out.pct(0.5), out.pct(0.99),
			perTask(out.cpu.self, out.tasks), perTask(out.cpu.redis, out.tasks), perTask(out.cpu.rabbit, out.tasks))
		return nil
	})
	if err != nil {
		return err
	}
	printThroughput(systems, res)

	// Latency at a steady rate, interleaved like the throughput runs.
	fmt.Printf("\n## Latency at a steady %d tasks/s (%s per run, submit to done, median of %d rounds)\n\n", cfg.rate, cfg.steady, cfg.steadyRounds)
	p50s, p99s, maxs := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	stages := map[string]*[numStages][]time.Duration{}
	var late []time.Duration
	err = eachRound(cfg.steadyRounds, systems, func(r int, s system) error {
		out, err := steady(ctx, cfg, s)
		if err != nil {
			return fmt.Errorf("%s steady: %w", s.name, err)
		}
		if stages[s.key] == nil {
			stages[s.key] = new([numStages][]time.Duration)
		}
		for i, d := range out.stages {
			stages[s.key][i] = append(stages[s.key][i], d...)
		}
		late = append(late, out.late...)
		p50s[s.key] = append(p50s[s.key], out.pct(0.5))
		p99s[s.key] = append(p99s[s.key], out.pct(0.99))
		maxs[s.key] = append(maxs[s.key], out.pct(1))
		fmt.Fprintf(os.Stderr, "steady round %d %-40s p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms\n", r+1, s.name, out.pct(0.5), out.pct(0.99), out.pct(1))
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Println("| system | p50 ms | p99 ms | max ms | p99 / raw p99 |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for _, s := range systems {
		fmt.Printf("| %s | %.2f | %.2f | %.2f | %s |\n", s.name, median(p50s[s.key]), median(p99s[s.key]), median(maxs[s.key]), medianRatio(p99s[s.key], p99s["raw"]))
	}
	printStages(systems, stages, late)

	// Memory of queued tasks.
	fmt.Printf("\n## Memory per queued task (%d tasks submitted, no worker)\n\n", cfg.memTasks)
	fmt.Println("| system | bytes per task | measured as |")
	fmt.Println("|---|---:|---|")
	for _, s := range systems {
		if s.key == "transient" || s.key == "rabbitmq" {
			continue
		}
		n, err := memoryPerTask(ctx, cfg, s)
		if err != nil {
			return fmt.Errorf("%s memory: %w", s.name, err)
		}
		how := "Redis MEMORY USAGE of its keys"
		if !s.redis {
			how = "Go heap growth"
		}
		fmt.Printf("| %s | %.0f | %s |\n", s.name, n, how)
	}
	return nil
}

// printStages prints the parts of the steady-rate latencies, pooled over
// the rounds, for the systems that report them.
func printStages(systems []system, stages map[string]*[numStages][]time.Duration, late []time.Duration) {
	fmt.Printf("\nWhere the time goes, p50 / p99 ms of each stage (pooled over the rounds; the stages' quantiles do not add up to the total's):\n\n")
	fmt.Print("| system |")
	for _, n := range stageNames {
		fmt.Printf(" %s |", n)
	}
	fmt.Print("\n|---|")
	for range stageNames {
		fmt.Print("---:|")
	}
	fmt.Println()
	for _, s := range systems {
		st := stages[s.key]
		if st == nil || len(st[0]) == 0 {
			continue
		}
		fmt.Printf("| %s |", s.name)
		for _, d := range st {
			fmt.Printf(" %.2f / %.2f |", ms(quantile(d, 0.5)), ms(quantile(d, 0.99)))
		}
		fmt.Println()
	}
	if len(late) > 0 {
		fmt.Printf("\nSubmit calls came %.2f ms (p50) and %.2f ms (p99) after their tasks were due: the pacer's lateness, not counted in the latencies above.\n",
			ms(quantile(late, 0.5)), ms(quantile(late, 0.99)))
	}
}

// eachRound runs f for every system in each of rounds rounds, the
// systems in an order that rotates from round to round.
func eachRound(rounds int, systems []system, f func(round int, s system) error) error {
	for r := range rounds {
		for i := range systems {
			if err := f(r, systems[(i+r)%len(systems)]); err != nil {
				return err
			}
		}
	}
	return nil
}

// medianRatio returns the median of the per-round ratios a[i]/b[i],
// formatted, or "—" if either has no rounds.
func medianRatio(a, b []float64) string {
	if len(a) == 0 || len(b) == 0 {
		return "—"
	}
	var rs []float64
	for i := range min(len(a), len(b)) {
		rs = append(rs, a[i]/b[i])
	}
	return fmt.Sprintf("%.2f", median(rs))
}

func printThroughput(systems []system, res map[string][]result) {
	rates := make(map[string][]float64, len(res))
	for k, rs := range res {
		for _, r := range rs {
			rates[k] = append(rates[k], r.rate())
		}
	}
	fmt.Println("## End-to-end throughput (submit to done)")
	fmt.Println()
	fmt.Println("| system | tasks/s (median) | all rounds | / raw | / asynq | p50 ms | p99 ms | CPU µs/task: Go, Redis, RabbitMQ |")
	fmt.Println("|---|---:|---|---:|---:|---:|---:|---|")
	for _, s := range systems {
		var p50, p99, self, rd, rb []float64
		var all []string
		for _, r := range res[s.key] {
			p50 = append(p50, r.pct(0.5))
			p99 = append(p99, r.pct(0.99))
			all = append(all, strconv.FormatFloat(r.rate(), 'f', 0, 64))
			self = append(self, perTask(r.cpu.self, r.tasks))
			rd = append(rd, perTask(r.cpu.redis, r.tasks))
			rb = append(rb, perTask(r.cpu.rabbit, r.tasks))
		}
		fmt.Printf("| %s | %.0f | %s | %s | %s | %.1f | %.1f | %.0f, %.0f, %.0f |\n", s.name, median(rates[s.key]), strings.Join(all, ", "),
			medianRatio(rates[s.key], rates["raw"]), medianRatio(rates[s.key], rates["asynq"]), median(p50), median(p99), median(self), median(rd), median(rb))
	}
}

// payloadAt is a task payload carrying its submit time.
func payloadAt(t time.Time) []byte {
	return strconv.AppendInt([]byte(`{"t":`), t.UnixNano(), 10)
}

// submitTime reads the submit time back from a payload.
func submitTime(p []byte) time.Time {
	s := strings.TrimSuffix(strings.TrimPrefix(string(p), `{"t":`), "}")
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Unix(0, n)
}

// warmup is the number of tasks each run submits and waits for before it
// measures: connections, channels and scripts are then ready.
const warmup = 64

// warm submits the warm-up tasks and waits until they are done.
func warm(ctx context.Context, in instance, rec *recorder) error {
	for range warmup {
		if err := in.submit(ctx, payloadAt(time.Unix(0, 0))); err != nil {
			return err
		}
	}
	select {
	case <-rec.warmDone:
		return nil
	case <-time.After(time.Minute):
		return errors.New("warm-up tasks not done after a minute")
	}
}

// throughput submits cfg.tasks tasks from cfg.producers goroutines while
// the workers run, and measures until the last is done.
func throughput(ctx context.Context, cfg *config, s system) (result, error) {
	rec := newRecorder(cfg.tasks)
	in, err := s.start(ctx, cfg, rec, true)
	if err != nil {
		return result{}, err
	}
	err = warm(ctx, in, rec)
	before := readCPU(ctx, cfg)
	start := time.Now()
	if err == nil {
		err = submitAll(ctx, cfg, in, cfg.tasks)
	}
	if err == nil {
		select {
		case <-rec.done:
		case <-time.After(5 * time.Minute):
			err = fmt.Errorf("only %d of %d tasks done after 5 minutes", len(rec.latencies()), cfg.tasks)
		}
	}
	elapsed := time.Since(start)
	used := readCPU(ctx, cfg).sub(before)
	if cerr := in.close(); err == nil {
		err = cerr
	}
	return result{tasks: cfg.tasks, elapsed: elapsed, lat: rec.latencies(), cpu: used}, err
}

func submitAll(ctx context.Context, cfg *config, in instance, n int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range cfg.producers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := in.submit(ctx, payloadAt(time.Now())); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// steady submits at cfg.rate tasks/s for cfg.steady. A task's latency
// runs from its submit call. How late each call came after the task was
// due is reported apart (result.late): it is the pacer's, not the
// system's (the Go runtime's timers wake a sleeper up to about a
// millisecond late on an idle machine), and it shows a submitter falling
// behind.
func steady(ctx context.Context, cfg *config, s system) (result, error) {
	n := int(float64(cfg.rate) * cfg.steady.Seconds())
	rec := newRecorder(n).withBreakdown()
	in, err := s.start(ctx, cfg, rec, true)
	if err != nil {
		return result{}, err
	}
	if err := warm(ctx, in, rec); err != nil {
		_ = in.close()
		return result{}, err
	}
	due := make(chan time.Time, n)
	late := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range cfg.producers {
		wg.Go(func() {
			for t := range due {
				now := time.Now()
				late[next.Add(1)-1] = now.Sub(t)
				if err := in.submit(ctx, payloadAt(now)); err != nil {
					failed.Store(err)
				}
			}
		})
	}
	start := time.Now()
	every := time.Second / time.Duration(cfg.rate)
	for i := range n {
		at := start.Add(time.Duration(i) * every)
		time.Sleep(time.Until(at))
		due <- at
	}
	close(due)
	wg.Wait()
	if e, ok := failed.Load().(error); ok {
		err = e
	}
	if err == nil {
		select {
		case <-rec.done:
		case <-time.After(time.Minute):
			err = fmt.Errorf("only %d of %d tasks done a minute after the last submit", len(rec.latencies()), n)
		}
	}
	if cerr := in.close(); err == nil {
		err = cerr
	}
	return result{tasks: n, elapsed: time.Since(start), lat: rec.latencies(), stages: rec.stageLatencies(), late: late}, err
}

// memoryPerTask submits cfg.memTasks tasks with no worker and returns the
// memory they take per task.
func memoryPerTask(ctx context.Context, cfg *config, s system) (float64, error) {
	base := heapInUse()
	in, err := s.start(ctx, cfg, nil, false)
	if err != nil {
		return 0, err
	}
	defer in.close()
	if s.redis {
		base = 0
	}
	if err := submitAll(ctx, cfg, in, cfg.memTasks); err != nil {
		return 0, err
	}
	time.Sleep(200 * time.Millisecond) // background outbox batches land
	used, err := in.memory(ctx)
	if err != nil {
		return 0, err
	}
	return float64(used-base) / float64(cfg.memTasks), nil
}
