package metrics_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dtsched/scheduler"
	membroker "github.com/dtsched/scheduler/broker/memory"
	"github.com/dtsched/scheduler/metrics"
	memstore "github.com/dtsched/scheduler/storage/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 10 * time.Second

func task(typ, queue string, prio scheduler.Priority) *scheduler.Task {
	return &scheduler.Task{ID: "t1", Type: typ, Queue: queue, Priority: prio}
}

func TestObserveCountsEvents(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.WithBuckets([]float64{1, 10}))
	require.NoError(t, err)

	mail := task("email.send", "mail", 7)
	thumb := task("thumb", "default", 5)
	for _, e := range []scheduler.Event{
		{Kind: scheduler.EventSubmitted, Task: mail},
		{Kind: scheduler.EventSubmitted, Task: mail},
		{Kind: scheduler.EventSubmitted, Task: thumb},
		{Kind: scheduler.EventStarted, Task: mail, Wait: 500 * time.Millisecond},
		{Kind: scheduler.EventStarted, Task: thumb, Wait: 3 * time.Second},
		{Kind: scheduler.EventSucceeded, Task: mail, Duration: 2 * time.Second},
		{Kind: scheduler.EventFailed, Task: thumb, Duration: 20 * time.Second, Err: errors.New("x")},
		{Kind: scheduler.EventRetried, Task: thumb},
		{Kind: scheduler.EventStarted, Task: thumb, Wait: 3 * time.Second},
		{Kind: scheduler.EventFailed, Task: thumb, Duration: 200 * time.Millisecond, Err: errors.New("x")},
		{Kind: scheduler.EventDead, Task: thumb, Err: errors.New("x")},
		{Kind: scheduler.EventCanceled, Task: mail},
		{Kind: scheduler.EventStarted, Task: mail, Wait: 500 * time.Millisecond},
		{Kind: scheduler.EventSnoozed, Task: mail, Duration: 100 * time.Millisecond},
		{Kind: scheduler.EventStarted, Task: mail, Wait: 500 * time.Millisecond},
		{Kind: scheduler.EventAborted, Task: mail, Duration: 300 * time.Millisecond},
		{Kind: scheduler.EventStarted, Task: mail, Wait: 500 * time.Millisecond}, // still running
		{Kind: scheduler.EventKind(99), Task: mail},                              // unknown kinds are ignored
		{Kind: scheduler.EventSubmitted},                                         // as are events without a task
	} {
		m.Observe(e)
	}

	const want = `
# HELP scheduler_tasks_submitted_total Tasks submitted by this process.
# TYPE scheduler_tasks_submitted_total counter
scheduler_tasks_submitted_total{priority="5",queue="default",type="thumb"} 1
scheduler_tasks_submitted_total{priority="7",queue="mail",type="email.send"} 2
# HELP scheduler_tasks_finished_total Tasks that reached a final state (succeeded, dead, canceled), as seen by this process.
# TYPE scheduler_tasks_finished_total counter
scheduler_tasks_finished_total{state="canceled",type="email.send"} 1
scheduler_tasks_finished_total{state="dead",type="thumb"} 1
scheduler_tasks_finished_total{state="succeeded",type="email.send"} 1
# HELP scheduler_task_retries_total Failed attempts scheduled to run again, plus dead or canceled tasks retried by request.
# TYPE scheduler_task_retries_total counter
scheduler_task_retries_total{type="thumb"} 1
# HELP scheduler_tasks_dead_total Tasks whose last attempt failed.
# TYPE scheduler_tasks_dead_total counter
scheduler_tasks_dead_total{type="thumb"} 1
# HELP scheduler_tasks_in_flight Attempts running now in this process's workers.
# TYPE scheduler_tasks_in_flight gauge
scheduler_tasks_in_flight{type="email.send"} 1
scheduler_tasks_in_flight{type="thumb"} 0
# HELP scheduler_task_run_duration_seconds How long handlers ran, by outcome of the attempt (succeeded, failed, snoozed, aborted).
# TYPE scheduler_task_run_duration_seconds histogram
scheduler_task_run_duration_seconds_bucket{outcome="aborted",type="email.send",le="1"} 1
scheduler_task_run_duration_seconds_bucket{outcome="aborted",type="email.send",le="10"} 1
scheduler_task_run_duration_seconds_bucket{outcome="aborted",type="email.send",le="+Inf"} 1
scheduler_task_run_duration_seconds_sum{outcome="aborted",type="email.send"} 0.3
scheduler_task_run_duration_seconds_count{outcome="aborted",type="email.send"} 1
scheduler_task_run_duration_seconds_bucket{outcome="failed",type="thumb",le="1"} 1
scheduler_task_run_duration_seconds_bucket{outcome="failed",type="thumb",le="10"} 1
scheduler_task_run_duration_seconds_bucket{outcome="failed",type="thumb",le="+Inf"} 2
scheduler_task_run_duration_seconds_sum{outcome="failed",type="thumb"} 20.2
scheduler_task_run_duration_seconds_count{outcome="failed",type="thumb"} 2
scheduler_task_run_duration_seconds_bucket{outcome="snoozed",type="email.send",le="1"} 1
scheduler_task_run_duration_seconds_bucket{outcome="snoozed",type="email.send",le="10"} 1
scheduler_task_run_duration_seconds_bucket{outcome="snoozed",type="email.send",le="+Inf"} 1
scheduler_task_run_duration_seconds_sum{outcome="snoozed",type="email.send"} 0.1
scheduler_task_run_duration_seconds_count{outcome="snoozed",type="email.send"} 1
scheduler_task_run_duration_seconds_bucket{outcome="succeeded",type="email.send",le="1"} 0
scheduler_task_run_duration_seconds_bucket{outcome="succeeded",type="email.send",le="10"} 1
scheduler_task_run_duration_seconds_bucket{outcome="succeeded",type="email.send",le="+Inf"} 1
scheduler_task_run_duration_seconds_sum{outcome="succeeded",type="email.send"} 2
scheduler_task_run_duration_seconds_count{outcome="succeeded",type="email.send"} 1
# HELP scheduler_task_queue_wait_seconds How long tasks waited from submission (or their run-at time) to the start of an attempt.
# TYPE scheduler_task_queue_wait_seconds histogram
scheduler_task_queue_wait_seconds_bucket{queue="default",le="1"} 0
scheduler_task_queue_wait_seconds_bucket{queue="default",le="10"} 2
scheduler_task_queue_wait_seconds_bucket{queue="default",le="+Inf"} 2
scheduler_task_queue_wait_seconds_sum{queue="default"} 6
scheduler_task_queue_wait_seconds_count{queue="default"} 2
scheduler_task_queue_wait_seconds_bucket{queue="mail",le="1"} 4
scheduler_task_queue_wait_seconds_bucket{queue="mail",le="10"} 4
scheduler_task_queue_wait_seconds_bucket{queue="mail",le="+Inf"} 4
scheduler_task_queue_wait_seconds_sum{queue="mail"} 2
scheduler_task_queue_wait_seconds_count{queue="mail"} 4
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"scheduler_tasks_submitted_total", "scheduler_tasks_finished_total", "scheduler_task_retries_total",
		"scheduler_tasks_dead_total", "scheduler_tasks_in_flight", "scheduler_task_run_duration_seconds", "scheduler_task_queue_wait_seconds"))
	// Without Watch nothing is read from backends.
	n, err := testutil.GatherAndCount(reg, "scheduler_queue_depth", "scheduler_tasks", "scheduler_workers")
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestNamespaceAndLint(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.WithNamespace("jobs"))
	require.NoError(t, err)
	m.Observe(scheduler.Event{Kind: scheduler.EventSubmitted, Task: task("a", "q", 1)})
	require.Equal(t, 1.0, testutil.ToFloat64(collectorOf(t, reg, "jobs_tasks_submitted_total")))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// collectorOf returns a collector that yields the metric family name of reg
// (for testutil.ToFloat64 on one series).
func collectorOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == name {
			return familyCollector{f}
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

type familyCollector struct{ f *dto.MetricFamily }

func (familyCollector) Describe(chan<- *prometheus.Desc) {}
func (c familyCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.f.Metric {
		var v float64
		var vt prometheus.ValueType
		switch {
		case m.Counter != nil:
			v, vt = m.Counter.GetValue(), prometheus.CounterValue
		case m.Gauge != nil:
			v, vt = m.Gauge.GetValue(), prometheus.GaugeValue
		default:
			continue
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(c.f.GetName(), "x", nil, nil), vt, v)
	}
}

// value returns the value of the series of name with the given labels, or
// false if reg has no such series.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func mustValue(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, ok := value(t, reg, name, labels...)
	require.True(t, ok, "no series %s%v", name, labels)
	return v
}

func TestWithSchedulerAndWorker(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	require.NoError(t, err)
	b, s := membroker.New(), memstore.New()
	defer b.Close()
	sched, err := scheduler.New(m.InstrumentBroker(b), m.InstrumentStore(s), scheduler.WithObserver(m),
		scheduler.WithRetryPolicy(func(int, error) time.Duration { return time.Millisecond }))
	require.NoError(t, err)
	defer sched.Close()
	require.NoError(t, m.Watch(sched, "default", "idle"))
	require.Error(t, m.Watch(sched), "a second Watch fails")

	ctx := context.Background()
	// Before any worker: two ready tasks in "default", one delayed.
	held, err := sched.Submit(ctx, "hold", nil)
	require.NoError(t, err)
	flaky, err := sched.Submit(ctx, "flaky", nil, scheduler.WithPriority(1))
	require.NoError(t, err)
	later, err := sched.Submit(ctx, "hold", nil, scheduler.WithDelay(time.Hour), scheduler.WithQueue("later"))
	require.NoError(t, err)
	require.Equal(t, 2.0, mustValue(t, reg, "scheduler_queue_depth", "queue", "default"))
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_queue_depth", "queue", "idle"))
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_queue_depth", "queue", "later"), "queues submitted to are measured")
	require.Equal(t, 1.0, mustValue(t, reg, "scheduler_tasks", "state", "scheduled"))
	require.Equal(t, 2.0, mustValue(t, reg, "scheduler_tasks", "state", "pending"))
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_tasks", "state", "dead"), "every state is reported")
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_workers"))
	require.Equal(t, 1.0, mustValue(t, reg, "scheduler_tasks_submitted_total", "type", "flaky", "queue", "default", "priority", "1"))
	_, hasReconnects := value(t, reg, "scheduler_broker_reconnects_total")
	require.False(t, hasReconnects, "the memory broker does not count reconnects")

	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	started := make(chan struct{}, 1)
	// One slot: the held task is alone in flight; the flaky one runs after it.
	w, err := sched.NewWorker(scheduler.WithWorkerID("node-1"), scheduler.WithQueues("default", "idle"),
		scheduler.WithConcurrency(1), scheduler.WithHeartbeatInterval(50*time.Millisecond))
	require.NoError(t, err)
	w.Handle("hold", func(ctx context.Context, _ *scheduler.Task) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	w.Handle("flaky", func(_ context.Context, t *scheduler.Task) error {
		if t.Attempt == 1 {
			return errors.New("first attempt fails")
		}
		return scheduler.SkipRetry
	})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		releaseAll()
		stop()
		<-done
	}()

	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("handler did not start")
	}
	require.Equal(t, 1.0, mustValue(t, reg, "scheduler_tasks_in_flight", "type", "hold"))
	require.Eventually(t, func() bool {
		n, ok := value(t, reg, "scheduler_workers")
		return ok && n == 1
	}, wait, time.Millisecond)
	age := mustValue(t, reg, "scheduler_worker_heartbeat_age_seconds", "worker", "node-1")
	require.GreaterOrEqual(t, age, 0.0)
	require.Less(t, age, wait.Seconds())
	releaseAll()

	waitState(t, sched, held, scheduler.StateSucceeded)
	waitState(t, sched, flaky, scheduler.StateDead)
	require.NoError(t, sched.Cancel(ctx, later))

	// Workers report events just after storing the state the test saw.
	require.Eventually(t, func() bool {
		ok, _ := value(t, reg, "scheduler_tasks_finished_total", "type", "hold", "state", "succeeded")
		dead, _ := value(t, reg, "scheduler_tasks_finished_total", "type", "flaky", "state", "dead")
		return ok == 1 && dead == 1
	}, wait, time.Millisecond)
	require.Equal(t, 1.0, mustValue(t, reg, "scheduler_tasks_finished_total", "type", "hold", "state", "canceled"))
	require.Equal(t, 1.0, mustValue(t, reg, "scheduler_tasks_dead_total", "type", "flaky"))
	require.Equal(t, 1.0, mustValue(t, reg, "scheduler_task_retries_total", "type", "flaky"))
	require.Equal(t, 2.0, mustValue(t, reg, "scheduler_task_run_duration_seconds", "type", "flaky", "outcome", "failed"))
	require.Equal(t, 3.0, mustValue(t, reg, "scheduler_task_queue_wait_seconds", "queue", "default"))
	require.Equal(t, 1.0, mustValue(t, reg, "scheduler_tasks", "state", "succeeded"))
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_queue_depth", "queue", "default"))
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_tasks_in_flight", "type", "hold"))
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_tasks_in_flight", "type", "flaky"))
	// Definite answers are no store errors.
	_, err = sched.Status(ctx, "00000000-0000-0000-0000-000000000000")
	require.ErrorIs(t, err, scheduler.ErrTaskNotFound)
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_store_errors_total", "operation", "get"))
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_broker_errors_total", "operation", "publish"))
}

func waitState(t *testing.T, sched *scheduler.Scheduler, id string, st scheduler.State) {
	t.Helper()
	require.Eventually(t, func() bool {
		got, err := sched.Status(context.Background(), id)
		return err == nil && got.State == st
	}, wait, time.Millisecond, "task %s never reached %s", id, st)
}

// stuckStore blocks Counts and Workers until the caller gives up, and
// fails Get.
type stuckStore struct {
	scheduler.Store
	calls atomic.Int64
}

var errDown = errors.New("connection refused")

func (s *stuckStore) Counts(ctx context.Context) (map[scheduler.State]int64, error) {
	s.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *stuckStore) Workers(ctx context.Context) ([]scheduler.WorkerInfo, error) {
	s.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *stuckStore) Get(context.Context, string) (*scheduler.Task, error) { return nil, errDown }

// stuckBroker blocks Depth and counts reconnects.
type stuckBroker struct {
	scheduler.Broker
	reconnects atomic.Uint64
}

func (b *stuckBroker) Depth(ctx context.Context, _ string) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

func (b *stuckBroker) Reconnects() uint64 { return b.reconnects.Load() }

func TestScrapeOfHungBackendsIsBounded(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.ErrorLevel)
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.WithScrapeTimeout(50*time.Millisecond), metrics.WithLogger(zap.New(core)))
	require.NoError(t, err)
	mb := membroker.New()
	defer mb.Close()
	sb := &stuckBroker{Broker: mb}
	ss := &stuckStore{Store: memstore.New()}
	broker := m.InstrumentBroker(sb)
	store := m.InstrumentStore(ss)
	r, ok := broker.(interface{ Reconnects() uint64 })
	require.True(t, ok, "the instrumented broker passes Reconnects through")
	sched, err := scheduler.New(broker, store, scheduler.WithObserver(m))
	require.NoError(t, err)
	defer sched.Close()
	require.NoError(t, m.Watch(sched))

	sb.reconnects.Store(3)
	require.Equal(t, uint64(3), r.Reconnects())
	start := time.Now()
	fams, err := reg.Gather()
	require.NoError(t, err, "a hung backend does not fail the scrape")
	require.Less(t, time.Since(start), wait)
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	require.True(t, names["scheduler_broker_reconnects_total"])
	require.False(t, names["scheduler_tasks"])
	require.False(t, names["scheduler_workers"])
	require.False(t, names["scheduler_queue_depth"])
	require.Equal(t, int64(2), ss.calls.Load())
	require.Equal(t, 3, logs.FilterMessageSnippet("metrics scrape").Len(), "tasks by state, workers, queue depth")
	require.Equal(t, 3.0, mustValue(t, reg, "scheduler_broker_reconnects_total"))
	// The timeouts count as store and broker errors (each Gather scrapes
	// again, so the counts only grow).
	require.GreaterOrEqual(t, mustValue(t, reg, "scheduler_store_errors_total", "operation", "counts"), 1.0)
	require.GreaterOrEqual(t, mustValue(t, reg, "scheduler_store_errors_total", "operation", "workers"), 1.0)
	require.GreaterOrEqual(t, mustValue(t, reg, "scheduler_broker_errors_total", "operation", "depth"), 1.0)
	require.Equal(t, 0.0, mustValue(t, reg, "scheduler_store_errors_total", "operation", "get"))

	_, err = sched.Status(context.Background(), "00000000-0000-0000-0000-000000000000")
	require.ErrorIs(t, err, errDown)
	require.Equal(t, 1.0, mustValue(t, reg, "scheduler_store_errors_total", "operation", "get"))
}

func TestLabelLimit(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.WithLabelLimit(2))
	require.NoError(t, err)
	for _, typ := range []string{"a", "b", "c", "d", "a"} {
		m.Observe(scheduler.Event{Kind: scheduler.EventSubmitted, Task: task(typ, "q-"+typ, 5)})
	}
	require.Equal(t, 2.0, mustValue(t, reg, "scheduler_tasks_submitted_total", "type", "a", "queue", "q-a"))
	require.Equal(t, 1.0, mustValue(t, reg, "scheduler_tasks_submitted_total", "type", "b", "queue", "q-b"))
	require.Equal(t, 2.0, mustValue(t, reg, "scheduler_tasks_submitted_total", "type", metrics.OtherLabel, "queue", metrics.OtherLabel))
	n, err := testutil.GatherAndCount(reg, "scheduler_tasks_submitted_total")
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

func TestNewFailures(t *testing.T) {
	t.Parallel()
	_, err := metrics.New(nil)
	require.Error(t, err)
	for _, o := range []metrics.Option{
		nil,
		metrics.WithScrapeTimeout(0),
		metrics.WithLabelLimit(0),
		metrics.WithLogger(nil),
		metrics.WithBuckets(nil),
		metrics.WithBuckets([]float64{1, 1}),
	} {
		_, err := metrics.New(prometheus.NewRegistry(), o)
		require.Error(t, err)
	}

	// A name taken on the registry: New fails and leaves nothing behind.
	reg := prometheus.NewRegistry()
	taken := prometheus.NewCounter(prometheus.CounterOpts{Name: "scheduler_store_errors_total", Help: "taken"})
	reg.MustRegister(taken)
	_, err = metrics.New(reg)
	require.Error(t, err)
	fams, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, fams, 1)
	// Two Metrics can share a registry under different namespaces.
	reg = prometheus.NewRegistry()
	_, err = metrics.New(reg)
	require.NoError(t, err)
	_, err = metrics.New(reg)
	require.Error(t, err)
	_, err = metrics.New(reg, metrics.WithNamespace("other"))
	require.NoError(t, err)

	m, err := metrics.New(prometheus.NewRegistry())
	require.NoError(t, err)
	require.Error(t, m.Watch(nil))
}

func TestPeriodicTicks(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	require.NoError(t, err)
	tick := time.Date(2026, 11, 27, 2, 30, 0, 0, time.UTC)
	for _, e := range []scheduler.TickEvent{
		{Schedule: "nightly", Tick: tick, Outcome: scheduler.TickFired, Count: 1},
		{Schedule: "nightly", Tick: tick, Outcome: scheduler.TickTaken, Count: 1},
		{Schedule: "nightly", Tick: tick, Outcome: scheduler.TickSkipped, Count: 3},
		{Schedule: "hourly", Tick: tick, Outcome: scheduler.TickFailed, Count: 1},
	} {
		m.ObserveTick(e)
	}
	const want = `
# HELP scheduler_periodic_ticks_total Ticks of periodic schedules seen by this process, by outcome: fired (submitted here), taken (already submitted by another node), skipped (by the catch-up policy), failed (store unreachable).
# TYPE scheduler_periodic_ticks_total counter
scheduler_periodic_ticks_total{outcome="failed",schedule="hourly"} 1
scheduler_periodic_ticks_total{outcome="fired",schedule="nightly"} 1
scheduler_periodic_ticks_total{outcome="skipped",schedule="nightly"} 3
scheduler_periodic_ticks_total{outcome="taken",schedule="nightly"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "scheduler_periodic_ticks_total"))

	// The scrape reads each schedule's next tick from the Scheduler.
	b := membroker.New()
	defer b.Close()
	sched, err := scheduler.New(b, memstore.New(), scheduler.WithObserver(m))
	require.NoError(t, err)
	defer sched.Close()
	require.NoError(t, m.Watch(sched))
	require.NoError(t, sched.RegisterPeriodic(scheduler.Periodic{Name: "nightly", Spec: "30 2 * * *", Type: "report"}))
	next := sched.Schedules()[0].Next
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var got float64
	for _, mf := range mfs {
		if mf.GetName() == "scheduler_periodic_next_tick_timestamp_seconds" {
			got = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	require.InDelta(t, float64(next.Unix()), got, 1)
}
